#!/usr/bin/env python
"""Reference trainer: DALI pipelines with in-pipeline mixing feeding a torchvision model.

    python train.py                                  # RandomMix on the embedded Fashion-MNIST
    python train.py --data /data/imagenet --model resnet50 --epochs 90 --batch-size 256 --amp
    torchrun --nproc_per_node 8 train.py --data /data/imagenet ...   # one or many nodes

With no --data, Fashion-MNIST is converted once (Debian package dataset-fashion-mnist) into an
ImageFolder under $DALI_MIX_DATA (default ~/.cache/dali-mix). --data takes an ImageFolder root
with train/ and val/ (ImageNet layout), or a train source (ImageFolder, file list, webdataset
shards) with --val-data for the validation source.

Distributed: under torchrun it reads RANK / WORLD_SIZE / LOCAL_RANK, uses DDP (NCCL on GPUs,
Gloo on the CPU) and shards the DALI readers by global rank. Checkpoints (last.pt, best.pt in
--output) are written atomically and hold the model, optimiser, step, RNG states and the DALI
pipeline state, so --resume continues mid-epoch with the same batches.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torchvision

import dali_mix as dm
from dali_mix import checkpoint as ckpt
from dali_mix.config import METHODS, PAIR_METHODS
from dali_mix.torch import Loader, MixMoNet, mixed_cross_entropy, mixmo_loss, soft_target_cross_entropy
from dali_mix.train_support import (
    Progress,
    build_model,
    cosine_lr,
    distributed_env,
    evaluate,
    rng_state,
    set_rng_state,
)

MIX_CHOICES = ("none", "mixup", "cutmix", "resizemix", "fmix", "randommix")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None, help="ImageFolder root with train/ and val/, or a train source; "
                   "default: the embedded Fashion-MNIST")
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
    m.add_argument("--mix-weights", default=None, help="RandomMix weights for mixup,cutmix,resizemix,fmix "
                   "(e.g. 4,1,1,1) or name=weight pairs (mixup=1,cutout=1)")
    m.add_argument("--mix-mode", choices=("sample", "batch"), default="sample")
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
    x = p.add_argument_group("MixMo (two inputs, two encoders, two heads; replaces --mix)")
    x.add_argument("--mixmo", choices=("linear", "cut"), default=None,
                   help="train a MixMo model: Linear-MixMo, or Cut-MixMo (patch with prob --mixmo-p)")
    x.add_argument("--mixmo-r", type=float, default=3.0, help="loss balancing: w_i ~ k_i^(1/r)")
    x.add_argument("--mixmo-p", type=float, default=0.5, help="Cut-MixMo patch probability, decayed "
                   "linearly to 0 over the last 1/12 of training")
    x.add_argument("--mixmo-b", type=int, default=1, help="batch repetition: each image b times per batch")
    x.add_argument("--mixmo-alpha", type=float, default=2.0, help="kappa ~ Beta(alpha, alpha)")
    t = p.add_argument_group("model and optimisation")
    t.add_argument("--model", default="resnet18", help="any torchvision classification model")
    t.add_argument("--epochs", type=int, default=None, help="default 90 (5 on Fashion-MNIST)")
    t.add_argument("--batch-size", type=int, default=None, help="per process (default 256, 128 on "
                   "Fashion-MNIST)")
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
    o.add_argument("--output", default="runs/latest", help="directory for checkpoints and metrics")
    o.add_argument("--resume", default=None, help="checkpoint to resume from, or 'auto' (OUTPUT/last.pt if any)")
    o.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (mid-epoch)")
    o.add_argument("--stop-after-steps", type=int, default=0, help="stop (as if killed) after N steps "
                   "in total, after saving a checkpoint: for testing resume")
    o.add_argument("--no-progress", action="store_true")
    o.add_argument("--evaluate", action="store_true", help="only evaluate the --resume checkpoint on the "
                   "val data and print top-1/top-5")
    o.add_argument("--step-log", default=None, help="append one JSON line per training step (loss, lr, "
                   "a checksum of the targets) to this file, per rank: FILE.rankN")
    args = p.parse_args(argv)
    validate_args(args, p)
    return args


def validate_args(args, parser) -> None:
    """Every flag checked before any data is read: errors name the flag."""
    def fail(msg):
        parser.error(msg)

    if args.model not in torchvision.models.list_models(module=torchvision.models):
        fail(f"--model {args.model!r} is not a torchvision classification model "
             f"(e.g. resnet18, resnet50, efficientnet_b0; see torchvision.models.list_models())")
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
        if not (args.mixmo_r > 0 and 0 <= args.mixmo_p <= 1 and args.mixmo_b >= 1 and args.mixmo_alpha > 0):
            fail(f"MixMo flags: need --mixmo-r > 0, 0 <= --mixmo-p <= 1, --mixmo-b >= 1, --mixmo-alpha > 0; "
                 f"got {args.mixmo_r}, {args.mixmo_p}, {args.mixmo_b}, {args.mixmo_alpha}")
        if not args.model.startswith(("resnet", "wide_resnet", "resnext")):
            fail(f"--mixmo needs a ResNet-family --model (resnet*, wide_resnet*, resnext*), got {args.model!r}")
        if args.targets != "dense":
            fail("--mixmo uses dense targets: drop --targets sparse")
    if args.mix_off_epochs is not None and args.mix_off_epochs < 0:
        fail(f"--mix-off-epochs must be >= 0, got {args.mix_off_epochs}")
    if args.evaluate and not args.resume:
        fail("--evaluate needs --resume CHECKPOINT")
    if args.recipe is not None and not Path(args.recipe).is_file():
        fail(f"--recipe {args.recipe!r} does not exist")
    if args.data is not None and not Path(args.data).exists() and not any(c in args.data for c in "*?["):
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
    if len(parts) != len(PAIR_METHODS):
        raise ValueError(f"give {len(PAIR_METHODS)} weights for {','.join(PAIR_METHODS)} "
                         f"or name=weight pairs, got {text!r}")
    return {k: float(v) for k, v in zip(PAIR_METHODS, parts)}


def recipe_from_args(args, num_classes: int, image_size: int | None = None) -> dm.MixRecipe | None:
    """The MixRecipe the flags describe (None for --mix none without smoothing/sparse needs)."""
    if args.recipe:
        return dm.MixRecipe.from_file(args.recipe, num_classes=num_classes)
    if args.mix == "none":
        methods = {}
    elif args.mix == "randommix":
        methods = mix_weights(args.mix_weights) if args.mix_weights else {m: 1.0 for m in PAIR_METHODS}
    else:
        methods = {args.mix: 1.0}
    # timm meaning: an alpha of 0 switches that method off
    if args.mixup == 0:
        methods.pop("mixup", None)
    if args.cutmix == 0 and args.cutmix_minmax is None:
        methods.pop("cutmix", None)
    if args.mix != "none" and not methods:
        raise ValueError("every mixing method is switched off by a zero alpha; use --mix none")
    return dm.MixRecipe(
        methods=methods, num_classes=num_classes, prob=args.mixup_prob, mode=args.mix_mode,
        label_smoothing=args.smoothing, target=args.targets,
        mixup_alpha=args.mixup or 1.0, cutmix_alpha=args.cutmix or 1.0,
        cutmix_minmax=tuple(args.cutmix_minmax) if args.cutmix_minmax else None,
        resizemix_scale=tuple(args.resizemix_scale), fmix_alpha=args.fmix_alpha,
        fmix_decay_power=args.fmix_decay,
        fmix_size=(image_size, image_size) if image_size else None, seed=args.seed)


def resolve_data(args, rank: int):
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


def main(argv=None) -> int:
    args = parse_args(argv)
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
    is_main = env.rank == 0
    log = (lambda *a: print(*a, flush=True)) if is_main else (lambda *a: None)

    train_src, val_src, small_default = resolve_data(args, env.rank)
    image_size = args.image_size or (28 if small_default else 224)
    crop = args.crop if args.crop != "auto" else ("pad" if image_size <= 64 else "random_resized")
    epochs = args.epochs or (5 if small_default else 90)
    mix_off_epochs = args.mix_off_epochs
    if mix_off_epochs is None:
        mix_off_epochs = 1 if small_default and epochs > 1 else 0
    if mix_off_epochs >= epochs:
        raise SystemExit(f"error: --mix-off-epochs {mix_off_epochs} leaves no mixed epoch of {epochs}")
    batch_size = args.batch_size or (128 if small_default else 256)
    warmup = args.warmup_epochs if args.warmup_epochs is not None else (0.3 if small_default else 5.0)
    base_lr = args.lr or (0.2 if small_default else 0.1) * batch_size * env.world_size / 256
    workers = args.workers or max(1, (os.cpu_count() or 2) // max(1, env.local_world_size))

    from pipelines.classification import train_pipeline, val_pipeline
    from pipelines.sources import resolve_source

    train_source = resolve_source(train_src)
    if args.check_data:
        train_source = clean_source(train_source, Path(args.output), env.rank, log)
    num_classes = args.num_classes or train_source.num_classes
    if not num_classes:
        raise SystemExit(f"error: the train source {train_src} does not name its classes (no classes.txt): "
                         "pass --num-classes")
    recipe = recipe_from_args(args, num_classes, image_size)
    if recipe is not None and not recipe.mixes and recipe.target == "dense" and recipe.label_smoothing == 0:
        recipe = None  # plain training: integer labels
    if args.mixmo:
        recipe = None  # MixMo mixes features in the model, not images in the pipeline
    out_dir = Path(args.output)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    # ---- resume -------------------------------------------------------------------------------
    state = None
    resume = args.resume
    if resume == "auto":
        resume = str(out_dir / "last.pt") if (out_dir / "last.pt").is_file() else None
    if resume:
        state = ckpt.load(resume)
        if not args.evaluate and state.get("world_size", 1) != env.world_size:
            raise SystemExit(f"error: --resume {resume}: saved with {state.get('world_size')} processes, "
                             f"now {env.world_size}")
    start_epoch = state["epoch"] if state else 0
    step_in_epoch = state["step_in_epoch"] if state else 0

    val_built = val_pipeline(val_src, batch_size=batch_size, image_size=image_size,
                             device="gpu" if use_gpu else "cpu", device_id=env.local_rank if use_gpu else None,
                             shard_id=env.rank, num_shards=env.world_size, num_threads=workers,
                             num_classes=num_classes, crop="none" if crop == "pad" else "center")
    val_loader = Loader(val_built.pipe, val_built.output_map, val_built.reader_name, train=False,
                        num_classes=num_classes)
    if args.evaluate:
        model = build_model(state.get("model_name", args.model), num_classes, small_images=image_size <= 64)
        if state.get("mixmo"):
            model = MixMoNet(model, num_classes)
        model.load_state_dict(state["model"])
        model.to(device)
        top1, top5, n_val, _ = evaluate(model, val_loader, device, world_size=env.world_size,
                                        mixmo=bool(state.get("mixmo")))
        log(f"evaluate {resume}: val top-1 {top1:.2f}% top-5 {top5:.2f}% ({n_val} imgs)")
        return 0
    mix_off_from = epochs - mix_off_epochs if mix_off_epochs else None
    if args.mixmo:
        from pipelines.mixmo import mixmo_train_pipeline

        built = mixmo_train_pipeline(
            train_source, batch_size=batch_size, image_size=image_size, device="gpu" if use_gpu else "cpu",
            device_id=env.local_rank if use_gpu else None, shard_id=env.rank, num_shards=env.world_size,
            seed=args.seed, num_threads=workers, num_classes=num_classes, crop=crop,
            p_cut=0.0 if args.mixmo == "linear" else args.mixmo_p, total_epochs=epochs,
            alpha=args.mixmo_alpha, batch_repetition=args.mixmo_b, smoothing=args.smoothing,
            enable_checkpointing=True, checkpoint=state["dali"][env.rank] if state else None)
    else:
        built = None
    built = built or train_pipeline(
        train_source, batch_size=batch_size, image_size=image_size, device="gpu" if use_gpu else "cpu",
        device_id=env.local_rank if use_gpu else None, shard_id=env.rank, num_shards=env.world_size,
        seed=args.seed, num_threads=workers, recipe=recipe, num_classes=num_classes, crop=crop,
        enable_checkpointing=True,
        checkpoint=state["dali"][env.rank] if state else None,
        mix_off_from_epoch=mix_off_from if recipe is not None else None)
    train_loader = Loader(built.pipe, built.output_map, built.reader_name, num_classes=num_classes)
    built.clock.runs_per_epoch = train_loader.runs_per_epoch
    # DALI restores the external sources' run counter with the checkpoint: no run_offset needed
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise SystemExit(f"error: the train shard has fewer samples than one batch ({batch_size})")

    model = build_model(args.model, num_classes, small_images=image_size <= 64)
    if args.mixmo:
        model = MixMoNet(model, num_classes)
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params_bn = [p for n, p in model.named_parameters() if p.ndim <= 1]
    params_w = [p for n, p in model.named_parameters() if p.ndim > 1]
    optimizer = torch.optim.SGD([{"params": params_w, "weight_decay": args.wd},
                                 {"params": params_bn, "weight_decay": 0.0}],
                                lr=base_lr, momentum=args.momentum, nesterov=True)
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"][env.rank])
    ddp = model
    if env.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_gpu else None)
    amp_dtype = None
    if args.amp:
        amp_dtype = torch.bfloat16 if (not use_gpu or torch.cuda.is_bf16_supported()) else torch.float16
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    best = state["best_top1"] if state else 0.0
    total_steps = epochs * steps_per_epoch
    global_step = start_epoch * steps_per_epoch + step_in_epoch

    log(f"dali-mix {dm.__version__} | {args.model} on {device} x{env.world_size} | {num_classes} classes | "
        f"train {train_source.num_samples} imgs ({steps_per_epoch} steps/epoch/process, batch {batch_size}) | "
        f"image {image_size}px crop={crop} | mixing: {describe(recipe)}")
    if state:
        log(f"resumed from {resume} at epoch {start_epoch + 1}, step {step_in_epoch}")

    def save(name: str, epoch: int, step: int, top1: float | None = None):
        dali_states = [None] * env.world_size
        rngs = [None] * env.world_size
        mine_dali, mine_rng = train_loader.checkpoint(), rng_state()
        if env.world_size > 1:
            dist.all_gather_object(dali_states, mine_dali)
            dist.all_gather_object(rngs, mine_rng)
        else:
            dali_states, rngs = [mine_dali], [mine_rng]
        if is_main:
            ckpt.save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "epoch": epoch, "step_in_epoch": step, "best_top1": best if top1 is None else top1,
                              "dali": dali_states, "rng": rngs, "world_size": env.world_size,
                              "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, type(None)))},
                              "num_classes": num_classes, "model_name": args.model,
                              "mixmo": bool(args.mixmo)},
                             out_dir / name)

    metrics_path = out_dir / "metrics.jsonl"
    step_log = open(f"{args.step_log}.rank{env.rank}", "a") if args.step_log else None
    top1 = top5 = float("nan")
    for epoch in range(start_epoch, epochs):
        ddp.train()
        t0 = time.time()
        seen, loss_sum, loss_n = 0, 0.0, 0
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}", enabled=is_main and not args.no_progress)
        first = step_in_epoch if epoch == start_epoch else 0
        for i, batch in enumerate(named_errors(train_loader, train_source), start=first):
            lr = cosine_lr(global_step, total_steps, base_lr, int(warmup * steps_per_epoch))
            for g in optimizer.param_groups:
                g["lr"] = lr
            images = batch[0].to(device, non_blocking=True)
            if args.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                if args.mixmo:
                    x1, tgt0, tgt1, kappa, mask, use_cut = (t.to(device, non_blocking=True) for t in batch[1:])
                    logits, kappa_used = ddp(images, x1, kappa=kappa, mask=mask, use_cut=use_cut.bool(),
                                             return_kappa=True)
                else:
                    logits = ddp(images)
            if args.mixmo:
                loss = mixmo_loss(logits.float(), tgt0, tgt1, kappa_used, r=args.mixmo_r)
            else:
                loss = compute_loss(logits.float(), batch[1:], built.output_map, recipe, device)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if not math.isfinite(loss.item()):
                raise SystemExit(f"error: loss is {loss.item()} at epoch {epoch + 1} step {i}")
            global_step += 1
            seen += images.shape[0]
            loss_sum += loss.item()
            loss_n += 1
            if step_log is not None:
                step_log.write(json.dumps({"epoch": epoch, "step": i, "global_step": global_step,
                                           "loss": loss.item(), "lr": lr,
                                           "targets": target_checksum(batch[1:])}) + "\n")
                step_log.flush()
            progress.update(i + 1, loss=loss_sum / loss_n, lr=lr, ips=seen * env.world_size / (time.time() - t0))
            if args.save_every and (i + 1) % args.save_every == 0 and i + 1 < steps_per_epoch:
                save("last.pt", epoch, i + 1)
            if args.stop_after_steps and global_step >= args.stop_after_steps:
                save("last.pt", epoch, i + 1)
                progress.close()
                log(f"stopped after {global_step} steps (--stop-after-steps); resume with --resume auto")
                return 0
        progress.close()
        train_time = time.time() - t0
        ips = seen * env.world_size / train_time
        train_loss = reduce_mean(loss_sum / max(loss_n, 1), device, env.world_size)
        top1, top5, n_val, heads = evaluate(model if args.mixmo else ddp, val_loader, device,
                                            channels_last=args.channels_last, amp_dtype=amp_dtype,
                                            world_size=env.world_size, mixmo=bool(args.mixmo))
        best = max(best, top1)
        record = {"epoch": epoch + 1, "train_loss": round(train_loss, 5), "val_top1": round(top1, 3),
                  "val_top5": round(top5, 3), "val_samples": n_val, "images_per_s": round(ips, 1),
                  "lr": lr, "seconds": round(time.time() - t0, 1), "mixing": recipe is not None and
                  (mix_off_from is None or epoch < mix_off_from), **heads}
        head_text = "".join(f" | {k.replace('val_top1_', '')} {v:.2f}%" for k, v in heads.items())
        log(f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f} | val top-1 {top1:.2f}% top-5 "
            f"{top5:.2f}% ({n_val} imgs){head_text} | {ips:.0f} images/s | {record['seconds']}s")
        if is_main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        save("last.pt", epoch + 1, 0, top1=best)
        if is_main and top1 >= best:
            shutil.copyfile(out_dir / "last.pt", out_dir / ".best.pt.tmp")
            os.replace(out_dir / ".best.pt.tmp", out_dir / "best.pt")
    log(f"done: {epochs} epochs | final val top-1 {top1:.2f}% | best {best:.2f}% | output {out_dir}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def named_errors(loader, source):
    """Iterate `loader`; a DALI decoding failure becomes an error that names the bad files."""
    try:
        yield from loader
    except RuntimeError as exc:
        hint = decode_error_hint(exc, source)
        if hint is None:
            raise
        raise SystemExit(hint) from None


def describe(recipe) -> str:
    if recipe is None:
        return "none"
    parts = [f"{m}:{w:g}" for m, w in zip(recipe.candidates, recipe.weights)]
    return (f"{'RandomMix ' if len(parts) > 1 else ''}{', '.join(parts) or 'none'} per {recipe.mode}, "
            f"prob {recipe.prob:g}, smoothing {recipe.label_smoothing:g}, {recipe.target} targets")


def compute_loss(logits, rest, output_map, recipe, device):
    names = output_map[1:]
    if recipe is None:
        return nn.functional.cross_entropy(logits, rest[0].to(device))
    if recipe.target == "dense":
        return soft_target_cross_entropy(logits, rest[0].to(device))
    ya, yb, lam = (rest[names.index(k)].to(device) for k in ("labels_a", "labels_b", "lam"))
    return mixed_cross_entropy(logits, ya, yb, lam, smoothing=recipe.label_smoothing)


def target_checksum(rest) -> float:
    """A number that changes when any target or label of the batch changes (for --step-log)."""
    total = 0.0
    for t in rest:
        t = t.double().reshape(t.shape[0], -1)
        weights = torch.arange(1, t.numel() + 1, dtype=torch.float64).reshape(t.shape)
        total += float((t * weights).sum())
    return total


def reduce_mean(value: float, device, world_size: int) -> float:
    if world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size


def check_report(source):
    """`dali-mix check-data`'s report on a resolved Source (every file decoded once)."""
    from dali_mix.data.check import check_source

    spec = {"folder": source.root, "file_list": source.files[0]}.get(source.kind, list(source.files))
    return check_source(spec, progress=False)


