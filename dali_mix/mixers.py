"""One function per mixing method, each a piece of DALI graph over DataNodes.

Common contract:
    images, other: batches of the same shape, layout ("CHW" or "HWC") and device (CPU or GPU);
        `other` is the partner batch, usually `dali_mix.pair(...)`'s output (other[i] = images[perm[i]]).
    Returns (mixed, lam): `mixed` has the layout and device of `images`; `lam` is a float32 CPU
        scalar per sample, the exact weight of sample i's own label (the true fraction of its
        pixels for box and mask methods, the true interpolation weight for Mixup).
    Random parameters come from `fn.random.*` on the CPU, so the graph is the same on both
    devices and the pipeline's seed makes it deterministic.

Paste-type methods (CutMix, ResizeMix, random-fill erasing) are copies (`fn.multi_paste`) and keep
the dtype. FMix blends with a {0, 1} uint8 mask and keeps the dtype too (exact, also in uint8).
Mixup returns float32 (uint8 inputs are promoted, never truncated), or, with `uint8=True`, the
blend rounded to the nearest uint8. On the CPU, copies cost little and DALI arithmetic a lot
(see benchmarks/RESULTS.md): the built-in pipelines therefore mix uint8 HWC images before
normalisation.
"""
from __future__ import annotations

import math

import numpy as np

from nvidia.dali import fn, types
import nvidia.dali.math as dmath

from dali_mix._graph import (beta, check_layout, clamp, floor_int, image_hw, randint_below, to_float,
                             to_int, uniform)
from dali_mix.paste import paste

_BOX_NOTE = "box clipped at the image borders; lam recomputed from the clipped area"


def mixup(images, other, *, alpha: float = 1.0, lam=None, uint8: bool = False):
    """Mixup: x = lam * x_i + (1 - lam) * x_j with lam ~ Beta(alpha, alpha) per sample.

    Layout-free (element-wise). `lam` may be given (a float32 CPU scalar per sample) instead of
    drawn. Output float32; with `uint8=True` (uint8 images mixed before normalisation) the blend
    is rounded to the nearest uint8 (never truncated), lam stays the exact float32 weight.
    """
    if lam is None:
        _check_positive("mixup_alpha", alpha)
        lam = beta(alpha)
    mixed = images * lam + other * (1.0 - lam)
    if uint8:
        mixed = fn.cast(mixed, dtype=types.UINT8)  # DALI rounds to nearest and saturates
    return mixed, lam


def mixup_normalized(images, other, *, mean, std, mirror=0, dtype=types.FLOAT, alpha: float = 1.0,
                     lam=None):
    """Mixup fused with normalisation, for uint8 HWC images not yet normalised:
    (lam x_i + (1 - lam) x_j - mean) / std = CMN(x_i; mean, std / lam) + CMN(x_j; mean, std / (1 - lam)),
    two `fn.crop_mirror_normalize` calls (fast, vectorised) and one add, instead of a blend in
    DALI arithmetic on the uint8 pixels (several slow passes). Returns CHW (float32 or `dtype`)
    images, flipped where `mirror` is 1, and the exact float32 lam."""
    if lam is None:
        _check_positive("mixup_alpha", alpha)
        lam = beta(alpha)
    common = dict(mean=[float(m) for m in mean], mirror=mirror, dtype=dtype, output_layout="CHW")
    # a weight of exactly 0 would give std = inf (and NaN in the normalisation): 1e-20 makes that
    # image's share vanish (< 1e-17) instead
    w_a, w_b = dmath.max(lam, 1e-20), dmath.max(1.0 - lam, 1e-20)
    a = fn.crop_mirror_normalize(images, std=fn.stack(*[float(s) / w_a for s in std]), **common)
    b = fn.crop_mirror_normalize(other, std=fn.stack(*[float(s) / w_b for s in std]), **common)
    return a + b, lam


