"""`dali-mix evaluate`: what a `train.py` checkpoint is worth, on its val data or another source.

    dali-mix evaluate runs/latest/best.pt                       # clean: top-1, top-5, NLL, ECE
    dali-mix evaluate runs/latest/last.pt --robustness --json eval.json
    torchrun --nproc_per_node 8 -m dali_mix_tools evaluate CKPT --robustness   # every val sample once

The checkpoint is loaded with `weights_only=True` (`dali_mix.checkpoint.load`); its model is
rebuilt from the name, class count and MixMo flag it records. The val data is the run's (the
checkpoint records it) unless `--data` names another source with the same number of classes.
Images go through the trainer's own val pipeline (`val_loader`), so the numbers equal those of
`train.py --evaluate` for the same checkpoint. Metrics: `dali_mix.evaluation`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from dali_mix import checkpoint as ckpt
from dali_mix.atomic import write_atomic
from dali_mix.evaluation import PixelScale, Robustness, evaluate_model, evaluate_multilabel, format_table
from dali_mix.data.sources import Source, resolve_source

# keys every train.py checkpoint holds (older ones too); anything else is not ours
REQUIRED_KEYS = ("model", "num_classes", "model_name", "epoch")


class EvaluationError(Exception):
    """A checkpoint or data source that cannot be evaluated; the message names the cause."""


def imagenet_pixels() -> PixelScale:
    """The normalisation of the reference pipelines (`dali_mix.execute.IMAGENET_MEAN`, `IMAGENET_STD`)."""
    from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD

    return PixelScale(IMAGENET_MEAN, IMAGENET_STD)


def val_loader(source: Source, *, batch_size: int, image_size: int, crop: str, workers: int, num_classes: int,
               device: str = "cpu", device_id: int | None = None, shard_id: int = 0, num_shards: int = 1):
    """The trainer's val loader: `pipelines.classification.val_pipeline` in a non-training
    `dali_mix.torch.Loader` (every sample once, labels checked; an unreadable file is named,
    `dali_mix_tools.training.bad_data.NamingErrors`). `crop` is the training crop
    ("pad": small images resized whole; otherwise centre crop)."""
    from dali_mix.torch import Loader
    from dali_mix_tools.training.bad_data import NamingErrors
    from pipelines.classification import val_pipeline

    built = val_pipeline(source, batch_size=batch_size, image_size=image_size, num_threads=workers,
                         num_classes=num_classes, crop="none" if crop == "pad" else "center", device=device,
                         device_id=device_id, shard_id=shard_id, num_shards=num_shards)
    return NamingErrors(Loader(built.pipe, built.output_map, built.reader_name, train=False, num_classes=num_classes),
                        source, "val")


def heads_forward(model: nn.Module, mixmo: bool):
    """A callable: normalised images (N, 3, H, W) -> (N, H, C) logits (H = 2 for MixMo)."""
    if mixmo:
        return model.forward_heads
    return lambda x: model(x)[:, None]


def evaluate_in_memory(model: nn.Module, mixmo: bool, loader, device: torch.device, *,
                       robustness: Robustness | None, world_size: int = 1, rank: int = 0,
                       progress: bool = True) -> dict:
    """`evaluate_model` for a model already built (the trainer's, or one loaded here)."""
    model.eval()
    return evaluate_model(heads_forward(model, mixmo), loader, device, pixels=imagenet_pixels(),
                          robustness=robustness, world_size=world_size, rank=rank, progress=progress,
                          total=len(loader))


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's state (weights_only); EvaluationError when missing, unreadable or not ours."""
    try:
        state = ckpt.load(path)
    except FileNotFoundError:
        raise EvaluationError(f"checkpoint {path} does not exist") from None
    except ValueError as exc:  # torch's own text suggests weights_only=False: never here
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "unreadable"
        raise EvaluationError(f"checkpoint {path} is unreadable: not a torch file of tensors and plain data "
                              f"({cause})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise EvaluationError(f"{path} is not a dali-mix train.py checkpoint (it has no {', '.join(missing)})")
    return state


def checkpoint_settings(state: dict) -> dict:
    """image_size, crop, batch_size and the val data recorded in a train.py checkpoint."""
    sig, args = state.get("signature") or {}, state.get("args") or {}
    image_size = sig.get("image_size") or args.get("image_size")
    if not image_size:
        raise EvaluationError("the checkpoint records no image size (written by an older train.py)")
    return {"image_size": int(image_size), "crop": sig.get("crop", "random_resized"),
            "batch_size": int(sig.get("batch_size") or args.get("batch_size") or 256),
            "val_data": state.get("val_data")}


def build_model(state: dict) -> tuple[nn.Module, bool]:
    """(model with the checkpoint's weights, is_mixmo)."""
    from dali_mix_tools.training.tasks import ClassificationTask, MixMoTask

    mixmo = bool(state.get("mixmo"))
    image_size = checkpoint_settings(state)["image_size"]
    task = MixMoTask(state["num_classes"]) if mixmo else ClassificationTask(state["num_classes"])
    model = task.model(state["model_name"], small_images=image_size <= 64)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise EvaluationError(f"the checkpoint's weights do not fit a {state['model_name']} with "
                              f"{state['num_classes']} classes ({first})") from None
    return model, mixmo


def resolve_val(state: dict, data: str | None) -> Source:
    """The val source: `data` when given, else the one the checkpoint records; its class count
    must be the checkpoint's."""
    spec = data or checkpoint_settings(state)["val_data"]
    if spec is None:
        raise EvaluationError("the checkpoint does not record its val data (written by an older train.py): "
                              "pass --data VAL_SOURCE")
    try:
        source = resolve_source(spec)
    except (ValueError, FileNotFoundError) as exc:
        raise EvaluationError(f"--data {spec}: {exc}") from None
    n = state["num_classes"]
    if source.num_classes and source.num_classes != n:
        raise EvaluationError(f"the checkpoint's model has {n} classes but the data has {source.num_classes} "
                              f"({spec})")
    if source.max_label is not None and source.max_label >= n:
        raise EvaluationError(f"the checkpoint's model has {n} classes but the data ({spec}) has labels up "
                              f"to {source.max_label}")
    return source


def evaluate_checkpoint(path: str | Path, *, data: str | None = None, robustness: Robustness | None = None,
                        device: torch.device | None = None, workers: int = 2, batch_size: int | None = None,
                        rank: int = 0, world_size: int = 1, progress: bool = True) -> dict:
    """Evaluate a train.py checkpoint; returns the JSON document of `dali-mix evaluate`.

    batch_size: the val batch (default: the run's; noise and occlusion draws depend on it).
    rank, world_size: this process under torchrun (the val data is sharded by rank).
    """
    state = load_checkpoint(path)
    if (state.get("signature") or {}).get("task") == "segmentation":
        raise EvaluationError(f"{path} is a segmentation checkpoint: its val mIoU and pixel accuracy are in the "
                              "run's metrics.jsonl (dali-mix evaluate scores classifiers)")
    if (state.get("signature") or {}).get("task") == "audio-classification":
        raise EvaluationError(f"{path} is a sound checkpoint: evaluate it with train.py --evaluate --resume {path} "
                              "--data SPEECH_COMMANDS_DIR (clean metrics; the robustness set perturbs images)")
    if (state.get("signature") or {}).get("task") == "multilabel":
        if robustness is not None:
            raise EvaluationError(f"{path} is a multi-label checkpoint: its metric is mAP; --robustness perturbs "
                                  "images against single-label top-1")
        return evaluate_multilabel_checkpoint(path, state, data=data, device=device, workers=workers,
                                              batch_size=batch_size, rank=rank, world_size=world_size,
                                              progress=progress)
    source = resolve_val(state, data)
    settings = checkpoint_settings(state)
    device = device or torch.device("cpu")
    model, mixmo = build_model(state)
    model.to(device)
    use_gpu = device.type == "cuda"
    loader = val_loader(source, batch_size=batch_size or settings["batch_size"], image_size=settings["image_size"],
                        crop=settings["crop"], workers=workers, num_classes=state["num_classes"],
                        device="gpu" if use_gpu else "cpu", device_id=device.index if use_gpu else None,
                        shard_id=rank, num_shards=world_size)
    result = evaluate_in_memory(model, mixmo, loader, device, robustness=robustness, world_size=world_size,
                                rank=rank, progress=progress)
    return document(path, source.root, result)


def evaluate_multilabel_checkpoint(path: str | Path, state: dict, *, data: str | None, device, workers: int,
                                   batch_size: int | None, rank: int, world_size: int, progress: bool) -> dict:
    """A `train.py --task multilabel` checkpoint on image + mask pairs (`data`, else the run's
    val data): mAP and per-class accuracy (`dali_mix.evaluation.evaluate_multilabel`), the
    labels each image's mask shows (`pipelines.segmentation.val_pipeline(presence_classes=)`)."""
    from dali_mix.torch import Loader
    from pipelines.segmentation import PairedFolder, val_pipeline

    settings = checkpoint_settings(state)
    spec = data or settings["val_data"]
    if not spec:
        raise EvaluationError("the checkpoint records no val data: pass --data")
    try:
        pairs = PairedFolder.of(spec, "val")
    except ValueError as exc:
        raise EvaluationError(f"--data {spec}: {exc}") from None
    device = device or torch.device("cpu")
    model, _ = build_model(state)
    model.to(device).eval()
    use_gpu = device.type == "cuda"
    built = val_pipeline(pairs, batch_size=batch_size or settings["batch_size"], image_size=settings["image_size"],
                         num_threads=workers, presence_classes=state["num_classes"] + 1,
                         device="gpu" if use_gpu else "cpu", device_id=device.index if use_gpu else None,
                         shard_id=rank, num_shards=world_size)
    loader = Loader(built.pipe, built.output_map, built.reader_name, train=False, multi_label=True)
    result = evaluate_multilabel(model, loader, device, world_size=world_size, rank=rank, progress=progress,
                                 total=len(loader))
    return document(path, spec, result)


def document(path: str | Path, data_root: str, result: dict) -> dict:
    """The JSON document: checkpoint and data paths first, then the metrics."""
    return {"checkpoint": str(Path(path).resolve()), "data": str(data_root), **result}


def write_json(doc: dict, path: str | Path) -> Path:
    """Write the document atomically (`dali_mix.atomic`)."""
    text = json.dumps(doc, indent=1) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))


