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