def clean_source(source, out_dir: Path, rank: int, log):
    """Scan `source` with check-data and return a Source over its good files only (a DALI file
    list in the run directory, labels and class names unchanged)."""
    from dali_mix.data.check import write_clean_list
    from pipelines.sources import Source

    if source.kind == "webdataset":
        raise SystemExit("error: --check-data works on ImageFolder trees and file lists; for webdataset "
                         "shards run 'dali-mix check-data' and rewrite the shards without the bad samples")
    report = check_report(source)
    if not report.bad:
        return source
    for path, reason in report.bad:
        log(f"--check-data: leaving out {path}: {reason}")
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = out_dir / f"clean-list.rank{rank}.txt"
    n = write_clean_list(report, clean, absolute=True)
    return Source("file_list", "/", (str(clean),), (), source.classes, num_samples=n,
                  extra={"max_label": max(g.label for g in report.good)})


def decode_error_hint(exc: BaseException, source) -> str | None:
    """When DALI fails to decode, name the files at fault (DALI's own message does not)."""
    text = str(exc)
    if "decoders" not in text and "nvImageCodec" not in text and "decode" not in text.lower():
        return None
    bad = check_report(source).bad
    if not bad:
        return None
    listing = "\n".join(f"  {path}: {reason}" for path, reason in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return (f"error: the train data has {len(bad)} file(s) the decoder cannot read:\n{listing}{more}\n"
            "Remove or fix them, or rerun with --check-data to train on the readable files only.")


if __name__ == "__main__":
    sys.exit(main())
