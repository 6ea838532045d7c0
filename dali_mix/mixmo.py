"""MixMo inputs, the DALI side: two independent inputs, kappa, a Cut-MixMo mask and the cut flag.

MixMo (Ramé, Sun, Cord, ICCV 2021) mixes *features* inside the network (see
`dali_mix.torch.mixmo.MixMoNet`), so the pipeline does not mix pixels. It emits, per sample i:

    images0 = x_i, labels0 = y_i                       the sample itself
    images1 = x_j, labels1 = y_j, j = perm[i]          its partner in the same batch (j != i)
    kappa   ~ Beta(alpha, alpha)                       (= Dirichlet(2, 2) for M = 2), float32
    use_cut ~ Bernoulli(p_cut)                         Cut-MixMo (True) or Linear-MixMo (False)
    mask                                               uint8 {0, 1}, (1, H, W) for CHW / (H, W, 1)
                                                       for HWC: 1 where input 0 is kept

Inside your own `@pipeline_def`::

    from dali_mix.mixmo import mixmo_inputs, output_names
    mm = mixmo_inputs(images, labels, num_classes=100)
    return mm.outputs()      # names: output_names(num_classes=100) == mm.output_names()

and on the torch side::

    x0, x1, t0, t1, kappa, mask, use_cut = batch
    logits, k_used = net(x0, x1, kappa=kappa, mask=mask, use_cut=use_cut, return_kappa=True)
    loss = mixmo_loss(logits, t0, t1, k_used)

Cut-MixMo mask (as `dali_mix.torch.mixmo.cut_mixmo_mask(clip=False)`): a rectangle of height
``bh = round(sqrt(k) * H)`` and width ``bw = round(k * H * W / bh)`` (clamped to the image) at a
uniform position *fully inside* the image is set to 1, the rest 0; with probability 1/2 the roles
of the two inputs are swapped (``mask -> 1 - mask``). For samples with ``use_cut`` the output
``kappa`` is the exact mask mean (float32, correctly rounded ratio of integer pixel counts); for
linear samples it is the drawn kappa. The mask is made for every sample (the model ignores it
where ``use_cut`` is False). It is built with copies only (`fn.full` + two `fn.erase` over a
single-channel uint8 image), no arithmetic over pixels, no per-sample Python. Give the model the
kappa it reports (`return_kappa=True`): at feature resolution the mask mean moves by up to one
ring of feature cells (`dali_mix.torch.mixmo.resize_mask`).

`p_cut` (probability of Cut-MixMo) is a float, a DataNode (float32 CPU scalar per sample, a
probability; 0/1 flags work too), or a callable for
``fn.external_source(batch=True, batch_info=True)`` returning a (batch_size,) array of per-sample
probabilities (bool / 0-1 flags are probabilities 0 and 1). `CutProbSchedule` is such a callable:
MixMo's schedule, p constant then a linear decay to 0 over the last 1/12 of training, exact per
batch (it reads the epoch DALI passes in) without rebuilding the pipeline.

Batch repetition (``batch_repetition = b >= 2``, the official code's batch repetition sampler,
paper b = 4): the batch of N = m * b samples is made of m = N / b distinct samples, each present
b times, in b blocks: position ``p = r * m + i`` (block r = 0..b-1) holds distinct sample i.
The m distinct samples are a uniformly random subset of the input batch in random order
(`fn.batch_permutation`), so **(b - 1) / b of the reader's samples are dropped in every batch**:
an epoch of the reader shows each image about once in total (b copies of N / b of them per
batch), i.e. b times fewer distinct images per step. Scale the batch size (N = b * the distinct
batch you want) and/or the number of epochs accordingly. Copy r of sample i is paired with copy r
of sample ``(i + r + 1) mod m``: the b copies of an image get b different partners, none of them
a copy of itself, and `images1` is again made of b copies of each distinct image (a bijection).
Needs ``m >= b + 1`` and N divisible by b; the batch size must be fixed (DALI readers always
produce full batches). Done inside `mixmo_inputs` (``repeat=True``) the copies are pixel-identical
(same crop and flip); to give every copy its own augmentation, repeat the *encoded* batch before
decoding with `repeat_batch` (as `pipelines.mixmo.mixmo_train_pipeline` does) and call
`mixmo_inputs(..., batch_repetition=b, repeat=False)`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode
from nvidia.dali.pipeline import Pipeline
import nvidia.dali.math as dmath

from dali_mix._graph import beta, check_layout, clamp, image_hw, randint_below, to_float
from dali_mix.labels import check_smoothing, dense_targets, scalar_labels
from dali_mix.pairing import pair

__all__ = [
    "CutProbSchedule", "MixMoBatch", "check_mixmo_args", "cut_mixmo_mask", "mixmo_inputs", "output_names",
    "repeat_batch", "repetition_indices", "repetition_pairing",
]


class MixMoBatch(NamedTuple):
    """DataNodes of a MixMo batch (see the module docstring).

    images0, images1: the two inputs (layout, dtype and device of the input images).
    labels0, labels1: int64 CPU scalars.
    targets0, targets1: (num_classes,) float32 (smoothed) one-hot rows, or the int64 labels
        when `num_classes` is None.
    kappa: float32 CPU scalar, proportion of input 0: the exact mask mean where `use_cut`,
        else the drawn kappa.
    mask: uint8 {0, 1}, (1, H, W) (CHW) or (H, W, 1) (HWC), on the images' device.
    use_cut: bool CPU scalar, Cut-MixMo (True) or Linear-MixMo (False).
    kappa_drawn: float32 CPU scalar ~ Beta(alpha, alpha) (before the mask; for inspection).
    swapped: bool CPU scalar, True where the mask roles were swapped (box of zeros in ones).
    num_classes: int or None (decides `outputs()` / `output_names()`).
    """

    images0: object
    images1: object
    labels0: object
    labels1: object
    targets0: object
    targets1: object
    kappa: object
    mask: object
    use_cut: object
    kappa_drawn: object
    swapped: object
    num_classes: object = None

    def outputs(self) -> tuple:
        """(images0, images1, targets0, targets1, kappa, mask, use_cut); see `output_names`."""
        return (self.images0, self.images1, self.targets0, self.targets1, self.kappa, self.mask,
                self.use_cut)

    def output_names(self) -> list[str]:
        """Names of `outputs()`, for a DALI iterator's `output_map`."""
        return output_names(self.num_classes)