# ------------------------------------------------------------------------------------ command line
def _floats(flag: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: {text!r} is not a number") from None
        if not v >= 0 or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{flag}: {text} must be a finite number >= 0")
        return v
    return parse


def add_robustness_flags(p: argparse.ArgumentParser) -> None:
    """--fgsm-eps, --noise-sigma, --occlusion, --eval-seed: shared by `dali-mix evaluate` and train.py."""
    d = Robustness()
    p.add_argument("--fgsm-eps", type=_floats("--fgsm-eps"), nargs="+", default=list(d.fgsm_eps),
                   help="FGSM budgets on the [0, 1] pixel scale (default 1, 2, 4, 8 / 255)")
    p.add_argument("--noise-sigma", type=_floats("--noise-sigma"), nargs="+", default=list(d.noise_sigma),
                   help="Gaussian noise sigmas on the [0, 1] scale (default 0.04 0.08 0.16)")
    p.add_argument("--occlusion", type=_floats("--occlusion"), nargs="+", default=list(d.occlusion),
                   help="occluding square's side as a fraction of the image side (default 0.25 0.5)")
    p.add_argument("--eval-seed", type=int, default=d.seed,
                   help="seed of the noise and occlusion draws (default 0; the same for every checkpoint)")


def robustness_from_args(args) -> Robustness:
    try:
        return Robustness(tuple(args.fgsm_eps), tuple(args.noise_sigma), tuple(args.occlusion), args.eval_seed)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="accuracy, calibration and robustness of a train.py checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="last.pt / best.pt written by train.py")
    p.add_argument("--data", default=None, help="val source (default: the run's val data)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON to OUT")
    p.add_argument("--robustness", action="store_true", help="add FGSM, Gaussian noise and occlusion")
    add_robustness_flags(p)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="val batch (default: the run's)")
    p.add_argument("--workers", type=int, default=None, help="DALI threads (default: cores)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from dali_mix_tools.training.support import distributed_env

    env = distributed_env()
    use_gpu = args.device == "gpu" or (args.device == "auto" and torch.cuda.is_available())
    if use_gpu and not torch.cuda.is_available():
        raise SystemExit("error: --device gpu but no CUDA device is available")
    if args.batch_size is not None and args.batch_size < 1:
        raise SystemExit(f"error: --batch-size must be >= 1, got {args.batch_size}")
    device = torch.device(f"cuda:{env.local_rank}") if use_gpu else torch.device("cpu")
    if env.world_size > 1:
        dist.init_process_group(backend="nccl" if use_gpu else "gloo")
    robustness = robustness_from_args(args) if args.robustness else None
    workers = args.workers or max(1, (os.cpu_count() or 2) // max(1, env.local_world_size))
    try:
        doc = evaluate_checkpoint(args.checkpoint, data=args.data, robustness=robustness, device=device,
                                  workers=workers, batch_size=args.batch_size, rank=env.rank,
                                  world_size=env.world_size, progress=not args.no_progress)
    except EvaluationError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if env.rank == 0:
        print(f"{doc['checkpoint']} on {doc['data']} ({doc['samples']} samples)")
        print(format_table(doc))
        if args.json:
            write_json(doc, args.json)
    return 0
