"""Resume compatibility: a checkpoint continues only the run it was saved by.

The trainer stores a run signature in every checkpoint: the settings that fix which batches
make up a step and which learning rate a step gets (processes, batch size, data, classes, model,
image geometry, epochs, seed, and the task's own: the mixing recipe or the MixMo settings).
`incompatibilities(saved, now)` lists every one that differs, naming the flag to change back.
"""
from __future__ import annotations

#: signature key -> what the user changes to alter it (for the error message)
FLAGS = {
    "world_size": "the number of processes (torchrun --nproc_per_node x nodes)",
    "batch_size": "--batch-size",
    "data": "--data",
    "train_samples": "the train data (number of samples)",
    "num_classes": "--num-classes / the classes of the data",
    "model": "--model",
    "image_size": "--image-size",
    "crop": "--crop",
    "epochs": "--epochs",
    "mix_off_epochs": "--mix-off-epochs",
    "seed": "--seed",
    "task": "the task (--mixmo or not)",
    "recipe": "the mixing recipe (--recipe or the mixing flags)",
    "mixmo": "the MixMo flags (--mixmo*)",
}


def incompatibilities(saved: dict, now: dict) -> list[str]:
    """One line per signature entry that differs between `saved` and `now` ("--batch-size:
    saved 32, now 64"); entries missing from an older checkpoint are not compared."""
    out = []
    for key, value in now.items():
        old = saved.get(key, value)
        if old == value:
            continue
        if isinstance(old, dict) and isinstance(value, dict):  # name the fields that differ
            fields = sorted(k for k in old.keys() | value.keys() if old.get(k) != value.get(k))
            out += [f"{FLAGS.get(key, key)}, {k}: saved {_short(old.get(k))}, now {_short(value.get(k))}"
                    for k in fields]
        else:
            out.append(f"{FLAGS.get(key, key)}: saved {_short(old)}, now {_short(value)}")
    return out


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


def finished_run(history: list[dict], epochs: int, best_top1: float, output, key: str = "val_top1",
                 label: str = "val top-1") -> str:
    """The line for resuming a run that has trained all its `epochs` already (nothing to do):
    its final val metric (`key` of the last `history` record, metrics.jsonl's; `label` in the
    text), never "nan"."""
    last = history[-1] if history else None
    final = (f"final {label} {last[key]:.2f}% (epoch {last['epoch']})" if last
             else f"no {label} recorded")
    return (f"the run in {output} is finished: {epochs} of {epochs} epochs trained, {final}, best "
            f"{best_top1:.2f}%; nothing to train (a new run: another --output, or --overwrite)")


def check_evaluation(state: dict, path, num_classes: int, model: str | None) -> str:
    """Whether the checkpoint `state` (loaded from `path`) can be evaluated on data of
    `num_classes` classes as the `model` asked for (None: not asked, the checkpoint's model).
    Returns the model name to build; raises SystemExit with one line naming both numbers or
    both models otherwise (a head of another size cannot be loaded; another architecture
    would be evaluated under the wrong name)."""
    saved_classes = state.get("num_classes")
    if saved_classes is not None and saved_classes != num_classes:
        subset = (f", or pass --num-classes {saved_classes} when the data's {num_classes} classes are the first "
                  f"{num_classes} of the checkpoint's" if saved_classes > num_classes else "")
        raise SystemExit(f"error: --resume {path}: the checkpoint's model has {saved_classes} classes but the "
                         f"data has {num_classes}; evaluate it on data with its {saved_classes} classes{subset}")
    saved_model = state.get("model_name")
    if model is not None and saved_model is not None and model != saved_model:
        raise SystemExit(f"error: --resume {path}: the checkpoint holds a {saved_model}, not the --model {model} "
                         f"asked for; drop --model (the checkpoint's model is used) or pass --model {saved_model}")
    return saved_model or model or "resnet18"
