"""Small DALI graph helpers shared by the mixers: image geometry and per-sample random integers.

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


def to_int(x):
    """Cast an integer (or bool) scalar DataNode to int32. For floats use `floor_int`:
    DALI's float -> int cast rounds to the nearest integer."""
    return fn.cast(x, dtype=types.INT32)


def floor_int(x):
    """floor(x) of a float scalar DataNode, as int32 (Python's int() for x >= 0)."""
    return fn.cast(dmath.floor(x), dtype=types.INT32)


def to_float(x):
    """Cast a scalar DataNode to float32."""
    return fn.cast(x, dtype=types.FLOAT)


def uniform(lo: float = 0.0, hi: float = 1.0):
    """One float32 per sample, uniform in [lo, hi)."""
    return fn.random.uniform(range=[float(lo), float(hi)])


def randint_below(n):
    """One int32 per sample, uniform in [0, n) where `n` (>= 1) is an int32 DataNode."""
    u = uniform()
    return dmath.min(floor_int(u * to_float(n)), n - 1)


def beta(alpha: float):
    """One float32 per sample drawn from Beta(alpha, alpha)."""
    return fn.random.beta(alpha=float(alpha), beta=float(alpha))


def clamp(x, lo, hi):
    """Element-wise min(max(x, lo), hi) for DataNodes or constants."""
    return dmath.min(dmath.max(x, lo), hi)
