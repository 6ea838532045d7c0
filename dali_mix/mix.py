"""Recipe-driven mixing: pair the batch, pick a method per sample or batch, mix, build targets.

This is what a user calls inside their own `@pipeline_def(enable_conditionals=True)`:

    out = dali_mix.random_mix(images, labels, recipe)
    return out.outputs()          # (images, targets) or, sparse, (images, y_a, y_b, lam)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode
from nvidia.dali.pipeline import Pipeline

from dali_mix import mixers, native
from dali_mix._graph import to_float
from dali_mix.config import MixRecipe
from dali_mix.labels import dense_targets, scalar_labels, weighted_targets
from dali_mix.masks import FMixMaskBank, fmix_ranks
from dali_mix.pairing import pair
from dali_mix.plan import MixPlanner, can_plan
from dali_mix.schedule import BatchClock
from dali_mix.select import choose, require_conditionals, select


class Normalization(NamedTuple):
    """Normalisation done inside `random_mix` (see its `normalize` argument): per-channel mean
    and std in pixel units, the per-sample horizontal flip (a 0/1 DataNode or 0), the output
    dtype; the output layout is CHW, as `fn.crop_mirror_normalize` makes it."""

    mean: tuple
    std: tuple
    mirror: object = 0
    dtype: object = types.FLOAT


class MixResult(NamedTuple):
    """DataNodes of a mixed batch.

    images: mixed images, layout/device of the input (float32 for float input).
    targets: (N, C) float32 soft targets (dense recipes) or None (sparse).
    labels_a, labels_b: int64 CPU scalars, own and partner labels.
    lam: float32 CPU scalar, weight of labels_a (1.0 for unmixed samples).
    method: int32 CPU scalar, index into `recipe.candidates`, or len(candidates) for "not mixed".
    """

    images: object
    targets: object
    labels_a: object
    labels_b: object
    lam: object
    method: object
    recipe: MixRecipe

    def outputs_names(self) -> list[str]:
        """Names of `outputs()`, in order."""
        return output_names(self.recipe)

    def outputs(self) -> tuple:
        """Pipeline outputs for `dali_mix.torch.Loader`: see `output_names(recipe)`."""
        if self.recipe.target == "dense":
            return self.images, self.targets
        return self.images, self.labels_a, self.labels_b, self.lam


def output_names(recipe: MixRecipe) -> list[str]:
    """Names of `MixResult.outputs()`, in order, for a DALI iterator's `output_map`."""
    if recipe.target == "dense":
        return ["images", "targets"]
    return ["images", "labels_a", "labels_b", "lam"]


