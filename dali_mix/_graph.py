"""Small DALI graph helpers (image geometry, casts) for the MixMo mask graph.

Everything here returns CPU DataNodes holding one scalar per sample (or small per-sample vectors),
so the same code serves images on the CPU and on the GPU: DALI moves CPU scalars to the GPU when
they meet GPU tensors in arithmetic, and argument inputs are CPU by definition.
"""
from __future__ import annotations

from nvidia.dali import fn, types
import nvidia.dali.math as dmath

LAYOUTS = ("CHW", "HWC")


def check_layout(layout: str) -> str:
    """Return `layout` if supported ("CHW" or "HWC"), else raise ValueError naming it."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def image_hw(images, layout: str):
    """(H, W) of every sample as int32 CPU scalars, read from the runtime shape of `images`."""
    shape = images.shape(dtype=types.INT32, device="cpu")
    if layout == "CHW":
        return shape[1], shape[2]
    return shape[0], shape[1]


def floor_int(x):
    """floor(x) of a float scalar DataNode, as int32 (Python's int() for x >= 0)."""
    return fn.cast(dmath.floor(x), dtype=types.INT32)


def to_float(x):
    """Cast a scalar DataNode to float32."""
    return fn.cast(x, dtype=types.FLOAT)


def clamp(x, lo, hi):
    """Element-wise min(max(x, lo), hi) for DataNodes or constants."""
    return dmath.min(dmath.max(x, lo), hi)