def cutmix_box(images, *, alpha: float = 1.0, minmax=None, layout: str = "CHW"):
    """Sample CutMix boxes as the official code (clovaai `rand_bbox`) and timm do.

    Without `minmax`: lam0 ~ Beta(alpha, alpha), cut side = int(sqrt(1 - lam0) * side), centre
    uniform over the image, box [c - cut//2, c + cut//2) clipped at the borders. With
    `minmax=(lo, hi)` (timm's `cutmix_minmax`, `rand_bbox_minmax`): height and width are uniform
    integers in [int(lo*H), int(hi*H)) and [int(lo*W), int(hi*W)), and the box is placed fully
    inside the image (no clipping).

    Returns (y, x, h, w, lam): int32 CPU scalars (pixels) and the float32 lam = 1 - h*w/(H*W).
    """
    check_layout(layout)
    H, W = image_hw(images, layout)
    if minmax is None:
        _check_positive("cutmix_alpha", alpha)
        cut = dmath.sqrt(1.0 - beta(alpha))
        cut_h = floor_int(to_float(H) * cut)
        cut_w = floor_int(to_float(W) * cut)
        cy, cx = randint_below(H), randint_below(W)
        y1 = clamp(cy - cut_h // 2, 0, H)
        y2 = clamp(cy + cut_h // 2, 0, H)
        x1 = clamp(cx - cut_w // 2, 0, W)
        x2 = clamp(cx + cut_w // 2, 0, W)
        h, w = y2 - y1, x2 - x1
    else:
        lo, hi = _check_minmax(minmax)
        h_lo, h_hi = floor_int(to_float(H) * lo), floor_int(to_float(H) * hi)
        w_lo, w_hi = floor_int(to_float(W) * lo), floor_int(to_float(W) * hi)
        h = h_lo + randint_below(dmath.max(h_hi - h_lo, 1))
        w = w_lo + randint_below(dmath.max(w_hi - w_lo, 1))
        y1 = randint_below(H - h + 1)
        x1 = randint_below(W - w + 1)
    lam = 1.0 - to_float(h * w) / to_float(H * W)
    return y1, x1, h, w, lam


def cutmix(images, other, *, alpha: float = 1.0, minmax=None, layout: str = "CHW",
           channels: int = 3):
    """CutMix: a box of x_j pasted into x_i at the same place (a copy, dtype kept).

    See `cutmix_box` for the box; lam = 1 - clipped box area / image area, exact.
    """
    y, x, h, w, lam = cutmix_box(images, alpha=alpha, minmax=minmax, layout=layout)
    mixed = paste(images, other, src_y=y, src_x=x, dst_y=y, dst_x=x, h=h, w=w,
                  layout=layout, channels=channels)
    return mixed, lam


def resizemix(images, other, *, scale=(0.1, 0.8), layout: str = "CHW", channels: int = 3):
    """ResizeMix: x_j shrunk by tau ~ U(scale) (nearest, as the official code) and pasted whole,
    fully inside x_i at a uniform random position.

    Patch size h = max(1, floor(tau*H)), w = max(1, floor(tau*W)); lam = 1 - h*w/(H*W), exact.
    """
    check_layout(layout)
    lo, hi = _check_scale("resizemix_scale", scale)
    H, W = image_hw(images, layout)
    tau = uniform(lo, hi)
    h = dmath.max(floor_int(to_float(H) * tau), 1)
    w = dmath.max(floor_int(to_float(W) * tau), 1)
    small = fn.resize(other, size=fn.stack(to_float(h), to_float(w)),
                      interp_type=types.INTERP_NN, antialias=False)
    y = randint_below(H - h + 1)
    x = randint_below(W - w + 1)
    zero = h * 0
    mixed = paste(images, small, src_y=zero, src_x=zero, dst_y=y, dst_x=x, h=h, w=w,
                  layout=layout, channels=channels)
    lam = 1.0 - to_float(h * w) / to_float(H * W)
    return mixed, lam


def fmix(images, other, ranks, *, alpha: float = 1.0, layout: str = "CHW", resize: bool = True):
    """FMix: keep x_i where a binary low-frequency mask is 1, x_j elsewhere.

    Args:
        ranks: per sample a (Hm, Wm, 1) uint16/int32 image of pixel ranks of a low-frequency
            Fourier image (0 = brightest), from `dali_mix.masks.FMixMaskBank` through
            `dali_mix.masks.fmix_ranks`. Resized (nearest) to the image size when they differ.
        alpha: lam ~ Beta(alpha, alpha).
        resize: False when the bank is known to have the images' size (saves a resize).

    The mask keeps the top k = floor(lam0*N + u) pixels of the bank mask (N pixels; u ~ U(0, 1):
    the official code's random ceil/floor), so its mean is within one pixel of lam0 when the bank
    has the image size (and within the resize error otherwise); the lam returned is the true
    mean of the mask applied. The blend x_j + (x_i - x_j) * mask with a uint8 {0, 1} mask is
    exact in every dtype (uint8 images stay uint8: the wrap-around of the difference cancels).
    """
    check_layout(layout)
    _check_positive("fmix_alpha", alpha)
    H, W = image_hw(images, layout)
    bank_shape = ranks.shape(dtype=types.INT32, device="cpu")
    n = bank_shape[0] * bank_shape[1]  # ranks run over the bank mask's pixels
    lam0 = beta(alpha)
    k = clamp(floor_int(lam0 * to_float(n) + uniform()), 0, n)
    if resize:  # nearest resize does not take int32: float32 holds ranks exactly up to 2^24
        ranks = fn.resize(fn.cast(ranks, dtype=types.FLOAT), size=fn.stack(to_float(H), to_float(W)),
                          interp_type=types.INTERP_NN, antialias=False)
    mask = fn.cast(ranks < k, dtype=types.UINT8)  # (H, W, 1) of 0 / 1
    lam = fn.reductions.mean(mask, dtype=types.FLOAT)
    if layout == "CHW":
        mask = fn.reshape(mask, shape=fn.stack(k * 0 + 1, H, W), layout="CHW")
    if images.device == "gpu":
        mask = mask.gpu()
    mixed = other + (images - other) * mask
    return mixed, lam


def cutout(images, *, n_holes: int = 1, length: int = 16, layout: str = "CHW", fill=0.0):
    """Cutout (DeVries & Taylor): n square holes of side `length` pixels, centre uniform, clipped
    at the borders, filled with `fill` (0 after normalisation; a per-channel list such as the
    normalisation mean for images mixed before normalisation). Label unchanged.

    Returns (images, lam) with lam = 1.0 (float32) so it can stand among mixing candidates.
    """
    check_layout(layout)
    if int(n_holes) < 1:
        raise ValueError(f"cutout_holes must be >= 1, got {n_holes}")
    if int(length) < 1:
        raise ValueError(f"cutout_length must be >= 1, got {length}")
    H, W = image_hw(images, layout)
    anchors, shapes = [], []
    for i in range(int(n_holes)):
        cy, cx = randint_below(H), randint_below(W)
        y1, y2 = clamp(cy - length // 2, 0, H), clamp(cy + length // 2, 0, H)
        x1, x2 = clamp(cx - length // 2, 0, W), clamp(cx + length // 2, 0, W)
        anchors += [y1, x1]
        shapes += [y2 - y1, x2 - x1]
    erased = fn.erase(images, anchor=to_float(fn.stack(*anchors)), shape=to_float(fn.stack(*shapes)),
                      axis_names="HW", fill_value=_fill_values(fill))
    return erased, _ones_like(H)


def random_erasing(images, *, p: float = 0.5, area=(0.02, 0.4), aspect=(0.3, 1 / 0.3),
                   fill="random", layout: str = "CHW", channels: int = 3, noise_mean=0.0,
                   noise_std=1.0, uint8: bool = False):
    """Random Erasing (Zhong et al.): with probability p, a rectangle of area U(area) * H*W and
    aspect ratio h/w log-uniform in `aspect`, at a uniform position, filled with N(0, 1) noise
    (`fill="random"`, the paper's best; suits normalised images) or a constant `fill` (a number
    or a per-channel list). For images mixed before normalisation, pass the normalisation's
    per-channel `noise_mean` and `noise_std` and `uint8=True`: the noise is then
    mean + std * N(0, 1) rounded to uint8, which normalises to N(0, 1) (clipped to the pixel range).

    Deviation from the official 100-tries loop: a box that does not fit is clamped to the image
    side instead of being redrawn. Label unchanged; returns (images, lam=1.0).
    """
    check_layout(layout)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"erasing_prob must be in [0, 1], got {p}")
    a_lo, a_hi = _check_scale("erasing_area", area)
    r_lo, r_hi = float(aspect[0]), float(aspect[1])
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"erasing_aspect must satisfy 0 < lo <= hi, got {aspect}")
    H, W = image_hw(images, layout)
    target = uniform(a_lo, a_hi) * to_float(H * W)
    ratio = dmath.exp(uniform(math.log(r_lo), math.log(r_hi)))
    applied = to_int(fn.random.coin_flip(probability=float(p)))
    h = clamp(floor_int(dmath.sqrt(target * ratio) + 0.5), 1, H) * applied
    w = clamp(floor_int(dmath.sqrt(target / ratio) + 0.5), 1, W) * applied
    y = randint_below(H - h + 1)
    x = randint_below(W - w + 1)
    if fill == "random":
        if layout == "CHW":
            noise_shape = fn.stack(h * 0 + channels, h, w)
        else:
            noise_shape = fn.stack(h, w, h * 0 + channels)
        noise = fn.random.normal(shape=noise_shape)
        if noise_mean != 0.0 or noise_std != 1.0:
            noise = noise * _channel_constant(noise_std, layout) + _channel_constant(noise_mean, layout)
        if uint8:
            noise = fn.cast(noise, dtype=types.UINT8)
        if images.device == "gpu":
            noise = noise.gpu()
        zero = h * 0
        erased = paste(images, noise, src_y=zero, src_x=zero, dst_y=y, dst_x=x, h=h, w=w,
                       layout=layout, channels=channels)
    else:
        erased = fn.erase(images, anchor=to_float(fn.stack(y, x)), shape=to_float(fn.stack(h, w)),
                          axis_names="HW", fill_value=_fill_values(fill))
    return erased, _ones_like(H)


def _fill_values(fill):
    """fn.erase fill_value: a float or a per-channel list of floats."""
    if isinstance(fill, (list, tuple)):
        return [float(v) for v in fill]
    return float(fill)


def _channel_constant(value, layout: str):
    """A per-channel constant broadcastable against (C, h, w) / (h, w, C) patches."""
    if not isinstance(value, (list, tuple)):
        return float(value)
    arr = np.asarray(value, dtype=np.float32)
    arr = arr.reshape(-1, 1, 1) if layout == "CHW" else arr.reshape(1, 1, -1)
    return types.Constant(arr, device="cpu")


def _ones_like(scalar):
    return to_float(scalar * 0 + 1)


def _check_positive(field: str, value: float) -> None:
    if not float(value) > 0:
        raise ValueError(f"{field} must be > 0, got {value}")


def _check_scale(field: str, rng) -> tuple[float, float]:
    try:
        lo, hi = float(rng[0]), float(rng[1])
    except (TypeError, IndexError, ValueError):
        raise ValueError(f"{field} must be a pair (lo, hi), got {rng!r}") from None
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"{field} must satisfy 0 < lo <= hi <= 1, got {rng!r}")
    return lo, hi


def _check_minmax(minmax) -> tuple[float, float]:
    return _check_scale("cutmix_minmax", minmax)
