"""MixMo inputs, the DALI side: two independent inputs, kappa, a Cut-MixMo mask and the cut flag.

MixMo (Ramé, Sun, Cord, ICCV 2021) mixes *features* inside the network (see
`dali_mix.torch.mixmo.MixMoNet`), so the pipeline does not mix pixels. It emits, per sample i:

    images0 = x_i, labels0 = y_i                       the sample itself
    images1 = x_j, labels1 = y_j, j = perm[i]          its partner in the same batch (j != i)
    kappa   ~ Beta(alpha, alpha)                       (= Dirichlet(2, 2) for M = 2), float32
    use_cut = u < p_cut                                Cut-MixMo (True) or Linear-MixMo (False)
    mask                                               uint8 {0, 1}, (1, H, W) for CHW / (H, W, 1)
                                                       for HWC: 1 where input 0 is kept

Every random parameter (the partner, kappa, u, the role swap, the box position) is drawn in numpy by
`dali_mix.draws` (`MixMoSampler`, one external source per batch, a pure function of
(seed, epoch, step)), as the official code (alexrame/mixmo-pytorch) draws them: kappa and the box
per sample; the cut-or-linear choice (one u) and the role swap once per batch, from the batch
seed (`per_sample=True` draws them per sample). Only batch repetition's random subset of the
batch comes from DALI (`fn.batch_permutation`).

Inside your own `@pipeline_def`::

    from dali_mix.mixmo import mixmo_inputs
    mm = mixmo_inputs(images, labels, num_classes=100)
    return mm.outputs()      # names: dali_mix.output_names(mixmo=True, num_classes=100)

and on the torch side::

    x0, x1, t0, t1, kappa, mask, use_cut = batch
    logits, k_used = net(x0, x1, kappa=kappa, mask=mask, use_cut=use_cut, return_kappa=True)
    loss = mixmo_loss(logits, t0, t1, k_used)

Cut-MixMo mask (one sampler, `dali_mix.draws.cut_mixmo_boxes`; default ``box="official"``, the
official `_cutmix_mask` / `_rand_bbox_of_area_lam`): a box of sides
``int(sqrt(k) * H)`` and ``int(sqrt(k) * W)``, centre uniform over the image, clipped at the
borders, is set to 1 and the rest 0; the roles of the two inputs are swapped with probability 1/2
(``mask -> 1 - mask``). The clipped box usually covers less than k (mask mean 0.31 at
k ~ Beta(2, 2), not 0.5): as in the official code, the output ``kappa`` of a Cut-MixMo sample is
the exact mask mean (float32, correctly rounded ratio of integer pixel counts), which the loss
weights use; for linear samples it is the drawn kappa. ``box="inside"`` is this library's first
box: height ``round(sqrt(k) * H)``, width
``round(k * H * W / height)``, fully inside, mean k to half a pixel row. With ``image_size`` the
boxes are drawn in pixels in numpy; without, the graph scales the same draws to each sample's
size (`cut_mixmo_mask`, which draws nothing), with the same float32 arithmetic, so both give the
same masks.
The mask is made for every sample (the model ignores it where ``use_cut`` is False). It is built
with copies only (`fn.full` + two `fn.erase` over a single-channel uint8 image), no arithmetic over
pixels, no per-sample Python. Give the model the kappa it reports (`return_kappa=True`): at
feature resolution the mask mean moves by up to one ring of feature cells
(`dali_mix.torch.mixmo.resize_mask`).

`p_cut` (probability of Cut-MixMo) is a float, a DataNode (float32 CPU scalar per sample, a
probability; 0/1 flags work too), or a callable taking DALI's batch_info and returning a
(batch_size,) array of per-sample probabilities (bool / 0-1 flags are probabilities 0 and 1),
called by the `MixMoSampler`. A sample uses the cut when ``u < p``, u shared by the batch. `CutProbSchedule` is such a callable:
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

from dali_mix import draws
from dali_mix._graph import check_layout, clamp, floor_int, image_hw, to_float
from dali_mix.labels import check_smoothing, onehot_targets, scalar_labels
from dali_mix.plan import BatchDraws, pipeline_seed
from dali_mix.schedule import BatchClock

BOXES = draws.CUT_MIXMO_BOXES
_SALT = 0x6D6D6F  # separates MixMo's draws from other streams of the same seed

__all__ = [
    "CutProbSchedule", "MixMoBatch", "MixMoSampler", "check_mixmo_args", "cut_mixmo_mask",
    "mixmo_inputs", "repeat_batch", "repetition_indices", "repetition_pairing",
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
    num_classes: int or None (decides `outputs()`, named by
        `dali_mix.output_names(mixmo=True, num_classes=num_classes)`).
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
        """(images0, images1, targets0, targets1, kappa, mask, use_cut), named by
        `dali_mix.output_names(mixmo=True, num_classes=self.num_classes)`."""
        return (self.images0, self.images1, self.targets0, self.targets1, self.kappa, self.mask,
                self.use_cut)


def mixmo_inputs(images, labels, *, p_cut=0.5, alpha: float = 2.0, batch_repetition: int = 1,
                 layout: str = "CHW", num_classes: int | None = None, smoothing: float = 0.0,
                 repeat: bool = True, no_self_pairs: bool = True, image_size=None,
                 box: str = "official", per_sample: bool = False, seed: int | None = None,
                 clock: BatchClock | None = None) -> MixMoBatch:
    """MixMo inputs for a batch: partners, kappa, Cut-MixMo mask and flag (module docstring).

    Args:
        images: batch of images, `layout`, any dtype, CPU or GPU, all of one size per sample
            (the mask follows each sample's size).
        labels: int labels per sample (CPU), shape () or (1,).
        p_cut: probability of Cut-MixMo per sample: float in [0, 1], a DataNode (float32 CPU
            scalar per sample), or a callable taking DALI's batch_info and returning
            (batch_size,) probabilities (e.g. `CutProbSchedule`), called by the sampler. A
            sample takes the cut when u < p, u drawn once per batch (per sample with
            `per_sample`).
        alpha: kappa ~ Beta(alpha, alpha) (MixMo: Dirichlet(2, 2), alpha = 2).
        batch_repetition: b >= 1; see the module docstring (drops (b-1)/b of the input batch).
        layout: "CHW" or "HWC".
        num_classes: if given, targets are dense (num_classes,) float32 rows with `smoothing`
            (`dali_mix.labels.onehot_targets`); else the int64 labels.
        smoothing: label smoothing eps in [0, 1) (target = (1-eps) * onehot + eps / C).
        repeat: with b >= 2, True repeats the batch here (pixel-identical copies); False means
            the batch is already laid out by `repeat_batch(..., batch_repetition=b)`.
        no_self_pairs: with b = 1, forbid perm[i] == i (default, as MixMo pairs two different
            samples). With b >= 2 self-pairs are always excluded.
        image_size: (H, W) (or one side) of every image when known: the boxes are then drawn
            in numpy in pixels and the graph only paints them; None: the graph scales the same
            unit draws to each sample's size (images of any size).
        box: "official" (the official `_rand_bbox_of_area_lam`: side int(sqrt(kappa) * side),
            centre uniform, clipped at the borders) or "inside" (this library's first box:
            area kappa to half a pixel row, fully inside). See `dali_mix.draws.cut_mixmo_boxes`.
        per_sample: draw the Cut-MixMo choice and the role swap per sample instead of once per
            batch (the official code's batch seed).
        seed: seed of the draws (default: the pipeline's seed; a random one when it has none).
        clock: a `dali_mix.schedule.BatchClock` mapping DALI's run counter to (epoch, step) (the
            draws are a pure function of (seed, epoch, step)); a plain run counter when None.

    Returns: a MixMoBatch.
    Raises: ValueError naming the argument, when the graph is built.
    """
    check_layout(layout)
    check_mixmo_args(p_cut=p_cut, alpha=alpha, batch_repetition=batch_repetition,
                     smoothing=smoothing, num_classes=num_classes)
    b = int(batch_repetition)
    draws.check_cut_mixmo_box(box)
    p = _cut_probability(p_cut)

    labels = scalar_labels(labels)
    if seed is None:
        seed = pipeline_seed()
    sampler = MixMoSampler(_batch_size("mixmo_inputs"), alpha=alpha,
                           p_cut=None if isinstance(p, DataNode) else p,
                           image_size=image_size, box=box, per_sample=per_sample, seed=seed,
                           clock=clock, no_self_pairs=no_self_pairs, pairs=b == 1)
    d = dict(zip(sampler.names, fn.external_source(
        source=sampler, num_outputs=len(sampler.names), batch=True, batch_info=True)))
    if b == 1:
        partner = d["perm"]
        images0, labels0 = images, labels
    else:
        n = _batch_size("batch_repetition > 1")
        if repeat:
            images, labels = repeat_batch(images, labels, batch_repetition=b)
        partner = repetition_pairing(n, b)
        images0, labels0 = images, labels
    images1 = fn.permute_batch(images, indices=partner)
    labels1 = fn.permute_batch(labels, indices=partner)
    kappa_drawn, swapped = d["kappa_drawn"], d["swapped"]
    use_cut = d["use_cut"] if "use_cut" in d else d["u_cut"] < p
    if image_size is None:
        mask, kappa_cut = cut_mixmo_mask(images0, kappa_drawn, d["centres"], swapped, layout=layout,
                                         box=box)
    else:
        H, W = image_hw(images0, layout)
        y, x, bh, bw = (d["box"][i] for i in range(4))
        mask = _paint_mask(H, W, y, x, bh, bw, swapped, layout, images0.device)
        kappa_cut = d["kappa_cut"]
    cut = to_float(use_cut)
    kappa = kappa_cut * cut + kappa_drawn * (1.0 - cut)  # exact: one term is x*1, the other 0

    if num_classes is not None:
        targets0 = onehot_targets(labels0, num_classes, smoothing)
        targets1 = onehot_targets(labels1, num_classes, smoothing)
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


def cut_mixmo_mask(images, kappa, centres, swapped, *, layout: str = "CHW", box: str = "official"):
    """Cut-MixMo masks at the resolution of `images`: the boxes of
    `dali_mix.draws.cut_mixmo_boxes` (its arithmetic restated in float32 in the graph, so the
    same draws give the same pixels) scaled to each sample's size. Draws nothing: the random
    parameters come from `MixMoSampler` (or any numpy draw of `dali_mix.draws`).

    Args:
        images: the batch whose spatial size the masks take (only its shape is read).
        kappa: float32 CPU scalar per sample in [0, 1], the target proportion of ones.
        centres: (2,) float32 CPU unit positions (y, x) per sample (`draws.cut_mixmo_centres`).
        swapped: bool CPU scalar per sample, the role swap (mask -> 1 - mask where True).
        layout: layout of `images`; the mask is (1, H, W) for "CHW", (H, W, 1) for "HWC".
        box: "official" (clipped, centred box) or "inside"; see `mixmo_inputs`.

    Returns: (mask uint8 on the images' device, kappa_true float32 CPU scalar = exact mask mean).
    """
    check_layout(layout)
    draws.check_cut_mixmo_box(box)
    H, W = image_hw(images, layout)
    Hf, Wf = to_float(H), to_float(W)
    uy, ux = centres[0], centres[1]
    if box == "official":
        root = dmath.sqrt(kappa)
        cy = dmath.min(floor_int(uy * Hf), H - 1)
        cx = dmath.min(floor_int(ux * Wf), W - 1)
        cut_h, cut_w = floor_int(Hf * root), floor_int(Wf * root)
        y, y2 = clamp(cy - cut_h // 2, 0, H), clamp(cy + cut_h // 2, 0, H)
        x, x2 = clamp(cx - cut_w // 2, 0, W), clamp(cx + cut_w // 2, 0, W)
        bh, bw = y2 - y, x2 - x
    else:
        bh = clamp(floor_int(Hf * dmath.sqrt(kappa) + 0.5), 0, H)
        has_h = dmath.min(bh, 1)  # 0 where bh == 0
        bw = clamp(floor_int(kappa * Hf * Wf / to_float(dmath.max(bh, 1)) + 0.5), 0, W) * has_h
        y = dmath.min(floor_int(uy * to_float(H - bh + 1)), H - bh)
        x = dmath.min(floor_int(ux * to_float(W - bw + 1)), W - bw)
    mask = _paint_mask(H, W, y, x, bh, bw, swapped, layout, images.device)
    s = fn.cast(swapped, dtype=types.INT32)
    area = bh * bw
    ones = area + s * (H * W - 2 * area)  # box area, or the rest of the image when swapped
    return mask, to_float(ones) / to_float(H * W)


def _paint_mask(H, W, y, x, bh, bw, swapped, layout: str, device: str):
    """uint8 {0, 1} mask (1, H, W) ("CHW") or (H, W, 1) ("HWC") on `device`: 1 in the box
    (y, x, bh, bw) and 0 elsewhere, or the reverse where `swapped`; all int32 / bool CPU
    scalars per sample. Copies only: `fn.full` and two `fn.erase`."""
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
    return mask.gpu() if device == "gpu" else mask


class MixMoSampler(BatchDraws):
    """The random parameters of a MixMo batch, drawn in numpy (`dali_mix.draws`): a callable
    for `fn.external_source(source=sampler, num_outputs=len(sampler.names), batch=True,
    batch_info=True)`, a pure function of (seed, epoch, step) through a `BatchClock` (the
    planner's scaffolding, `dali_mix.plan.BatchDraws`: seed, clock, the batch's random stream).

    Outputs (B = batch size, CPU, per sample), named by `names`:
        kappa_drawn: float32 ~ Beta(alpha, alpha) (`draws.mixmo_kappas`).
        use_cut: bool, Cut-MixMo (`draws.mixmo_roles`: u < p, one u per batch unless
            `per_sample`); when p_cut is a DataNode, "u_cut" (float32 u) instead, compared
            with p in the graph.
        swapped: bool, roles of the inputs exchanged (one per batch unless `per_sample`).
        perm: int32, the partner of each sample (`draws.permutation`; used without batch
            repetition).
        with `image_size`: box (4,) int32 (y, x, h, w) in pixels (`draws.cut_mixmo_boxes`)
            and kappa_cut float32, the exact mean of the mask (box area or the rest of the
            image where swapped); without: centres (2,) float32 unit positions
            (`draws.cut_mixmo_centres`), scaled to pixels in the graph (`cut_mixmo_mask`).

    Args:
        batch_size: samples per batch.
        alpha: kappa ~ Beta(alpha, alpha).
        p_cut: float, a callable batch_info -> (B,) probabilities, or None (a DataNode: the
            graph compares "u_cut" with it).
        image_size: (H, W) or one side, or None (see above).
        box: "official" or "inside" (`draws.cut_mixmo_boxes`).
        per_sample: choice and swap per sample instead of per batch.
        seed: base seed.
        clock: maps DALI's run counter to (epoch, step); a plain run counter when None.
        no_self_pairs: partners are a derangement (no sample paired with itself).
        pairs: draw the partners ("perm"; False with batch repetition, which pairs by blocks).
    """

    salt = _SALT

    def __init__(self, batch_size: int, *, alpha: float = 2.0, p_cut=0.5, image_size=None,
                 box: str = "official", per_sample: bool = False, seed: int = 0,
                 clock: BatchClock | None = None, no_self_pairs: bool = True, pairs: bool = True):
        super().__init__(seed, clock)
        self.batch_size = int(batch_size)
        self.alpha = float(alpha)
        self.p_cut = p_cut
        self.size = None if image_size is None else draws.size_hw(image_size)
        self.box = draws.check_cut_mixmo_box(box)
        self.per_sample = bool(per_sample)
        self.no_self_pairs = bool(no_self_pairs)
        self.names = ["kappa_drawn", "u_cut" if p_cut is None else "use_cut", "swapped"]
        self.names += ["perm"] if pairs else []
        self.names += ["centres"] if self.size is None else ["box", "kappa_cut"]

    def draw(self, epoch: int, step: int, p=None) -> dict:
        """The named outputs for batch `step` of `epoch`; `p`: (B,) probabilities of
        Cut-MixMo (default: the float p_cut; unused when p_cut is None)."""
        B = self.batch_size
        rng = self.rng(epoch, step)
        kappa = draws.mixmo_kappas(rng, B, self.alpha).astype(np.float32)
        p = self.p_cut if p is None else p
        use_cut, swapped, u = draws.mixmo_roles(rng, B, 0.0 if p is None else p, self.per_sample)
        centres = draws.cut_mixmo_centres(rng, B)
        perm = draws.permutation(rng, B, self.no_self_pairs).astype(np.int32)
        out = {"kappa_drawn": kappa, "use_cut": use_cut, "u_cut": u, "swapped": swapped, "perm": perm}
        if self.size is None:
            out["centres"] = np.ascontiguousarray(centres.T)
            return out
        H, W = self.size
        y, x, h, w = draws.cut_mixmo_boxes(rng, B, H, W, kappa, self.box, centres=centres)
        area = h * w
        out["box"] = np.stack([y, x, h, w], 1).astype(np.int32)
        out["kappa_cut"] = (np.where(swapped, H * W - area, area) / (H * W)).astype(np.float32)
        return out

    def __call__(self, batch_info):
        epoch, step = self.epoch_step(batch_info)
        p = None
        if callable(self.p_cut):
            p = np.asarray(self.p_cut(batch_info), np.float32).reshape(self.batch_size)
        out = self.draw(epoch, step, p)
        return tuple(out[name] for name in self.names)


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
        indices = repetition_indices(_batch_size("batch_repetition > 1"), b)
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


def _batch_size(what: str) -> int:
    pipe = Pipeline.current()
    if pipe is None:
        raise ValueError(f"{what} must be used inside a pipeline definition (needs the batch size)")
    return int(pipe.max_batch_size)


def _cut_probability(p_cut):
    """p_cut checked: a float in [0, 1], a float32 CPU DataNode, or the callable itself."""
    if isinstance(p_cut, DataNode):
        return fn.cast(p_cut, dtype=types.FLOAT)
    if callable(p_cut):
        return p_cut  # evaluated by the MixMoSampler, in its external source
    try:
        p = float(p_cut)
    except (TypeError, ValueError):
        raise ValueError(f"p_cut must be a float in [0, 1], a DataNode or a callable, got {p_cut!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p_cut must be in [0, 1], got {p_cut!r}")
    return p

