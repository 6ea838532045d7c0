"""Pieces of the reference trainer (train.py) that are not about pixels: process environment,
model construction, learning-rate schedule, evaluation, RNG state."""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torchvision


@dataclass(frozen=True)
class DistributedEnv:
    """What torchrun sets: global rank, world size, local rank, processes on this node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1


def distributed_env(environ=None) -> DistributedEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE (all absent: one process)."""
    env = os.environ if environ is None else environ
    def get(name, default):
        raw = env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"error: environment variable {name}={raw!r} is not an integer") from None
    world = get("WORLD_SIZE", 1)
    rank = get("RANK", 0)
    local_rank = get("LOCAL_RANK", 0)
    local_world = get("LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world:
        raise SystemExit(f"error: RANK={rank} outside [0, WORLD_SIZE={world})")
    return DistributedEnv(rank, world, local_rank, local_world)


def build_model(name: str, num_classes: int, small_images: bool = False, in_channels: int = 3) -> nn.Module:
    """A torchvision classification model, or a CIFAR model of `dali_mix_tools.training.cifar_models`
    ("preact_resnet18", "wide_resnet28_10"), with `num_classes` outputs, randomly initialised.

    small_images (inputs <= 64 px, e.g. 28x28 Fashion-MNIST): a ResNet-family 7x7 stride-2 stem
    becomes a 3x3 stride-2 convolution (still followed by max-pooling: 28 -> 7 px), which keeps
    the 2-core CPU demo at about 800 images/s; a stride-1 stem would cost 3.5x more.
    in_channels: channels of the input (1 for log-mel spectrograms); other than 3 it needs a
    ResNet-family model (its stem `conv1` takes them), else ValueError naming the model.
    `name` may also be one of `dali_mix_tools.training.audio_models.AUDIO_MODELS` ("kws_cnn").
    """
    from dali_mix_tools.training.audio_models import AUDIO_MODELS
    from dali_mix_tools.training.cifar_models import CIFAR_MODELS

    if name in CIFAR_MODELS:  # already made for 32x32 images: no stem change
        return CIFAR_MODELS[name](num_classes)
    if name in AUDIO_MODELS:
        return AUDIO_MODELS[name](num_classes, in_channels=in_channels)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    stem = getattr(model, "conv1", None)
    if in_channels != 3 and not (isinstance(stem, nn.Conv2d) and hasattr(model, "maxpool")):
        raise ValueError(f"{in_channels}-channel inputs need a ResNet-family model (resnet*, wide_resnet*, "
                         f"resnext*), whose stem conv1 takes them; got {name!r}")
    if small_images and isinstance(stem, nn.Conv2d) and hasattr(model, "maxpool"):
        model.conv1 = nn.Conv2d(in_channels, stem.out_channels, kernel_size=3, stride=2, padding=1, bias=False)
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, stem.out_channels, kernel_size=stem.kernel_size, stride=stem.stride,
                                padding=stem.padding, bias=False)
    return model


def cosine_lr(step: int, total: int, base_lr: float, warmup_steps: int) -> float:
    """Linear warm-up from 0 to base_lr over `warmup_steps`, then cosine decay to 0 at `total`."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return float(base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def evaluate(model, loader, device, *, channels_last=False, amp_dtype=None, world_size=1, mixmo=False):
    """(top-1 %, top-5 %, samples, per-head top-1 dict) over the whole val set, summed across
    ranks (each val sample is read by exactly one rank, once).

    mixmo: `model` is a `MixMoNet`: the ensemble averages the two heads' logits (both encoders
    fed the same image, as `MixMoNet.forward(x)` does), and the dict holds "val_top1_head0" and
    "val_top1_head1"; otherwise the dict is empty.
    """
    model.eval()
    stats = torch.zeros(5, dtype=torch.float64, device=device)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            heads = model.forward_heads(images).float() if mixmo else None  # (N, 2, C)
            logits = heads.mean(dim=1) if mixmo else model(images).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        stats[0] += (top[:, 0] == labels).sum()
        stats[1] += (top == labels[:, None]).any(dim=1).sum()
        stats[2] += labels.numel()
        if mixmo:
            stats[3] += (heads[:, 0].argmax(1) == labels).sum()
            stats[4] += (heads[:, 1].argmax(1) == labels).sum()
    if world_size > 1:
        dist.all_reduce(stats)
    n = max(1.0, float(stats[2]))
    pct = [100.0 * float(v) / n for v in stats]
    heads_top1 = {"val_top1_head0": round(pct[3], 3), "val_top1_head1": round(pct[4], 3)} if mixmo else {}
    return pct[0], pct[1], int(stats[2]), heads_top1


def rng_state() -> dict:
    """torch / numpy / python RNG states as tensors and plain data (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [str(np_state[0]), torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                       int(np_state[3]), float(np_state[4])],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