def random_mix(images, labels, recipe: MixRecipe, *, fmix_bank: FMixMaskBank | None = None,
               enabled=None, image_size=None, normalize_later=None,
               normalize: Normalization | None = None, clock: BatchClock | None = None,
               plan: bool | None = None, fused: bool | None = None) -> MixResult:
    """Mix a batch as `recipe` says (RandomMix when it has several candidates).

    Args:
        images: batch of images, layout `recipe.layout`, CPU or GPU: float (normalised), or uint8
            with `normalize` / `normalize_later` (with several candidates all branches must
            agree on dtype: Mixup gives float32 on float or plain uint8 input).
        labels: int labels per sample (CPU), shape () or (1,), as readers produce them.
        recipe: a validated MixRecipe.
        fmix_bank: mask source for FMix; made from the recipe when None (size `recipe.fmix_size`
            or 224x224, batch size from the current pipeline).
        enabled: optional bool CPU scalar per sample (a DataNode), or a callable
            batch_info -> (N,) bool such as `dali_mix.schedule.MixOffSchedule` (e.g. mixing off
            for the last epochs); False samples are left unmixed (lam = 1).
        image_size: (H, W) of every image, when fixed and known: the FMix bank is made at that
            size and used without resizing, and, for HWC images and candidates among Mixup,
            CutMix, ResizeMix and FMix, every random parameter of a batch is drawn in one
            vectorised step (`dali_mix.plan.MixPlanner`, one external source) instead of about
            60 small DALI operators: the fast path on the CPU.
        normalize_later: (mean, std) per channel, for uint8 images mixed *before*
            normalisation (the cheap place on the CPU: a quarter of the bytes of float32):
            Mixup is rounded back to uint8, Cutout fills with the mean and Random Erasing with
            mean + std * N(0, 1), so that after `(x - mean) / std` they equal the normalised
            versions (zero holes, N(0, 1) noise).
        normalize: for uint8 HWC images (recipe.layout "HWC"): normalise (and flip) inside the
            mixing, returning float CHW images like `fn.crop_mirror_normalize`; Mixup is then
            fused with the normalisation (`mixers.mixup_normalized`), much cheaper on the CPU
            than a uint8 blend. Implies `normalize_later=(mean, std)`.
        clock: `BatchClock` of the pipeline's run counter (epochs for `enabled` schedules and
            for the plan's random stream); defaults to the FMix bank's clock or a plain counter.
        plan: force (True) or forbid (False) the planned fast path; None: use it when possible
            (`dali_mix.plan.can_plan`, and `enabled` not a DataNode). With `plan=True` and a
            recipe or `enabled` it cannot serve, ValueError.
        fused: on the planned path with `normalize` and CPU uint8 images, mix and normalise
            in one C++ operator (`dali_mix.native.mix_normalize`, built on first use; with a
            recipe that never mixes, it only normalises) instead of DALI's operators. None
            (default): when it can be built, else warn once with the cause and use DALI's
            operators; True: required (`dali_mix.native.NativeBuildError` when it cannot be
            built); False: never. The GPU path always uses DALI's operators.
    """
    labels_a = scalar_labels(labels)
    names = recipe.candidates
    if not recipe.mixes:
        lam = to_float(labels_a * 0 + 1)
        targets = _targets(labels_a, labels_a, lam, recipe)
        if normalize is not None and _use_fused(fused, images, normalize):
            images = native.normalize(images, mean=normalize.mean, std=normalize.std,
                                      mirror=normalize.mirror, dtype=normalize.dtype)
        elif normalize is not None:
            images = _crop_mirror_normalize(images, normalize, normalize.mirror)
        return MixResult(images, targets, labels_a, labels_a, lam, labels_a * 0 + len(names), recipe)

    if image_size is not None:
        image_size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(image_size)
        if recipe.fmix_size is None:
            recipe = recipe.with_(fmix_size=image_size)
    if "fmix" in names and fmix_bank is None:
        fmix_bank = default_fmix_bank(recipe, clock)
    if plan is None:  # a DataNode `enabled` can only act in the graph: general path
        plan = can_plan(recipe, image_size, fmix_bank) and not isinstance(enabled, DataNode)
    if plan:
        if normalize is not None:
            normalize_later = (normalize.mean, normalize.std)
        return _planned_mix(images, labels_a, recipe, image_size, fmix_bank=fmix_bank,
                            enabled=enabled, clock=clock, normalize=normalize,
                            uint8=normalize_later is not None,
                            fused=_use_fused(fused, images, normalize))
    if fused:
        raise ValueError("fused=True needs the planned path (see `plan`)")
    if enabled is not None and not isinstance(enabled, DataNode):  # a schedule
        enabled = fn.external_source(source=enabled, batch=True, batch_info=True)
    pairs = pair(images, labels_a, no_self_pairs=recipe.no_self_pairs)
    ranks = None
    if "fmix" in names:
        ranks = fmix_ranks(fmix_bank)
    method = choose(recipe.weights, prob=recipe.prob, mode=recipe.mode)
    same_size = image_size is not None and fmix_bank is not None and tuple(fmix_bank.size) == image_size
    if normalize is not None:
        normalize_later = (normalize.mean, normalize.std)
    ops = [_method_op(name, recipe, resize_masks=not same_size, normalize_later=normalize_later)
           for name in names]
    if recipe.prob < 1.0 or enabled is not None:
        ops.append(_unchanged)
    if normalize is not None:
        ops = [_normalizing(op, name, recipe, normalize) for op, name in zip(ops, names + ("none",))]
    if enabled is not None:
        on = fn.cast(enabled, dtype=types.INT32)
        chosen = labels_a * 0 if method is None else method
        method = fn.cast(chosen * on + (1 - on) * (len(ops) - 1), dtype=types.INT32)
    args = (images, pairs.images_b, ranks)
    if normalize is not None:
        args += (normalize.mirror,)
    mixed, lam = select(ops, method, *args)
    if method is None:
        method = labels_a * 0
    targets = _targets(labels_a, pairs.labels_b, lam, recipe)
    return MixResult(mixed, targets, labels_a, pairs.labels_b, lam, method, recipe)


