#!/usr/bin/env python
"""Reference trainer: DALI pipelines with in-pipeline mixing feeding a torchvision model.

    python train.py                                  # RandomMix on the embedded Fashion-MNIST
    python train.py --data /data/imagenet --model resnet50 --epochs 90 --batch-size 256 --amp
    torchrun --nproc_per_node 8 train.py --data /data/imagenet ...   # one or many nodes

With no --data, Fashion-MNIST is converted once (Debian package dataset-fashion-mnist) into an
ImageFolder under $DALI_MIX_DATA (default ~/.cache/dali-mix). --data takes an ImageFolder root
with train/ and val/ (ImageNet layout), or a train source (ImageFolder, file list, webdataset
shards) with --val-data for the validation source. Sound: --data spoken-commands synthesises the
keyword-spotting set once (`dali-mix data spoken-commands`); it, or --data DIR in the Speech
Commands layout (class folders of WAV/FLAC/OGG, validation_list.txt), trains on log-mel
spectrograms (pipelines/audio.py) with the same mixing, trainer and checkpoints.

Distributed: under torchrun it reads RANK / WORLD_SIZE / LOCAL_RANK, uses DDP (NCCL on GPUs,
Gloo on the CPU) and shards the DALI readers by global rank. Checkpoints (last.pt, best.pt in
--output) are written atomically and hold the model, optimiser, step, RNG states, the DALI
pipeline state, the epoch's running loss and the metrics history, so --resume continues
mid-epoch with the same batches and the same metrics. One run owns --output at a time (a lock
naming its pid); a fresh run will not overwrite an earlier run's files without --overwrite; a
resume that changes the step bookkeeping (batch size, processes, data, model, recipe, ...) is
refused, naming the setting.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torchvision

import dali_mix as dm
from dali_mix import checkpoint as ckpt
from dali_mix.recipe import METHODS, warn_once
from dali_mix.methods import DEFAULT_CANDIDATES, MIX_METHODS
from dali_mix.mixmo import check_mixmo_args
from dali_mix.progress import Progress
from dali_mix.data.sources import Source, class_mismatch, resolve_source
from dali_mix.torch import Loader
from dali_mix_tools.training.support import DistributedEnv, cosine_lr, distributed_env, rng_state, set_rng_state
from dali_mix_tools.training.audio_models import AUDIO_MODELS
from dali_mix_tools.training.bad_data import NamingErrors, clean_folder_split, clean_source, left_out, named_errors
from dali_mix_tools.training.cifar_models import CIFAR_MODELS
from dali_mix_tools.training.classes import recipe_classes_mismatch, resolve_num_classes
from dali_mix_tools.training.evaluate import (EvaluationError, add_robustness_flags, document, evaluate_checkpoint,
                                              evaluate_in_memory, load_checkpoint, robustness_from_args, write_json)
from dali_mix_tools.training.evaluate import val_loader as build_val_loader
from dali_mix_tools.training.label_noise import LabelNoise, corrupt_labels, corrupted_subset
from dali_mix_tools.training.resume import check_evaluation, finished_run, incompatibilities
from dali_mix_tools.training.run_dir import RunDir, RunDirError, archive_earlier_run, output_errors, writing
from dali_mix_tools.training.tasks import (AudioClassificationTask, ClassificationTask, MixMoTask, MultiLabelTask,
                                           SegmentationTask, Task, TimmMixupTask)

MIX_CHOICES = ("none", *MIX_METHODS, "randommix")
PAIR_TASKS = ("segmentation", "multilabel")
"""--task values that train on image + mask pairs (pipelines.segmentation)."""
"""--mix: no mixing, one mixing method of the table alone, or RandomMix over its default candidates."""
AUDIO_DATA = "spoken-commands"  # --data name of the synthesised keyword-spotting set
DEFAULT_OUTPUT = "runs/latest"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--task", choices=("classification", "segmentation", "multilabel"), default="classification",
                   help="segmentation, or multilabel (a classifier of the classes each image shows, val mAP): "
                        "image + mask pairs (--data: a folder with train/ and val/, each holding "
                        "images/ and masks/, or a Pascal VOC root; default the generated scenes), masks mixed "
                        "with the images, val mIoU")
    d.add_argument("--data", default=None, help="ImageFolder root with train/ and val/, or a train source; "
                   f"'{AUDIO_DATA}' or a folder in the Speech Commands layout (sound); "
                   "default: the embedded Fashion-MNIST (segmentation: the generated scenes)")
    d.add_argument("--n-mels", type=int, default=40, help="sound: mel bands of the log-mel spectrogram")
    d.add_argument("--val-data", default=None, help="validation source (default: DATA/val)")
    d.add_argument("--num-classes", type=int, default=None, help="number of classes, for sources that do "
                   "not name them (webdataset shards without a classes.txt)")
    d.add_argument("--limit", type=int, default=None, help="Fashion-MNIST only: use a balanced subset "
                   "of N images per split")
    d.add_argument("--image-size", type=int, default=None, help="output side in px (default 224, 28 for "
                   "Fashion-MNIST)")
    d.add_argument("--crop", choices=("auto", "random_resized", "pad"), default="auto",
                   help="train crop: ImageNet random resized crop, or pad+random crop for small images")
    d.add_argument("--workers", type=int, default=None, help="DALI threads per process (default: cores)")
    d.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    d.add_argument("--check-data", action="store_true", help="scan the train data for unreadable files "
                   "before training and train on the clean list")
    m = p.add_argument_group("mixing (timm-style names where they exist)")
    m.add_argument("--mix", choices=MIX_CHOICES, default="randommix")
    m.add_argument("--mix-weights", default=None, help=f"RandomMix weights for {','.join(DEFAULT_CANDIDATES)} "
                   "(e.g. 4,1,1,1) or name=weight pairs (mixup=1,cutout=1)")
    m.add_argument("--mix-mode", choices=("sample", "pair", "batch"), default="sample",
                   help="a draw per sample, per pair of partners, or one per batch")
    m.add_argument("--mixup-mode", choices=("batch", "pair", "elem"), default=None,
                   help="timm: with --mixup-switch-prob, timm's Mixup/CutMix (MixRecipe.from_timm)")
    m.add_argument("--mixup-switch-prob", type=float, default=None,
                   help="timm: chance of CutMix instead of Mixup when both are on (0.5)")
    m.add_argument("--reprob", type=float, default=0.0,
                   help="timm: Random Erasing probability, applied to every sample after mixing")
    m.add_argument("--mixup", type=float, default=1.0, help="Mixup alpha (0 disables Mixup)")
    m.add_argument("--cutmix", type=float, default=1.0, help="CutMix alpha (0 disables CutMix)")
    m.add_argument("--cutmix-minmax", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    m.add_argument("--mixup-prob", type=float, default=1.0, help="chance a sample/batch is mixed")
    m.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    m.add_argument("--resizemix-scale", type=float, nargs=2, default=(0.1, 0.8), metavar=("MIN", "MAX"))
    m.add_argument("--fmix-decay", type=float, default=3.0, help="FMix decay power")
    m.add_argument("--fmix-alpha", type=float, default=1.0)
    m.add_argument("--mix-off-epochs", type=int, default=None, help="no mixing in the last N epochs "
                   "(default 0; 1 on Fashion-MNIST)")
    m.add_argument("--recipe", default=None, help="YAML/JSON MixRecipe file (overrides the mixing flags)")
    m.add_argument("--targets", choices=("dense", "sparse"), default="dense")
    m.add_argument("--timm-peer", action="store_true", help="mix on the torch side with timm's own Mixup "
                   "(same --mix mixup/cutmix/randommix, alphas, --mixup-prob, --mixup-switch-prob, "
                   "--mixup-mode, --smoothing) instead of in the pipeline: the parity peer (needs timm)")
    d.add_argument("--label-noise", type=float, default=0.0, metavar="P",
                   help="give a fraction P of the train labels a different class, the same samples for the "
                   "same --seed (recorded in OUTPUT/label_noise.json); val labels are never changed")
    x = p.add_argument_group("MixMo (two inputs, two encoders, two heads; replaces --mix)")
    x.add_argument("--mixmo", choices=("linear", "cut"), default=None,
                   help="train a MixMo model: Linear-MixMo, or Cut-MixMo (patch with prob --mixmo-p)")
    x.add_argument("--mixmo-r", type=float, default=3.0, help="loss balancing: w_i ~ k_i^(1/r)")
    x.add_argument("--mixmo-p", type=float, default=0.5, help="Cut-MixMo patch probability, decayed "
                   "linearly to 0 over the last 1/12 of training")
    x.add_argument("--mixmo-b", type=int, default=1, help="batch repetition: each image b times per batch")
    x.add_argument("--mixmo-alpha", type=float, default=2.0, help="kappa ~ Beta(alpha, alpha)")
    t = p.add_argument_group("model and optimisation")
    t.add_argument("--model", default=None, help="any torchvision classification model (default resnet18; with "
                   "--evaluate: the checkpoint's), preact_resnet18 / wide_resnet28_10 (CIFAR), or kws_cnn, a "
                   "small CNN for spectrograms (the default for sound)")
    t.add_argument("--epochs", type=int, default=None, help="default 90 (5 on Fashion-MNIST, 10 on sound)")
    t.add_argument("--batch-size", type=int, default=None, help="per process (default 256, 128 on "
                   "Fashion-MNIST, 64 on sound)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.1 x global "
                   "batch / 256, 0.2 x global batch / 256 on Fashion-MNIST)")
    t.add_argument("--wd", type=float, default=1e-4, help="weight decay")
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--warmup-epochs", type=float, default=None, help="default 5 (0.3 on Fashion-MNIST)")
    t.add_argument("--amp", action="store_true", help="autocast: bf16 on GPUs that support it, else fp16; "
                   "bf16 on the CPU")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    o = p.add_argument_group("output")
    o.add_argument("--output", default=None, help=f"directory for checkpoints and metrics (default {DEFAULT_OUTPUT}; "
                   "an earlier run there is moved aside to runs/latest-<time> unless --resume)")
    o.add_argument("--resume", default=None, help="checkpoint to resume from, or 'auto' (OUTPUT/last.pt if any)")
    o.add_argument("--overwrite", action="store_true", help="start a fresh run in an --output that holds an "
                   "earlier run's checkpoints and metrics, deleting them")
    o.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (mid-epoch)")
    o.add_argument("--stop-after-steps", type=int, default=0, help="stop (as if killed) after N steps "
                   "in total, after saving a checkpoint: for testing resume")
    o.add_argument("--no-progress", action="store_true")
    o.add_argument("--evaluate", nargs="?", const="clean", choices=("clean", "robustness"), default=None,
                   help="evaluate the final model as `dali-mix evaluate` does (clean: top-1/top-5/NLL/ECE; "
                   "robustness: also FGSM, noise, occlusion) into OUTPUT/evaluation.json; with --resume "
                   "CHECKPOINT: only evaluate that checkpoint, no training")
    add_robustness_flags(o)
    o.add_argument("--step-log", default=None, help="append one JSON line per training step (loss, lr, "
                   "a checksum of the targets) to this file, per rank: FILE.rankN")
    args = p.parse_args(argv)
    args.model_given = args.model is not None
    validate_args(args, p)
    args.output_given = args.output is not None
    args.output = args.output or DEFAULT_OUTPUT
    return args


def validate_args(args, parser) -> None:
    """Every flag checked before any data is read: errors name the flag."""
    def fail(msg):
        parser.error(msg)

    if args.task in PAIR_TASKS:
        validate_pair_task_args(args, fail)
        return
    if args.model is None:
        args.model = "kws_cnn" if is_sound(args) else "resnet18"
    known = (*CIFAR_MODELS, *AUDIO_MODELS)
    if args.model not in torchvision.models.list_models(module=torchvision.models) and args.model not in known:
        fail(f"--model {args.model!r} is neither a torchvision classification model (e.g. resnet18, resnet50, "
             f"efficientnet_b0; see torchvision.models.list_models()) nor one of {', '.join(known)}")
    if args.evaluate == "robustness" and is_sound(args):
        fail("--evaluate robustness perturbs images on the [0, 1] pixel scale; on sound use --evaluate (clean)")
    for flag in ("lr", "wd", "momentum", "warmup_epochs", "mixup", "cutmix", "fmix_decay", "fmix_alpha"):
        v = getattr(args, flag)
        if v is not None and (not math.isfinite(v) or v < 0):
            fail(f"--{flag.replace('_', '-')} must be >= 0, got {v}")
    if args.lr is not None and args.lr <= 0:
        fail(f"--lr must be > 0, got {args.lr}")
    for flag in ("epochs", "batch_size", "image_size", "workers", "limit", "num_classes"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            fail(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    if args.mixmo:
        if is_sound(args):
            fail("--mixmo trains on images; for sound (--data spoken-commands or a Speech Commands folder) "
                 "use --mix")
        if not (args.mixmo_r > 0 and 0 <= args.mixmo_p <= 1 and args.mixmo_b >= 1 and args.mixmo_alpha > 0):
            fail(f"MixMo flags: need --mixmo-r > 0, 0 <= --mixmo-p <= 1, --mixmo-b >= 1, --mixmo-alpha > 0; "
                 f"got {args.mixmo_r}, {args.mixmo_p}, {args.mixmo_b}, {args.mixmo_alpha}")
        if not args.model.startswith(("resnet", "wide_resnet", "resnext", "preact_resnet")):
            fail(f"--mixmo needs a ResNet-family --model (resnet*, wide_resnet*, resnext*), got {args.model!r}")
        if args.targets != "dense":
            fail("--mixmo uses dense targets: drop --targets sparse")
    if args.batch_size == 1 and not evaluate_only(args):
        fail("--batch-size 1: mixing pairs each sample with another sample of its batch (with one it is "
             "paired with itself) and BatchNorm needs 2+ samples per batch; use --batch-size 2 or more")
    if args.overwrite and args.resume:
        fail("--overwrite starts a fresh run: drop --resume, or drop --overwrite to continue the run")
    if args.mix_off_epochs is not None and args.mix_off_epochs < 0:
        fail(f"--mix-off-epochs must be >= 0, got {args.mix_off_epochs}")
    if not (math.isfinite(args.label_noise) and 0 <= args.label_noise < 1):
        fail(f"--label-noise must be a fraction in [0, 1), got {args.label_noise}")
    if args.timm_peer and (args.mixmo or args.mix not in ("mixup", "cutmix", "randommix") or args.recipe):
        fail("--timm-peer mixes with timm's Mixup: use it with --mix mixup, cutmix or randommix (Mixup and "
             "CutMix), without --mixmo or --recipe")
    if args.evaluate == "robustness":
        try:
            robustness_from_args(args)
        except SystemExit as exc:
            fail(str(exc).removeprefix("error: "))
    if args.recipe is not None and not Path(args.recipe).is_file():
        fail(f"--recipe {args.recipe!r} does not exist")
    if args.n_mels < 1:
        fail(f"--n-mels must be >= 1, got {args.n_mels}")
    if args.data is not None and args.data != AUDIO_DATA and not Path(args.data).exists() \
            and not any(c in args.data for c in "*?["):
        fail(f"--data {args.data!r} does not exist")
    if args.mix_weights is not None:
        try:
            mix_weights(args.mix_weights)
        except ValueError as exc:
            fail(f"--mix-weights: {exc}")
    try:
        recipe_from_args(args, num_classes=2)
    except ValueError as exc:
        fail(f"mixing flags: {exc}")


def validate_pair_task_args(args, fail) -> None:
    """--task segmentation / multilabel (image + mask pairs): the model, and the flags the
    task does not take, named."""
    from dali_mix_tools.training.segmentation_models import SEGMENTATION_MODELS

    task = args.task
    if task == "segmentation":
        args.model = args.model or "fcn_resnet18"
        if args.model not in SEGMENTATION_MODELS:
            fail(f"--task segmentation: --model must be one of {', '.join(SEGMENTATION_MODELS)}, got {args.model!r}")
    else:
        args.model = args.model or "resnet18"
        if args.model not in torchvision.models.list_models(module=torchvision.models) and args.model not in CIFAR_MODELS:
            fail(f"--task multilabel: --model {args.model!r} is not a torchvision classification model")
    refused = {"--mixmo": args.mixmo, "--timm-peer": args.timm_peer, "--label-noise": args.label_noise,
               "--evaluate": args.evaluate, "--check-data": args.check_data, "--targets sparse": args.targets != "dense",
               "--mix-off-epochs": args.mix_off_epochs, "--mixup-mode": args.mixup_mode}
    given = [flag for flag, v in refused.items() if v]
    if given:
        fail(f"--task {task} does not take {', '.join(given)} (it trains on image + mask pairs and reports its "
             "val metrics every epoch in metrics.jsonl)")
    if args.data is not None and not Path(args.data).is_dir():
        fail(f"--task {task}: --data {args.data!r} is not a folder")
    for flag in ("epochs", "batch_size", "image_size", "workers", "num_classes"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            fail(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    if args.batch_size == 1:
        fail("--batch-size 1: mixing pairs each sample with another sample of its batch; use 2 or more")
    if args.overwrite and args.resume:
        fail("--overwrite starts a fresh run: drop --resume, or drop --overwrite to continue the run")
    try:
        recipe_from_args(args, num_classes=2)
    except ValueError as exc:
        fail(f"mixing flags: {exc}")


def evaluate_only(args) -> bool:
    """--evaluate with --resume CHECKPOINT (a path): evaluate that checkpoint, train nothing."""
    return bool(args.evaluate) and args.resume not in (None, "auto")


def is_sound(args) -> bool:
    """--data names the synthesised sound set or a folder in the Speech Commands layout."""
    from dali_mix.data.audio_sources import is_speech_commands

    return args.data == AUDIO_DATA or (args.data is not None and args.val_data is None
                                       and is_speech_commands(args.data))


def mix_weights(text: str) -> dict[str, float]:
    """'4,1,1,1' (mixup,cutmix,resizemix,fmix) or 'mixup=1,cutout=2' -> {name: weight}."""
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if parts and all("=" in s for s in parts):
        out = {}
        for s in parts:
            k, v = s.split("=", 1)
            if k not in METHODS:
                raise ValueError(f"unknown method {k!r}; choose from {list(METHODS)}")
            out[k] = float(v)
        return out
    if len(parts) != len(DEFAULT_CANDIDATES):
        raise ValueError(f"give {len(DEFAULT_CANDIDATES)} weights for {','.join(DEFAULT_CANDIDATES)} "
                         f"or name=weight pairs, got {text!r}")
    return {k: float(v) for k, v in zip(DEFAULT_CANDIDATES, parts)}


def timm_mixup_args(args, num_classes: int) -> dict:
    """The keyword arguments of `timm.data.Mixup` that the timm-style flags describe."""
    return dict(mixup_alpha=0.0 if args.mix == "cutmix" else args.mixup,
                cutmix_alpha=0.0 if args.mix == "mixup" else args.cutmix,
                cutmix_minmax=tuple(args.cutmix_minmax) if args.cutmix_minmax and args.mix != "mixup" else None,
                prob=args.mixup_prob, switch_prob=0.5 if args.mixup_switch_prob is None else args.mixup_switch_prob,
                mode=args.mixup_mode or "batch", label_smoothing=args.smoothing, num_classes=num_classes)


def recipe_from_timm_flags(args, num_classes: int) -> dm.MixRecipe | None:
    """timm's Mixup (`--mixup-mode` or `--mixup-switch-prob` given), through
    `MixRecipe.from_timm`; None when neither is given."""
    if args.mixup_mode is None and args.mixup_switch_prob is None:
        return None
    if args.mix not in ("randommix", "mixup", "cutmix"):
        raise ValueError(f"--mixup-mode / --mixup-switch-prob are timm's Mixup/CutMix flags: "
                         f"they do not combine with --mix {args.mix}")
    recipe = dm.MixRecipe.from_timm(**timm_mixup_args(args, num_classes), target=args.targets, seed=args.seed)
    return _with_reprob(recipe, args)


def _with_reprob(recipe: dm.MixRecipe, args) -> dm.MixRecipe:
    """`--reprob`: Random Erasing after mixing, on every sample (timm's RandomErasing)."""
    if not args.reprob:
        return recipe
    return recipe.with_(after=tuple(recipe.after) + ("random_erasing",), erasing_prob=args.reprob)


def recipe_from_args(args, num_classes: int, image_size: int | None = None) -> dm.MixRecipe | None:
    """The MixRecipe the flags describe (None for --mix none without smoothing/sparse needs)."""
    if args.recipe:
        return dm.MixRecipe.from_file(args.recipe, num_classes=num_classes)
    timm_recipe = recipe_from_timm_flags(args, num_classes)
    if timm_recipe is not None:
        return timm_recipe
    if args.mix == "none":
        methods = {}
    elif args.mix == "randommix":
        methods = mix_weights(args.mix_weights) if args.mix_weights else {m: 1.0 for m in DEFAULT_CANDIDATES}
    else:
        methods = {args.mix: 1.0}
    # timm meaning: an alpha of 0 switches that method off
    if args.mixup == 0:
        methods.pop("mixup", None)
    if args.cutmix == 0 and args.cutmix_minmax is None:
        methods.pop("cutmix", None)
    if args.mix != "none" and not methods:
        raise ValueError("every mixing method is switched off by a zero alpha; use --mix none")
    return _with_reprob(dm.MixRecipe(
        methods=methods, num_classes=num_classes, prob=args.mixup_prob, mode=args.mix_mode,
        label_smoothing=args.smoothing, target=args.targets,
        mixup_alpha=args.mixup or 1.0, cutmix_alpha=args.cutmix or 1.0,
        cutmix_minmax=tuple(args.cutmix_minmax) if args.cutmix_minmax else None,
        resizemix_scale=tuple(args.resizemix_scale), fmix_alpha=args.fmix_alpha,
        fmix_decay_power=args.fmix_decay,
        fmix_size=(image_size, image_size) if image_size else None, seed=args.seed), args)


# ---------------------------------------------------------------------------------------- set-up
@dataclass
class Runtime:
    """This process: distributed ranks, torch device, rank-0 logging."""

    env: DistributedEnv
    device: torch.device
    log: Callable[..., None]

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0

    @property
    def use_gpu(self) -> bool:
        return self.device.type == "cuda"

    def shard_args(self) -> dict:
        """Keyword arguments every pipeline takes for device and sharding."""
        return dict(device="gpu" if self.use_gpu else "cpu", device_id=self.env.local_rank if self.use_gpu else None,
                    shard_id=self.env.rank, num_shards=self.env.world_size)


def start_process(args) -> Runtime:
    """Seed the RNGs, pick the device, join the process group (torchrun)."""
    env = distributed_env()
    torch.manual_seed(args.seed + env.rank)
    random.seed(args.seed + env.rank)
    np.random.seed(args.seed + env.rank)
    use_gpu = args.device == "gpu" or (args.device == "auto" and torch.cuda.is_available())
    if use_gpu and not torch.cuda.is_available():
        raise SystemExit("error: --device gpu but no CUDA device is available")
    device = torch.device(f"cuda:{env.local_rank}") if use_gpu else torch.device("cpu")
    if use_gpu:
        torch.cuda.set_device(device)
    if env.world_size > 1:
        dist.init_process_group(backend="nccl" if use_gpu else "gloo")
    log = (lambda *a: print(*a, flush=True)) if env.rank == 0 else (lambda *a: None)
    return Runtime(env, device, log)


def resolve_data(args, rank: int) -> tuple[str, str, bool]:
    """(train source, val source, is_fashion_mnist). Converts Fashion-MNIST on first use."""
    if args.data is None:
        from dali_mix.data.fashion_mnist import prepare_fashion_mnist

        if rank == 0:
            data = prepare_fashion_mnist(limit=args.limit)
        if dist.is_initialized():
            dist.barrier()
        if rank != 0:
            data = prepare_fashion_mnist(limit=args.limit, install=False)
        return str(data.train_dir), str(data.val_dir), True
    root = Path(args.data)
    if args.val_data is not None:
        return args.data, args.val_data, False
    if (root / "train").is_dir() and (root / "val").is_dir():
        return str(root / "train"), str(root / "val"), False
    raise SystemExit(f"error: --data {args.data}: no train/ and val/ inside; pass --val-data for the "
                     "validation source")


def resolve_audio(args, rank: int):
    """The Speech Commands splits when --data is 'spoken-commands' (synthesised on first use) or a
    folder in that layout; None for image data."""
    from dali_mix.data.audio_sources import resolve_speech_commands

    if args.data == AUDIO_DATA:
        from dali_mix.data.spoken_commands import EspeakNotFoundError, prepare_spoken_commands

        try:
            if rank == 0:
                root = prepare_spoken_commands().root
            if dist.is_initialized():
                dist.barrier()
            if rank != 0:
                root = prepare_spoken_commands(install=False, progress=False).root
        except EspeakNotFoundError as exc:
            raise SystemExit(f"error: --data {AUDIO_DATA}: {exc}") from None
    elif is_sound(args):
        root = args.data
    else:
        return None
    try:
        return resolve_speech_commands(root)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


@dataclass
class Data:
    """The run's validated data: train and val sources with the same classes."""

    train_spec: str
    train: Source
    val: Source
    num_classes: int
    small_default: bool  # the embedded Fashion-MNIST (28 px defaults), or sound
    val_spec: str = ""  # absolute where it is a path (recorded in checkpoints for `dali-mix evaluate`)
    label_noise: LabelNoise | None = None  # --label-noise: the corrupted train samples
    audio: object = None  # sound: the dali_mix.data.audio_sources.SpeechCommandsSplits
    pairs: str | None = None  # --task segmentation / multilabel: image + mask pairs (pipelines.segmentation.PairedFolder)


def open_pair_data(args, rt: Runtime) -> Data:
    """--task segmentation / multilabel: the image/mask pairs of train and val
    (`pipelines.segmentation`): the generated scenes (built on first use) without --data, a
    folder with train/ and val/ (each images/ + masks/), or a Pascal VOC root (splits train and
    val). The number of classes of the masks: the scenes' manifest, 21 for VOC, else
    --num-classes (required); multilabel labels the classes but the background (class 0): one
    fewer."""
    from dali_mix.data.fashion_mnist import read_manifest
    from dali_mix.data.scenes import prepare_scenes
    from pipelines.segmentation import PairedFolder

    if args.data is None:
        if rt.env.rank == 0:
            scenes = prepare_scenes(progress=not args.no_progress)
        if dist.is_initialized():
            dist.barrier()
        if rt.env.rank != 0:
            scenes = prepare_scenes(progress=False)
        root, train_dir, val_dir, classes = scenes.root, scenes.root / "train", scenes.root / "val", len(scenes.classes)
    else:
        root = Path(args.data)
        voc = (root / "JPEGImages").is_dir()
        train_dir = root if voc else Path(args.data) / "train"
        val_dir = root if voc else Path(args.val_data) if args.val_data else root / "val"
        manifest = read_manifest(root)
        classes = 21 if voc else len(manifest["classes"]) if manifest and "classes" in manifest else None
    num_classes = args.num_classes or classes
    if num_classes is None:
        raise SystemExit(f"error: --task segmentation --data {args.data}: pass --num-classes (the masks do not "
                         "say how many classes there are)")
    try:
        train, val = PairedFolder.of(train_dir, "train"), PairedFolder.of(val_dir, "val")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.task == "multilabel":
        num_classes -= 1
    return Data(str(Path(root).absolute()), train, val, num_classes, True, str(Path(val_dir).absolute()),
                pairs=args.task)


def open_data(args, rt: Runtime) -> Data:
    """Resolve and validate both sources; a train/val class mismatch stops the run, naming the
    classes. With --check-data the train source becomes the clean list (in --output)."""
    if args.task in PAIR_TASKS:
        return open_pair_data(args, rt)
    audio = resolve_audio(args, rt.env.rank)
    if audio is not None:
        train = audio.train
        if args.check_data and not evaluate_only(args):
            train = clean_folder_split(train, rt.log)
        if args.label_noise:
            raise SystemExit("error: --label-noise relabels an ImageFolder train source, not sound data")
        return Data(audio.root, train, audio.val, len(audio.classes), True, str(audio.root), audio=audio)
    train_spec, val_spec, small = resolve_data(args, rt.env.rank)
    try:
        train, val = resolve_source(train_spec), resolve_source(val_spec)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        num_classes, warning = resolve_num_classes(args.num_classes, train, train_spec)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if warning:
        rt.log(warning)
    why = class_mismatch(train, val, num_classes)
    if why:
        raise SystemExit(f"error: {why}")
    for line in left_out(train, "train") + left_out(val, "val"):
        rt.log(line)
    if args.check_data and not evaluate_only(args):
        train = clean_source(train, Path(args.output), rt.env.rank, rt.log)
    noise = None
    if args.label_noise:
        try:
            train, noise = corrupt_labels(train, args.label_noise, args.seed)
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
    return Data(absolute_spec(train_spec), train, val, num_classes, small, absolute_spec(val_spec), noise)


def absolute_spec(spec: str) -> str:
    """A source spec as an absolute path (globs and brace ranges as given)."""
    return spec if any(c in spec for c in "*?[{") else os.path.abspath(spec)


@dataclass(frozen=True)
class Settings:
    """Flags with their defaults resolved (Fashion-MNIST and sound have their own: sound trains
    10 epochs of batch 64, the last unmixed, and `image_size` is the number of mel bands)."""

    image_size: int
    crop: str
    epochs: int
    mix_off_epochs: int
    batch_size: int
    warmup_epochs: float
    base_lr: float
    workers: int

    @classmethod
    def resolve(cls, args, data: Data, env: DistributedEnv) -> Settings:
        small, sound, seg = data.small_default, data.audio is not None, data.pairs is not None
        image_size = args.n_mels if sound else args.image_size or (64 if seg else 28 if small else 224)
        epochs = args.epochs or (10 if sound or seg else 5 if small else 90)
        mix_off = args.mix_off_epochs if args.mix_off_epochs is not None else \
            (1 if small and not seg and epochs > 1 else 0)
        if mix_off >= epochs:
            raise SystemExit(f"error: --mix-off-epochs {mix_off} leaves no mixed epoch of {epochs}")
        batch_size = args.batch_size or (32 if seg else 64 if sound else 128 if small else 256)
        return cls(image_size=image_size,
                   crop=args.crop if args.crop != "auto" else ("pad" if image_size <= 64 else "random_resized"),
                   epochs=epochs, mix_off_epochs=mix_off, batch_size=batch_size,
                   warmup_epochs=args.warmup_epochs if args.warmup_epochs is not None else (0.3 if small else 5.0),
                   base_lr=args.lr or (0.2 if small else 0.1) * batch_size * env.world_size / 256,
                   workers=args.workers or max(1, (os.cpu_count() or 2) // max(1, env.local_world_size)))


def make_task(args, data: Data, s: Settings, log: Callable[..., None] = print) -> Task:
    """The Task the flags ask for: MixMo, timm's Mixup (--timm-peer), or classification with the
    recipe of the flags. Its settings are checked against the images first
    (`pipelines.classification.train_problems`): one that cannot work stops the run naming it, a
    degenerate one is a warning (via `log`)."""
    from pipelines.classification import crop_problem, train_problems

    if args.timm_peer:
        return TimmMixupTask(data.num_classes, mixup_args=timm_mixup_args(args, data.num_classes))
    if data.pairs:
        try:
            recipe = recipe_from_args(args, data.num_classes, s.image_size)
            if args.task == "multilabel":
                recipe = recipe.with_(label_format="multi_hot")
        except ValueError as exc:
            raise SystemExit(f"error: {flag_names(exc, args, s)}") from None
        return (SegmentationTask if args.task == "segmentation" else MultiLabelTask)(data.num_classes, recipe=recipe)
    try:
        if args.mixmo:
            check_mixmo_args(batch_repetition=args.mixmo_b, batch_size=s.batch_size)
            crop_error = crop_problem(s.crop, s.image_size)
            if crop_error:
                raise ValueError(crop_error)
            return MixMoTask(data.num_classes, variant=args.mixmo, r=args.mixmo_r, p_cut=args.mixmo_p,
                             b=args.mixmo_b, alpha=args.mixmo_alpha, smoothing=args.smoothing, epochs=s.epochs)
        why = recipe_classes_mismatch(args.recipe, data.num_classes) if args.recipe else None
        if why:
            raise ValueError(why)
        recipe = recipe_from_args(args, data.num_classes, None if data.audio else s.image_size)
        if data.audio is None:
            warn_once(train_problems(recipe, image_size=s.image_size, crop=s.crop), log=log)
    except ValueError as exc:
        raise SystemExit(f"error: {flag_names(exc, args, s)}") from None
    if recipe is not None and not recipe.mixes and recipe.target == "dense" and recipe.label_smoothing == 0:
        recipe = None  # plain training: integer labels
    mix_off_from = s.epochs - s.mix_off_epochs if s.mix_off_epochs else None
    if data.audio is not None:
        return AudioClassificationTask(data.num_classes, recipe=recipe, mix_off_from=mix_off_from,
                                       features=audio_features(args), noise_files=data.audio.noise_files)
    return ClassificationTask(data.num_classes, recipe=recipe, mix_off_from=mix_off_from)


def audio_features(args):
    """Sound: the log-mel spectrogram the flags ask for (pipelines.audio.AudioFeatures)."""
    from pipelines.audio import AudioFeatures

    return AudioFeatures(n_mels=args.n_mels)


def flag_names(exc: ValueError, args, s: Settings) -> str:
    """A pipeline or recipe error in the trainer's terms: the flags behind the value named."""
    text = str(exc)
    if text.startswith("image_size "):
        return f"--image-size {s.image_size} (--crop {s.crop}): {text}"
    if text.startswith("batch_repetition="):
        return f"--mixmo-b {args.mixmo_b} with --batch-size {s.batch_size}: {text}"
    if args.recipe and not text.startswith(("--recipe", str(args.recipe))):
        return f"--recipe {args.recipe}: {text}"
    return text


def run_signature(args, rt: Runtime, data: Data, s: Settings, task: Task) -> dict:
    """What a resumed run must keep (see dali_mix_tools.training.resume)."""
    return {"world_size": rt.env.world_size, "batch_size": s.batch_size, "data": data.train_spec,
            "train_samples": data.train.num_samples, "num_classes": data.num_classes, "model": args.model,
            "image_size": s.image_size, "crop": s.crop, "epochs": s.epochs, "mix_off_epochs": s.mix_off_epochs,
            "seed": args.seed, **({"label_noise": args.label_noise} if args.label_noise else {}),
            **task.signature()}


def load_resume(args, out_dir: Path, signature: dict) -> tuple[str | None, dict | None]:
    """(checkpoint path, state) to resume from, or (None, None); refuses a checkpoint whose run
    signature differs from this run's."""
    resume = args.resume
    if resume == "auto":
        resume = str(out_dir / "last.pt") if (out_dir / "last.pt").is_file() else None
    if not resume:
        return None, None
    try:
        state = ckpt.load(resume)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: --resume {resume}: {exc}") from None
    saved = state.get("signature") or {"world_size": state.get("world_size", 1)}
    diffs = incompatibilities(saved, signature)
    if diffs:
        raise SystemExit(f"error: --resume {resume}: the checkpoint belongs to a run with other settings; "
                         "resuming would break its step and learning-rate bookkeeping:\n  " + "\n  ".join(diffs)
                         + "\nResume with the saved settings, or start a new run in another --output.")
    return resume, state


def restore_best(run: RunDir | None, resume: str | None, state: dict | None, key: str = "val_top1") -> None:
    """A run killed between writing last.pt and copying it to best.pt at the end of its best
    epoch left best.pt behind: copy the checkpoint now, so best.pt holds the model that
    `best_top1` (the task's first val metric, `key` in the history) describes."""
    if run is None or not state or state["step_in_epoch"] or not state.get("history"):
        return
    if state["history"][-1][key] != round(state["best_top1"], 3):
        return  # the last finished epoch is not the best one
    best = run.path / "best.pt"
    try:
        best_epoch = ckpt.load(best).get("epoch") if best.is_file() else None
    except ValueError:
        best_epoch = None
    if best_epoch != state["epoch"]:
        run.copy(resume, "best.pt")


def evaluate_only_checkpoint(args, rt: Runtime) -> int:
    """--evaluate --resume CHECKPOINT: `dali-mix evaluate` on that checkpoint; the val data is
    --val-data / --data when given, else the checkpoint's."""
    data = None
    if (args.data is not None or args.val_data is not None) and not is_sound(args):
        data = resolve_data(args, rt.env.rank)[1]
    try:
        state = load_checkpoint(args.resume)
    except EvaluationError as exc:
        raise SystemExit(f"error: --resume {args.resume}: {exc}") from None
    check_evaluation(state, args.resume, state["num_classes"], args.model if args.model_given else None)
    if is_sound(args):  # the sound val pipeline: the trainer's data and task
        sound = open_data(args, rt)
        s = Settings.resolve(args, sound, rt.env)
        task = AudioClassificationTask(sound.num_classes, features=audio_features(args))
        model = task.model(state["model_name"], small_images=s.image_size <= 64)
        model.load_state_dict(state["model"])
        result = evaluate_in_memory(model.to(rt.device), False, val_loader(rt, sound, s), rt.device, robustness=None,
                                    world_size=rt.env.world_size, rank=rt.env.rank, progress=not args.no_progress)
        log_evaluation(rt, document(args.resume, sound.val.root, result))
        return 0
    try:
        doc = evaluate_checkpoint(args.resume, data=data, device=rt.device, workers=args.workers or os.cpu_count() or 2,
                                  robustness=robustness_from_args(args) if args.evaluate == "robustness" else None,
                                  rank=rt.env.rank, world_size=rt.env.world_size, progress=not args.no_progress)
    except EvaluationError as exc:
        raise SystemExit(f"error: --resume {args.resume}: {exc}") from None
    log_evaluation(rt, doc)
    return 0


def log_evaluation(rt: Runtime, doc: dict) -> None:
    from dali_mix.evaluation import format_table

    c = doc["clean"]
    rt.log(f"evaluate {doc['checkpoint']} on {doc['data']}: val top-1 {c['top1']:.2f}% top-5 {c['top5']:.2f}% "
           f"({doc['samples']} imgs)\n{format_table(doc)}")


def val_loader(rt: Runtime, data: Data, s: Settings, source: Source | None = None) -> NamingErrors:
    """The val loader of `dali-mix evaluate` (`source`: another source than the val data); on
    sound, the audio val pipeline (`pipelines.audio`)."""
    if data.pairs:
        from pipelines.segmentation import val_pipeline

        presence = data.num_classes + 1 if data.pairs == "multilabel" else None
        built = val_pipeline(source or data.val, batch_size=s.batch_size, image_size=s.image_size,
                             num_threads=s.workers, presence_classes=presence, **rt.shard_args())
        return Loader(built.pipe, built.output_map, built.reader_name, train=False)
    if data.audio is None:
        return build_val_loader(source or data.val, batch_size=s.batch_size, image_size=s.image_size, crop=s.crop,
                                workers=s.workers, num_classes=data.num_classes, **rt.shard_args())
    from pipelines.audio import AudioFeatures, val_pipeline

    built = val_pipeline(source or data.val, batch_size=s.batch_size, image_size=s.image_size, num_threads=s.workers,
                         features=AudioFeatures(n_mels=s.image_size), num_classes=data.num_classes,
                         crop="none" if s.crop == "pad" else "center", **rt.shard_args())
    return NamingErrors(Loader(built.pipe, built.output_map, built.reader_name, train=False,
                               num_classes=data.num_classes), source or data.val, "val")


def claim_output(args, rt: Runtime) -> RunDir:
    """Take --output for this run (rank 0 only): lock, earlier-run check, stale temp files."""
    out_dir = Path(args.output)
    resuming = args.resume not in (None, "auto") or (args.resume == "auto" and (out_dir / "last.pt").is_file())
    try:
        if not (args.output_given or resuming or args.overwrite):
            moved = archive_earlier_run(out_dir)
            if moved:
                rt.log(f"moved the earlier run in {out_dir} to {moved} (--output DIR chooses the directory)")
        run = RunDir.claim(out_dir, resuming=resuming, overwrite=args.overwrite)
    except RunDirError as exc:
        raise SystemExit(f"error: {exc}") from None
    if run.took_over:
        rt.log(f"--output {out_dir}: took over the lock of a run that ended without releasing it ({run.took_over})")
    for p in run.removed:
        rt.log(f"--output {out_dir}: removed {p.name}, left by a run killed while writing it")
    return run


def main(argv=None) -> int:
    args = parse_args(argv)
    rt = start_process(args)
    if evaluate_only(args):
        return evaluate_only_checkpoint(args, rt)
    out_dir = Path(args.output)
    run = claim_output(args, rt) if rt.is_main else None
    if dist.is_initialized():
        dist.barrier()  # the other ranks write into --output only once rank 0 owns it
    with run or RunDir(out_dir), output_errors():
        data = open_data(args, rt)
        s = Settings.resolve(args, data, rt.env)
        task = make_task(args, data, s, rt.log)
        signature = run_signature(args, rt, data, s, task)
        resume, state = load_resume(args, out_dir, signature)
        restore_best(run, resume, state, task.metric_keys[0])
        trainer = Trainer(args, rt, data, s, task, run, state, signature)
        if state and trainer.start_epoch < s.epochs:  # a finished run says so in fit()
            rt.log(f"resumed from {resume} at epoch {trainer.start_epoch + 1}, step {trainer.start_step}")
        status = trainer.fit()
    if dist.is_initialized():
        dist.destroy_process_group()
    return status


# ---------------------------------------------------------------------------------------- training
class Trainer:
    """The training loop for any Task: builds loaders, model and optimiser (restored from
    `state` when resuming), trains, evaluates, checkpoints and writes the metrics (rank 0)."""

    def __init__(self, args, rt: Runtime, data: Data, s: Settings, task: Task, run: RunDir | None,
                 state: dict | None, signature: dict):
        self.args, self.rt, self.data, self.s, self.task, self.run = args, rt, data, s, task, run
        self.signature = signature
        self.val_loader = val_loader(rt, data, s)
        self.built = task.train_pipeline(
            data.train, batch_size=s.batch_size, image_size=s.image_size, seed=args.seed, num_threads=s.workers,
            num_classes=data.num_classes, crop=s.crop, enable_checkpointing=True,
            checkpoint=state["dali"][rt.env.rank] if state else None, **rt.shard_args())
        self.loader = Loader(self.built.pipe, self.built.output_map, self.built.reader_name,
                             num_classes=data.num_classes, multi_label=getattr(task, "multi_label", False))
        self.built.clock.runs_per_epoch = self.loader.runs_per_epoch
        # DALI restores the external sources' run counter with the checkpoint: no run_offset needed
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise SystemExit(f"error: the train shard has fewer samples than one batch ({s.batch_size})")
        self.model = task.model(args.model, small_images=s.image_size <= 64).to(rt.device)
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        params = list(self.model.named_parameters())
        self.optimizer = torch.optim.SGD(
            [{"params": [p for _, p in params if p.ndim > 1], "weight_decay": args.wd},
             {"params": [p for _, p in params if p.ndim <= 1], "weight_decay": 0.0}],
            lr=s.base_lr, momentum=args.momentum, nesterov=True)
        self.start_epoch = state["epoch"] if state else 0
        self.start_step = state["step_in_epoch"] if state else 0
        self.best = state["best_top1"] if state else 0.0
        if state and "history" in state:
            self.history: list[dict] = list(state["history"])
        else:  # a fresh run, or a checkpoint from before the history was kept in it
            self.history = [r for r in (run.read_metrics() if run and state else []) if r["epoch"] <= self.start_epoch]
        self.loss_sum, self.loss_n = (state.get("loss_sums") or [(0.0, 0)] * rt.env.world_size)[rt.env.rank] \
            if state and self.start_step else (0.0, 0)
        if state:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"][rt.env.rank])
        self.ddp = self.model
        if rt.env.world_size > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=[rt.device.index] if rt.use_gpu else None)
        self.amp_dtype = None
        if args.amp:
            self.amp_dtype = torch.bfloat16 if (not rt.use_gpu or torch.cuda.is_bf16_supported()) else torch.float16
        self.scaler = torch.amp.GradScaler(enabled=self.amp_dtype == torch.float16)
        self.global_step = self.start_epoch * self.steps_per_epoch + self.start_step
        self.lr, self.ips, self.t0 = s.base_lr, 0.0, time.time()
        if run is not None and state is not None:
            run.write_metrics(self.history)  # drops lines of epochs the checkpoint had not finished
        if run is not None and data.label_noise is not None:
            data.label_noise.write(run.path, data.train)
        rt.log(f"dali-mix {dm.__version__} | {args.model} on {rt.device} x{rt.env.world_size} | "
               f"{data.num_classes} classes | train {data.train.num_samples} imgs ({self.steps_per_epoch} "
               f"steps/epoch/process, batch {s.batch_size}) | image {s.image_size}px crop={s.crop} | "
               f"mixing: {task.describe()}")

    def fit(self) -> int:
        s, log = self.s, self.rt.log
        if self.start_epoch >= s.epochs:
            log(finished_run(self.history, s.epochs, self.best, self.args.output, self.task.metric_keys[0],
                             self.task.metric_labels[0]))
            if self.args.evaluate:  # a finished run can still be scored: --resume auto --evaluate
                self.final_evaluation()
            return 0
        step_log = None
        if self.args.step_log:
            with writing(f"{self.args.step_log}.rank{self.rt.env.rank}"):
                step_log = open(f"{self.args.step_log}.rank{self.rt.env.rank}", "a")
        top1 = float("nan")
        label = self.task.metric_labels[0]
        for epoch in range(self.start_epoch, s.epochs):
            first = self.start_step if epoch == self.start_epoch else 0
            if first == 0:
                self.loss_sum, self.loss_n = 0.0, 0
            if not self.train_epoch(epoch, first, step_log):
                log(f"stopped after {self.global_step} steps (--stop-after-steps); resume with --resume auto")
                return 0
            top1 = self.end_epoch(epoch)
        log(f"done: {s.epochs} epochs | final {label} {top1:.2f}% | best {self.best:.2f}% | output {self.args.output}")
        if self.data.label_noise is not None:
            self.memorisation()
        if self.args.evaluate:
            self.final_evaluation()
        return 0

    def final_evaluation(self) -> None:
        """--evaluate: the final model (= last.pt) as `dali-mix evaluate` scores it, into
        OUTPUT/evaluation.json."""
        args, rt = self.args, self.rt
        robustness = robustness_from_args(args) if args.evaluate == "robustness" else None
        result = evaluate_in_memory(self.model, isinstance(self.task, MixMoTask), self.val_loader, rt.device,
                                    robustness=robustness, world_size=rt.env.world_size, rank=rt.env.rank,
                                    progress=rt.is_main and not args.no_progress)
        doc = document(Path(args.output) / "last.pt", self.data.val.root, result)
        log_evaluation(rt, doc)
        if self.run is not None:
            write_json(doc, self.run.path / "evaluation.json")

    def memorisation(self) -> None:
        """--label-noise: top-1 of the final model on the corrupted train samples (val
        pipeline, no augmentation) against their wrong and their true labels, added to
        OUTPUT/label_noise.json."""
        rt, noise = self.rt, self.data.label_noise
        scores = {}
        for key, noisy in (("noisy_label_top1", True), ("true_label_top1", False)):
            loader = val_loader(rt, self.data, self.s, corrupted_subset(self.data.train, noise, noisy=noisy))
            result = evaluate_in_memory(self.model, isinstance(self.task, MixMoTask), loader, rt.device,
                                        robustness=None, world_size=rt.env.world_size, rank=rt.env.rank,
                                        progress=False)
            scores[key] = result["clean"]["top1"]
        rt.log(f"label noise {noise.fraction:g}: the final model gives {scores['noisy_label_top1']:.2f}% of the "
               f"{len(noise.indices)} corrupted train samples their wrong label (memorised), "
               f"{scores['true_label_top1']:.2f}% their true one")
        if self.run is not None:
            noise.write(self.run.path, self.data.train, memorisation=scores)

    def train_epoch(self, epoch: int, first: int, step_log) -> bool:
        """Train from step `first` to the end of the epoch; False when --stop-after-steps hit."""
        args, rt, s = self.args, self.rt, self.s
        self.ddp.train()
        self.t0, seen = time.time(), 0
        progress = Progress(self.steps_per_epoch, f"epoch {epoch + 1}/{s.epochs}",
                            enabled=rt.is_main and not args.no_progress)
        total = s.epochs * self.steps_per_epoch
        for i, batch in enumerate(named_errors(self.loader, self.data.train), start=first):
            lr = cosine_lr(self.global_step, total, s.base_lr, int(s.warmup_epochs * self.steps_per_epoch))
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            images = batch[0].to(rt.device, non_blocking=True)
            if args.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(rt.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                output = self.task.forward(self.ddp, images, batch, rt.device)
            loss = self.task.loss(output, batch, self.built.output_map, rt.device)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            value = loss.item()
            if not math.isfinite(value):
                raise SystemExit(f"error: loss is {value} at epoch {epoch + 1} step {i}")
            self.global_step += 1
            seen += images.shape[0]
            self.loss_sum += value
            self.loss_n += 1
            self.lr = lr
            if step_log is not None:
                step_log.write(json.dumps({"epoch": epoch, "step": i, "global_step": self.global_step, "loss": value,
                                           "lr": lr, "targets": target_checksum(batch[1:])}) + "\n")
                step_log.flush()
            progress.update(i + 1, loss=self.loss_sum / self.loss_n, lr=lr,
                            ips=seen * rt.env.world_size / (time.time() - self.t0))
            if args.save_every and (i + 1) % args.save_every == 0 and i + 1 < self.steps_per_epoch:
                self.save("last.pt", epoch, i + 1)
            if args.stop_after_steps and self.global_step >= args.stop_after_steps:
                self.save("last.pt", epoch, i + 1)
                progress.close()
                return False
        progress.close()
        self.ips = seen * rt.env.world_size / max(time.time() - self.t0, 1e-9)
        return True

    def end_epoch(self, epoch: int) -> float:
        """Evaluate, record the epoch's metrics, checkpoint (last.pt, best.pt); returns top-1."""
        rt, s = self.rt, self.s
        train_loss = global_mean(self.loss_sum, self.loss_n, rt.device, rt.env.world_size)
        top1, top5, n_val, heads = self.task.metrics(
            self.model, self.ddp, self.val_loader, rt.device, channels_last=self.args.channels_last,
            amp_dtype=self.amp_dtype, world_size=rt.env.world_size)
        self.best = max(self.best, top1)
        key1, key2 = self.task.metric_keys
        label1, label2 = self.task.metric_labels
        record = {"epoch": epoch + 1, "train_loss": round(train_loss, 5), key1: round(top1, 3),
                  key2: round(top5, 3), "val_samples": n_val, "images_per_s": round(self.ips, 1),
                  "lr": self.lr, "seconds": round(time.time() - self.t0, 1), "mixing": self.task.mixing(epoch), **heads}
        head_text = "".join(f" | {k.replace('val_top1_', '')} {v:.2f}%" for k, v in heads.items())
        rt.log(f"epoch {epoch + 1}/{s.epochs}: train loss {train_loss:.4f} | {label1} {top1:.2f}% {label2} "
               f"{top5:.2f}% ({n_val} imgs){head_text} | {self.ips:.0f} images/s | {record['seconds']}s")
        self.history = [r for r in self.history if r["epoch"] < epoch + 1] + [record]
        self.save("last.pt", epoch + 1, 0)
        if self.run is not None:
            self.run.write_metrics(self.history)
            if top1 >= self.best:
                self.run.copy(self.run.path / "last.pt", "best.pt")
        return top1

    def save(self, name: str, epoch: int, step: int) -> None:
        """Checkpoint every rank's DALI, RNG and running-loss state (written by rank 0)."""
        mine = (self.loader.checkpoint(), rng_state(), (self.loss_sum, self.loss_n))
        gathered = [mine]
        if self.rt.env.world_size > 1:
            gathered = [None] * self.rt.env.world_size
            dist.all_gather_object(gathered, mine)
        if self.run is None:
            return
        dali_states, rngs, loss_sums = (list(x) for x in zip(*gathered))
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": epoch, "step_in_epoch": step, "best_top1": self.best,
                 "dali": dali_states, "rng": rngs, "loss_sums": loss_sums if step else None,
                 "history": self.history, "world_size": self.rt.env.world_size,
                 "signature": self.signature,
                 "args": {k: v for k, v in vars(self.args).items()
                          if isinstance(v, (int, float, str, bool, type(None)))},
                 "num_classes": self.data.num_classes, "model_name": self.args.model,
                 "val_data": self.data.val_spec, "mixmo": isinstance(self.task, MixMoTask)}
        self.run.save_checkpoint(name, state)  # a failed write (full disk) keeps the earlier one


def target_checksum(rest) -> float:
    """A number that changes when any target or label of the batch changes (for --step-log)."""
    total = 0.0
    for t in rest:
        t = t.double().reshape(t.shape[0], -1)
        weights = torch.arange(1, t.numel() + 1, dtype=torch.float64).reshape(t.shape)
        total += float((t * weights).sum())
    return total


def global_mean(total: float, count: int, device, world_size: int) -> float:
    """sum / count over every rank's (total, count)."""
    if world_size > 1:
        t = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        total, count = float(t[0]), float(t[1])
    return total / max(count, 1)


if __name__ == "__main__":
    sys.exit(main())