def output_names(num_classes: int | None = None) -> list[str]:
    """Names of `MixMoBatch.outputs()`: targets are "targets0"/"targets1" (dense float32 rows)
    when `num_classes` is given, else "labels0"/"labels1" (int64)."""
    t = ["targets0", "targets1"] if num_classes is not None else ["labels0", "labels1"]
    return ["images0", "images1", *t, "kappa", "mask", "use_cut"]


def mixmo_inputs(images, labels, *, p_cut=0.5, alpha: float = 2.0, batch_repetition: int = 1,
                 layout: str = "CHW", num_classes: int | None = None, smoothing: float = 0.0,
                 repeat: bool = True, no_self_pairs: bool = True) -> MixMoBatch:
    """MixMo inputs for a batch: partners, kappa, Cut-MixMo mask and flag (module docstring).

    Args:
        images: batch of images, `layout`, any dtype, CPU or GPU, all of one size per sample
            (the mask follows each sample's size).
        labels: int labels per sample (CPU), shape () or (1,).
        p_cut: probability of Cut-MixMo per sample: float in [0, 1], a DataNode (float32 CPU
            scalar per sample), or a callable for `fn.external_source(batch=True,
            batch_info=True)` returning (batch_size,) probabilities (e.g. `CutProbSchedule`).
        alpha: kappa ~ Beta(alpha, alpha) (MixMo: Dirichlet(2, 2), alpha = 2).
        batch_repetition: b >= 1; see the module docstring (drops (b-1)/b of the input batch).
        layout: "CHW" or "HWC".
        num_classes: if given, targets are dense (num_classes,) float32 rows with `smoothing`
            (`dali_mix.dense_targets` with lam = 1); else the int64 labels.
        smoothing: label smoothing eps in [0, 1) (target = (1-eps) * onehot + eps / C).
        repeat: with b >= 2, True repeats the batch here (pixel-identical copies); False means
            the batch is already laid out by `repeat_batch(..., batch_repetition=b)`.
        no_self_pairs: with b = 1, forbid perm[i] == i (default, as MixMo pairs two different
            samples). With b >= 2 self-pairs are always excluded.

    Returns: a MixMoBatch.
    Raises: ValueError naming the argument, when the graph is built.
    """
    check_layout(layout)
    check_mixmo_args(p_cut=p_cut, alpha=alpha, batch_repetition=batch_repetition,
                     smoothing=smoothing, num_classes=num_classes)
    b = int(batch_repetition)
    p = _cut_probability(p_cut)

    labels = scalar_labels(labels)
    if b == 1:
        pairs = pair(images, labels, no_self_pairs=no_self_pairs)
        images0, labels0, images1, labels1 = images, labels, pairs.images_b, pairs.labels_b
    else:
        n = _batch_size("batch_repetition")
        if repeat:
            images, labels = repeat_batch(images, labels, batch_repetition=b)
        partner = repetition_pairing(n, b)
        images0, labels0 = images, labels
        images1 = fn.permute_batch(images, indices=partner)
        labels1 = fn.permute_batch(labels, indices=partner)

    kappa_drawn = beta(alpha)
    use_cut = fn.random.coin_flip(probability=p, dtype=types.BOOL)
    mask, kappa_cut, swapped = cut_mixmo_mask(images0, kappa_drawn, layout=layout)
    cut = to_float(use_cut)
    kappa = kappa_cut * cut + kappa_drawn * (1.0 - cut)  # exact: one term is x*1, the other 0

    if num_classes is not None:
        targets0 = dense_targets(labels0, labels0, 1.0, num_classes, smoothing)
        targets1 = dense_targets(labels1, labels1, 1.0, num_classes, smoothing)
    else:
        targets0, targets1 = labels0, labels1
    return MixMoBatch(images0, images1, labels0, labels1, targets0, targets1, kappa, mask,
                      use_cut, kappa_drawn, swapped, num_classes)


