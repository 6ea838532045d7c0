"""What the porting examples share: a tiny generated JPEG ImageFolder, a tiny CNN, a few SGD steps.

Not part of what you port: these stand in for your data set, your model and your optimiser so
that each example trains for real in seconds on a CPU (and the test suite runs them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch import nn

MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
PALETTE = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40)]


def write_jpeg_tree(root: str | Path, classes: int = 4, per_class: int = 24, size: int = 40,
                    seed: int = 0) -> Path:
    """ROOT/class_k/img_i.jpg: RGB baseline JPEGs of size x size, class k a noisy colour of
    `PALETTE` (easy to learn: the loss falls within a few steps). Returns ROOT."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 30, (size, size, 3))
            pixels = np.clip(np.asarray(PALETTE[k % len(PALETTE)]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i:03d}.jpg", quality=90)
    return root


def tiny_model(num_classes: int, seed: int = 0) -> nn.Module:
    """A 2-conv CNN for (N, 3, H, W) float32 images: logits (N, num_classes); seeded weights."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


def train_steps(model: nn.Module, batches: Iterable, loss_fn: Callable, steps: int,
                device: torch.device | str = "cpu") -> list[float]:
    """`steps` SGD steps over `batches` (an iterable re-entered each epoch, e.g. a Loader) of
    (images (N, 3, H, W) float32, targets (N, C) float32); returns the loss of each step."""
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses: list[float] = []
    while len(losses) < steps:
        for images, targets in batches:
            loss = loss_fn(model(images.to(device)), targets.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return losses