def default_fmix_bank(recipe: MixRecipe, clock: BatchClock | None = None) -> FMixMaskBank:
    """FMix mask bank for `recipe` in the current pipeline (its batch size)."""
    pipe = _current_pipeline("random_mix with fmix")
    return FMixMaskBank(recipe.fmix_size or (224, 224), pipe.max_batch_size,
                        bank_size=recipe.fmix_bank_size, decay_power=recipe.fmix_decay_power,
                        seed=recipe.seed, clock=clock)


def _current_pipeline(what: str):
    pipe = Pipeline.current()
    if pipe is None:
        raise ValueError(f"{what} must be called inside a pipeline definition")
    return pipe


def _use_fused(fused: bool | None, images, normalize: Normalization | None) -> bool:
    """Whether the planned path runs the fused C++ operator (see `random_mix`'s `fused`)."""
    if normalize is None:
        if fused:
            raise ValueError("fused=True needs `normalize` (the fused operator normalises)")
        return False
    return native.use(fused, images)


def _planned_mix(images, labels_a, recipe: MixRecipe, image_size, *, fmix_bank, enabled, clock,
                 normalize: Normalization | None, uint8: bool, fused: bool = False) -> MixResult:
    """RandomMix with every random parameter from one `MixPlanner` external source.

    Graph: one `fn.multi_paste(images, in_ids=...)` for CutMix boxes and FMix masks (the mask's
    partner pixels as boxes of row runs, so FMix is a copy too, no arithmetic), one more for
    the ResizeMix patches (the partners shrunk by `fn.resize`), on every sample (unused samples
    only copy themselves: cheaper than a conditional split); a DALI conditional only around
    Mixup (fused with the normalisation when `normalize` is given); then the normalisation.
    With `fused`, all of this is one `dali_mix.native.mix_normalize` (CPU).
    """
    names = recipe.candidates
    if not can_plan(recipe, image_size, fmix_bank):
        raise ValueError(f"plan=True needs HWC images (recipe.layout), image_size and candidates "
                         f"among mixup, cutmix, resizemix, fmix; got layout {recipe.layout!r}, "
                         f"image_size {image_size!r}, candidates {names}")
    pipe = _current_pipeline("random_mix")
    if isinstance(enabled, DataNode):
        raise ValueError("with image_size (the planned path) `enabled` must be a callable "
                         "batch_info -> (N,) bool such as MixOffSchedule, not a DataNode; "
                         "or pass plan=False")
    if clock is None:
        clock = fmix_bank.clock if fmix_bank is not None else BatchClock()
    seed = pipe.seed if pipe.seed is not None else int(np.random.SeedSequence().entropy % (2 ** 31))
    planner = MixPlanner(recipe, pipe.max_batch_size, image_size, seed=seed, clock=clock,
                         fmix_bank=fmix_bank, enabled=enabled,
                         normalize_std=None if normalize is None else normalize.std, fused=fused)
    p = dict(zip(planner.output_names,
                 fn.external_source(source=planner, num_outputs=len(planner.output_names),
                                    batch=True, batch_info=True)))
    labels_b = fn.permute_batch(labels_a, indices=p["perm"])
    if fused:
        mixed = native.mix_normalize(images, p["perm"], p["blend"], p["boxes"], p["patch"],
                                     p["mask"], p["mask_params"], mean=normalize.mean,
                                     std=normalize.std, mirror=normalize.mirror,
                                     dtype=normalize.dtype)
    else:
        mixed = _planned_pixels(images, p, names, image_size, normalize, uint8)
    targets = None
    if recipe.target == "dense":
        targets = weighted_targets(labels_a, labels_b, p["w_a"], p["w_b"], recipe.num_classes,
                                   recipe.label_smoothing / recipe.num_classes)
    return MixResult(mixed, targets, labels_a, labels_b, p["lam"], p["method"], recipe)


def _planned_pixels(images, p: dict, names, image_size, normalize: Normalization | None,
                    uint8: bool):
    """The planned mixing with DALI's operators (CPU or GPU): see `_planned_mix`."""
    canvas = images
    if "paste_ids" in p:
        canvas = fn.multi_paste(images, in_ids=p["paste_ids"], in_anchors=p["paste_anchors"],
                                out_anchors=p["paste_anchors"], shapes=p["paste_shape"],
                                output_size=list(image_size))
    other = None
    if "mixup" in names or "resizemix" in names:
        other = fn.permute_batch(images, indices=p["perm"])
    if "patch_size" in p:
        shrunk = fn.resize(other, size=p["patch_size"], interp_type=types.INTERP_NN, antialias=False)
        canvas = fn.multi_paste(canvas, shrunk, out_anchors=p["patch_out"], shapes=p["patch_shape"],
                                output_size=list(image_size))
    if "is_mixup" in p:
        require_conditionals("choosing Mixup per sample")
        if p["is_mixup"]:
            mixed = _planned_mixup(images, other, p, normalize, uint8)
        else:
            mixed = _finish(canvas, normalize)
    elif "mixup" in names:  # the only method, always applied
        mixed = _planned_mixup(images, other, p, normalize, uint8)
    else:
        mixed = _finish(canvas, normalize)
    return mixed