def check_mixmo_args(*, p_cut=0.5, alpha: float = 2.0, batch_repetition: int = 1,
                     smoothing: float = 0.0, num_classes: int | None = None,
                     batch_size: int | None = None) -> None:
    """Validate `mixmo_inputs` arguments (and, with `batch_size`, the batch repetition layout)
    before a pipeline is built: ValueError naming the argument."""
    _check_alpha(alpha)
    check_smoothing(smoothing)
    b = _check_repetition(batch_repetition)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ValueError(f"num_classes must be an integer >= 1 or None, got {num_classes!r}")
    if not (isinstance(p_cut, DataNode) or callable(p_cut)):
        _cut_probability(p_cut)
    if batch_size is not None and b > 1:
        _check_layout_size(int(batch_size), b)


def cut_mixmo_mask(images, kappa, *, layout: str = "CHW", swap: bool = True):
    """Cut-MixMo masks at the resolution of `images` (module docstring; as the torch reference
    `dali_mix.torch.mixmo.cut_mixmo_mask(clip=False)`).

    Args:
        images: the batch whose spatial size the masks take (only its shape is read).
        kappa: float32 CPU scalar per sample in [0, 1], the target proportion of ones.
        layout: layout of `images`; the mask is (1, H, W) for "CHW", (H, W, 1) for "HWC".
        swap: exchange the roles with probability 1/2 (mask -> 1 - mask).

    Returns: (mask uint8 on the images' device, kappa_true float32 CPU scalar = exact mask mean,
        swapped bool CPU scalar).
    """
    check_layout(layout)
    H, W = image_hw(images, layout)
    Hf, Wf = to_float(H), to_float(W)
    bh = clamp(_round(Hf * dmath.sqrt(kappa)), 0, H)
    has_h = dmath.min(bh, 1)  # 0 where bh == 0
    bw = clamp(_round(kappa * Hf * Wf / to_float(dmath.max(bh, 1))), 0, W) * has_h
    y = randint_below(H - bh + 1)
    x = randint_below(W - bw + 1)
    if swap:
        swapped = fn.random.coin_flip(probability=0.5, dtype=types.BOOL)
    else:
        swapped = fn.cast(H * 0, dtype=types.BOOL)
    s = fn.cast(swapped, dtype=types.INT32)
    one = H * 0 + 1
    # canvas of `swapped` (0 or 1), then the box: filled with 1 (not swapped) or 0 (swapped);
    # `fn.erase` takes a constant fill, so each sample erases a box of zero height in one of them
    canvas = fn.full(fn.cast(swapped, dtype=types.UINT8), shape=fn.stack(H, W, one), layout="HWC")
    anchor = to_float(fn.stack(y, x))
    mask = fn.erase(canvas, anchor=anchor, shape=to_float(fn.stack(bh * (1 - s), bw)),
                    axis_names="HW", fill_value=1)
    mask = fn.erase(mask, anchor=anchor, shape=to_float(fn.stack(bh * s, bw)),
                    axis_names="HW", fill_value=0)
    if layout == "CHW":
        mask = fn.reshape(mask, shape=fn.stack(one, H, W), layout="CHW")
    if images.device == "gpu":
        mask = mask.gpu()
    area = bh * bw
    ones = area + s * (H * W - 2 * area)  # box area, or the rest of the image when swapped
    kappa_true = to_float(ones) / to_float(H * W)
    return mask, kappa_true, swapped


def repetition_indices(batch_size: int, batch_repetition: int):
    """Source indices of `repeat_batch`: int32 CPU scalar per sample, ``P[p mod m]`` with P a
    random permutation of the batch (`fn.batch_permutation`) and m = batch_size / b."""
    n, b = int(batch_size), _check_repetition(batch_repetition)
    _check_layout_size(n, b)
    m = n // b
    P = fn.batch_permutation()
    return fn.permute_batch(P, indices=[p % m for p in range(n)])


def repeat_batch(*nodes, batch_repetition: int, indices=None):
    """Repeat m = N / b random distinct samples of a batch b times: position ``r * m + i`` holds
    distinct sample i (a random subset of the batch in random order, the same for every node).

    Use on the encoded images and labels before decoding so every copy gets its own random
    augmentation, then `mixmo_inputs(..., batch_repetition=b, repeat=False)`. Drops (b-1)/b of
    the batch (module docstring). Returns the repeated nodes (a tuple, even for one node).
    """
    b = _check_repetition(batch_repetition)
    if b == 1:
        return tuple(nodes)
    if indices is None:
        indices = repetition_indices(_batch_size("batch_repetition"), b)
    return tuple(fn.permute_batch(node, indices=indices) for node in nodes)


def repetition_pairing(batch_size: int, batch_repetition: int) -> list[int]:
    """Partner positions for a batch laid out by `repeat_batch`: copy r of distinct sample i
    (position r*m + i) is paired with copy r of sample (i + r + 1) mod m. A constant list: the
    randomness of the pairs comes from the random subset/order of `repeat_batch`."""
    n, b = int(batch_size), _check_repetition(batch_repetition)
    _check_layout_size(n, b)
    m = n // b
    return [r * m + (i + r + 1) % m for r in range(b) for i in range(m)]


class CutProbSchedule:
    """Per-batch Cut-MixMo probability for ``mixmo_inputs(p_cut=...)``: a callable for
    `fn.external_source(batch=True, batch_info=True)` returning (batch_size,) float32.

    p while the training progress is below 11/12, then a linear decay to 0 at the end
    (`dali_mix.torch.mixmo.mixmo_p_schedule`). Progress for 0-based epoch e (from `clock`, which
    maps DALI's run counter to (epoch, step)): ``e + 1`` (the official code: per epoch,
    1-based, so the last epoch has p = 0), or with ``per_step`` ``e + step / runs_per_epoch``.

    Args:
        batch_size: samples per batch.
        total_epochs: epochs of the whole run.
        p: probability before the decay (paper 0.5).
        clock: a `dali_mix.schedule.BatchClock` (its `runs_per_epoch` set from the Loader).
        per_step: decay per step instead of per epoch.
    """

    def __init__(self, batch_size: int, total_epochs: int, p: float = 0.5, clock=None,
                 per_step: bool = False):
        from dali_mix.schedule import BatchClock
        from dali_mix.torch.mixmo import mixmo_p_schedule  # validates, single source of truth

        self._schedule = mixmo_p_schedule
        mixmo_p_schedule(0, total_epochs, p)  # raises ValueError on bad arguments
        self.batch_size = int(batch_size)
        self.total_epochs = int(total_epochs)
        self.p = float(p)
        self.clock = clock if clock is not None else BatchClock()
        self.per_step = bool(per_step)

    def probability(self, epoch: int, step: int = 0) -> float:
        if self.per_step and self.clock.runs_per_epoch:
            progress = epoch + step / self.clock.runs_per_epoch
        else:
            progress = epoch + 1
        return self._schedule(progress, self.total_epochs, self.p)

    def __call__(self, batch_info):
        epoch, step = self.clock.epoch_step(batch_info)
        return np.full(self.batch_size, self.probability(epoch, step), dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _round(x):
    """Round half up to int32 (DALI's float->int cast rounds to nearest; be explicit)."""
    return fn.cast(dmath.floor(x + 0.5), dtype=types.INT32)


def _check_alpha(alpha) -> None:
    try:
        ok = float(alpha) > 0 and math.isfinite(float(alpha))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"mixmo_alpha must be a finite number > 0, got {alpha!r}")


def _check_repetition(b) -> int:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise ValueError(f"batch_repetition must be an integer >= 1, got {b!r}")
    return int(b)


def _check_layout_size(n: int, b: int) -> None:
    if n % b != 0:
        raise ValueError(f"batch_repetition={b} must divide the batch size {n}")
    if n // b < b + 1:
        raise ValueError(f"batch_repetition={b} needs batch_size >= b * (b + 1) = {b * (b + 1)} "
                         f"(b different partners per image), got batch_size {n}")


def _batch_size(field: str) -> int:
    pipe = Pipeline.current()
    if pipe is None:
        raise ValueError(f"{field} > 1 must be used inside a pipeline definition (needs the batch size)")
    return int(pipe.max_batch_size)


def _cut_probability(p_cut):
    """p_cut as a coin_flip `probability` argument: float, or float32 CPU DataNode."""
    if isinstance(p_cut, DataNode):
        return fn.cast(p_cut, dtype=types.FLOAT)
    if callable(p_cut):
        flags = fn.external_source(source=p_cut, batch=True, batch_info=True)
        return fn.cast(flags, dtype=types.FLOAT)
    try:
        p = float(p_cut)
    except (TypeError, ValueError):
        raise ValueError(f"p_cut must be a float in [0, 1], a DataNode or a callable, got {p_cut!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p_cut must be in [0, 1], got {p_cut!r}")
    return p