def _planned_mixup(images, other, p, normalize: Normalization | None, uint8: bool):
    """Mixup with the planned lam: fused with the normalisation when `normalize` is given."""
    if normalize is None:
        return mixers.mixup(images, other, lam=p["lam"], uint8=uint8)[0]
    common = dict(mean=[float(m) for m in normalize.mean], mirror=normalize.mirror,
                  dtype=normalize.dtype, output_layout="CHW")
    return (fn.crop_mirror_normalize(images, std=p["std_a"], **common)
            + fn.crop_mirror_normalize(other, std=p["std_b"], **common))


def _finish(images, normalize: Normalization | None):
    return images if normalize is None else _crop_mirror_normalize(images, normalize, normalize.mirror)


def _targets(labels_a, labels_b, lam, recipe: MixRecipe):
    if recipe.target == "sparse":
        return None
    return dense_targets(labels_a, labels_b, lam, recipe.num_classes, recipe.label_smoothing)


def _normalizing(op, name: str, r: MixRecipe, norm: Normalization):
    """Wrap a branch so that it returns normalised CHW images (mixup: fused, see mixers)."""
    if name == "mixup":
        return lambda x, o, ranks, mirror: mixers.mixup_normalized(
            x, o, mean=norm.mean, std=norm.std, mirror=mirror, dtype=norm.dtype, alpha=r.mixup_alpha)

    def branch(x, o, ranks, mirror):
        mixed, lam = op(x, o, ranks)
        return _crop_mirror_normalize(mixed, norm, mirror), lam
    return branch


def _crop_mirror_normalize(images, norm: Normalization, mirror):
    """uint8 HWC -> normalised, flipped CHW as `norm` says."""
    return fn.crop_mirror_normalize(images, mean=[float(m) for m in norm.mean],
                                    std=[float(s) for s in norm.std], mirror=mirror,
                                    dtype=norm.dtype, output_layout="CHW")


def _unchanged(images, other, *rest):
    """The "not mixed" branch: images as they are, lam = 1."""
    first_dim = images.shape(dtype=types.INT32, device="cpu")[0]
    return images, to_float(first_dim * 0 + 1)


def _method_op(name: str, r: MixRecipe, *, resize_masks: bool = True, normalize_later=None):
    """A branch function (images, other[, ranks]) -> (mixed, lam) for method `name`."""
    geo = {"layout": r.layout}
    uint8 = normalize_later is not None
    mean, std = normalize_later if uint8 else (0.0, 1.0)
    if name == "mixup":
        return lambda x, o, *_: mixers.mixup(x, o, alpha=r.mixup_alpha, uint8=uint8)
    if name == "cutmix":
        return lambda x, o, *_: mixers.cutmix(x, o, alpha=r.cutmix_alpha, minmax=r.cutmix_minmax,
                                              channels=r.channels, **geo)
    if name == "resizemix":
        return lambda x, o, *_: mixers.resizemix(x, o, scale=r.resizemix_scale, channels=r.channels, **geo)
    if name == "fmix":
        return lambda x, o, ranks: mixers.fmix(x, o, ranks, alpha=r.fmix_alpha, resize=resize_masks, **geo)
    if name == "cutout":
        fill = list(mean) if uint8 else 0.0
        return lambda x, o, *_: mixers.cutout(x, n_holes=r.cutout_holes, length=r.cutout_length,
                                              fill=fill, **geo)
    if name == "random_erasing":
        fill = r.erasing_fill
        if uint8 and fill != "random":  # a constant given in normalised units
            fill = [m + s * float(fill) for m, s in zip(mean, std)]
        return lambda x, o, *_: mixers.random_erasing(
            x, p=r.erasing_prob, area=r.erasing_area, aspect=r.erasing_aspect, fill=fill,
            channels=r.channels, noise_mean=list(mean) if uint8 else 0.0,
            noise_std=list(std) if uint8 else 1.0, uint8=uint8, **geo)
    raise ValueError(f"unknown method {name!r}")
