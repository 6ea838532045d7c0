"""`random_mix`: the public entry point, planner + executor + targets inside a DALI pipeline.

Inside your own `@pipeline_def` or class-based `Pipeline` (no conditionals needed):

    out = dali_mix.random_mix(images, labels, recipe, image_size=224,
                              normalize=dali_mix.Normalization(mean, std, mirror=flip))
    return out.outputs()          # (images, targets) or, sparse, (images, y_a, y_b, lam)
"""
from __future__ import annotations

from typing import NamedTuple

from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode
from nvidia.dali.pipeline import Pipeline

from dali_mix import execute
from dali_mix.recipe import MixRecipe, image_problems, warn_once
from dali_mix.execute import Geometry, Normalization
from dali_mix.feed import PlanFeed
from dali_mix.labels import TargetInputs, own_labels, unmixed_targets
from dali_mix.masks import FMixMaskBank
from dali_mix.draws import size_hw
from dali_mix.methods import max_sources
from dali_mix.pixel_maps import PixelMaps, unmoved_maps
from dali_mix.plan import MixPlanner, pipeline_seed
from dali_mix.schedule import BatchClock

__all__ = ["MixResult", "Normalization", "output_names", "random_mix"]


class MixResult(NamedTuple):
    """DataNodes of a mixed batch.

    images: the mixed images (see `random_mix` for layout and dtype), on the input's device.
    targets: (N, C) float32 soft targets (dense recipes) or None (sparse), on the images' device.
    labels_a, labels_b: int64 scalars, own and partner labels (CPU); multi-label recipes
        (`MixRecipe.label_format`): their (C,) float32 multi-hot vectors.
    lam: float32 scalar, the exact weight of labels_a (1.0 for unmixed samples) (CPU).
    method: int32 scalar, index into `recipe.candidates`, len(candidates) = not mixed (CPU).
    recipe: the recipe.
    labels: (S,) int64 labels of the plan's S label slots (own, partner, further sources), CPU
        (multi-label: (S, C) float32 multi-hot rows).
    shares: (S,) float32 each slot's share of the output (`Plan.shares`: lam, 1 - lam for two
        slots), CPU.
    masks, masks_b: (H, W) int64 class maps moved with the pixels (`random_mix(masks=)`; None
        without), on the images' device: `masks` the class of each output pixel (the own
        mask where a blend mixed), `masks_b` the partner's at the same pixels for blends,
        equal to `masks` elsewhere; erased pixels are `recipe.ignore_index` in both
        (`dali_mix.pixel_maps`).
    mask_weight: float32 scalar, the weight of `masks` in the per-pixel loss (Mixup's lambda
        for blended samples, 1.0 otherwise), on the images' device.
    source: (H, W) uint8, 0 where an output pixel is the sample's own, 1 where it came from
        another sample (`random_mix(source_map=True)`; None without), on the images' device.
    """

    images: object
    targets: object
    labels_a: object
    labels_b: object
    lam: object
    method: object
    recipe: MixRecipe
    labels: object = None
    shares: object = None
    masks: object = None
    masks_b: object = None
    mask_weight: object = None
    source: object = None

    def outputs(self) -> tuple:
        """Pipeline outputs for `dali_mix.torch.Loader`, named by `output_names(recipe,
        masks=..., source_map=...)`; every output on the images' device."""
        if self.recipe.target == "dense":
            out = (self.images, self.targets)
        elif label_slots(self.recipe) > 2:
            out = (self.images,) + tuple(_on(x, self.images) for x in (self.labels, self.shares))
        else:
            out = (self.images,) + tuple(_on(x, self.images) for x in (self.labels_a, self.labels_b, self.lam))
        if self.masks is not None:
            out += (self.masks, self.masks_b, self.mask_weight)
        if self.source is not None:
            out += (self.source,)
        return out


def output_names(recipe: MixRecipe | None = None, *, mixmo: bool = False, num_classes: int | None = None,
                 masks: bool = False, source_map: bool = False) -> list[str]:
    """Names of a pipeline's outputs, in order, for the Loader's `output_map`: those of
    `MixResult.outputs()` of `random_mix` with `recipe`, or (`mixmo=True`) those of
    `MixMoBatch.outputs()` of `dali_mix.mixmo.mixmo_inputs` with `num_classes` (dense targets
    "targets0"/"targets1" when given, else int64 "labels0"/"labels1"). `masks`, `source_map`:
    as given to `random_mix` (the masks' and the source map's outputs after the targets).

        dm.output_names(recipe)                          # ["images", "targets"] (dense recipe)
        dm.output_names(recipe, masks=True)              # [..., "masks", "masks_b", "mask_weight"]
        dm.output_names(mixmo=True, num_classes=100)     # ["images0", "images1", "targets0", ...]
    """
    if mixmo:
        if recipe is not None:
            raise ValueError("output_names: a recipe names random_mix's outputs, mixmo=True those of "
                             "mixmo_inputs (with its num_classes); give one of them")
        t = ["targets0", "targets1"] if num_classes is not None else ["labels0", "labels1"]
        return ["images0", "images1", *t, "kappa", "mask", "use_cut"]
    if recipe is None:
        raise ValueError("output_names needs the recipe of random_mix (or mixmo=True for mixmo_inputs)")
    if num_classes is not None:
        raise ValueError("output_names: num_classes is mixmo_inputs' (mixmo=True); a recipe carries its own")
    if recipe.target == "dense":
        names = ["images", "targets"]
    elif label_slots(recipe) > 2:
        names = ["images", "slot_labels", "slot_weights"]
    else:
        names = ["images", "labels_a", "labels_b", "lam"]
    if masks:
        names += ["masks", "masks_b", "mask_weight"]
    if source_map:
        names += ["source"]
    return names


def label_slots(recipe: MixRecipe) -> int:
    """S, the label slots of the recipe's plans: 2 (own, partner) unless a candidate draws
    from more samples (RICAP, Mosaic: 4)."""
    return max_sources(recipe.candidates)


def random_mix(images, labels, recipe: MixRecipe, *, image_size=None,
               normalize: Normalization | None = None, executor: str = "auto", enabled=None,
               clock: BatchClock | None = None, fmix_bank: FMixMaskBank | None = None,
               masks=None, source_map: bool = False) -> MixResult:
    """Mix a batch as `recipe` says: a method per sample (or pair, or batch) among the recipe's
    candidates, its parameters drawn by one `MixPlanner` per batch, then Cutout / Random
    Erasing, and the soft targets. Needs no DALI conditionals.

    Args:
        images: the batch, CPU or GPU, of layout `recipe.layout` ("HWC" by default, what
            decoders and `fn.resize` give; "CHW" after `fn.crop_mirror_normalize`), every image
            (H, W) = `image_size` with `recipe.channels` channels: uint8 (decoded), or float32
            (already normalised). Layout and shape are checked on every batch at run time; a
            mismatch raises naming the expected and the actual value.
        labels: per sample (CPU), as `recipe.label_format` says: "index" (default) an integer
            of shape () or (1,) in [0, recipe.num_classes); "multi_hot" a (C,) 0/1 vector
            (float32 or uint8); "ids" a variable-length integer list of class ids (empty: no
            class). Multi-label labels give dense targets sum_k share_k * y_k (smoothed,
            `dali_mix.labels`); a bad sample (an id outside [0, C), a vector of another
            length, a value other than 0/1) gets a marked row the Loader names.
        recipe: the validated recipe.
        image_size: (H, W) (or one int) of every image, needed when the recipe mixes: the boxes
            are drawn for it before the images exist.
        normalize: for uint8 HWC images: normalise (and flip) here, replacing your
            `fn.crop_mirror_normalize`; the output is then CHW float32 (or `normalize.dtype`).
            Without it the output has the input's layout and dtype (uint8 stays uint8, Mixup
            rounded to the nearest value).
        executor: "auto" (default: the fused C++ operator for CPU images, DALI's operators for
            GPU images or when the operator cannot be built), "fused" (required, CPU only) or
            "dali" (DALI's operators: the graph GPU users get, also on the CPU).
        enabled: optional callable batch_info -> (N,) bool, e.g. `dali_mix.MixOffSchedule`
            (mixing off for the last epochs); False samples are neither mixed nor erased.
        clock: `BatchClock` mapping the pipeline's run counter to (epoch, step) for the plan's
            random stream and for `enabled`; defaults to the FMix bank's clock or a plain one.
        fmix_bank: FMix mask bank of `image_size`; made from the recipe when None.
        masks: optional per-pixel class maps (uint8 or int32, (H, W) or (H, W, 1), the images'
            H and W, after the same crop, flip and resize as the images), on the device the
            images' executor runs on: moved with the pixels into `MixResult.masks` /
            `masks_b` / `mask_weight` (`dali_mix.pixel_maps`). A wrong shape raises naming the
            mask.
        source_map: also give `MixResult.source`, which output pixels came from another sample.

    Returns:
        `MixResult`; `.outputs()` gives (images, targets) for a dense recipe, targets (N, C)
        float32 on the images' device.

    The recipe is checked against the images when the graph is built (`image_size`, and the
    value range: normalised with `normalize`, 0-255 for HWC images without it, unknown for CHW
    images without it; `dali_mix.recipe.image_problems`): a value that
    cannot work on them raises ValueError naming the field, its value and the valid range; a
    degenerate one (a Cutout hole that can cover the whole image) is a warning, once.

    Every batch must be full (the pipeline's batch size), as DALI's readers give them: the plan
    is drawn for that many samples, and DALI refuses a shorter batch ("Batch size clash").
    Without `normalize`, Random Erasing's random fill is uniform 0-255 on integer images and
    N(0, 1) on float (normalised) ones; with it, N(0, 1).
    """
    if isinstance(enabled, DataNode):
        raise ValueError("enabled must be a callable batch_info -> (N,) bool (such as "
                         "dali_mix.MixOffSchedule), not a DataNode: the plan is drawn outside the graph")
    if normalize is not None and recipe.layout != "HWC":
        raise ValueError(f"normalize takes uint8 HWC images (it replaces fn.crop_mirror_normalize), "
                         f"but recipe.layout is {recipe.layout!r}; drop normalize for images "
                         f"that are already normalised")
    labels_a, problem = own_labels(labels, recipe)
    kind = execute.resolve_executor(executor, images)
    if masks is not None and kind == "fused" and getattr(masks, "device", "cpu") == "gpu":
        raise ValueError("random_mix: the masks are on the GPU but the images are mixed by the fused "
                         "CPU operator; give CPU masks, or GPU images (DALI's operators)")
    if not recipe.mixes:
        return _unmixed(images, labels_a, recipe, normalize, kind, problem, masks, source_map)
    if image_size is None:
        raise ValueError("random_mix needs image_size=(H, W): the plan's boxes are drawn for it "
                         "before the images exist (it is checked against every image at run time)")
    height, width = size_hw(image_size)
    if normalize is not None:
        values = dict(value_range=normalize.value_range(recipe.channels))
    elif recipe.layout == "HWC":  # decoded pixels: a fill outside 0-255 would wrap around in uint8
        values = dict(value_range=(0.0, 255.0), units="pixel values: HWC images without normalize are "
                      "decoded uint8 pixels")
    else:
        values = {}  # CHW images normalised by the caller: their range is not known here
    warn_once(image_problems(recipe, height, width, **values))
    if "fmix" in recipe.candidates and recipe.fmix_size is None:
        recipe = recipe.with_(fmix_size=(height, width))
    pipe = _current_pipeline()
    if "fmix" in recipe.candidates and fmix_bank is None:
        fmix_bank = FMixMaskBank.from_recipe(recipe, pipe.max_batch_size, clock=clock)
    if clock is None:
        clock = fmix_bank.clock if fmix_bank is not None else BatchClock()
    planner = MixPlanner(recipe, pipe.max_batch_size, (height, width), seed=pipeline_seed(pipe),
                         clock=clock, fmix_bank=fmix_bank, enabled=enabled)
    geo = Geometry(recipe.layout, height, width, recipe.channels)
    out_geo = geo if normalize is None else Geometry("CHW", height, width, recipe.channels)
    target_inputs = TargetInputs(recipe, planner.slots, in_operator=kind == "fused")
    if kind == "fused":
        pixels = execute.FusedExecutor(planner, geo, normalize, targets=target_inputs.in_operator)
    else:
        pixels = execute.DaliExecutor(planner, geo, normalize)
    eraser = execute.Eraser(recipe, out_geo)
    maps = PixelMaps(planner, kind, height, width, normalize, masks is not None, source_map)
    plan_nodes, (t_in, x_in, e_in, *m_in) = PlanFeed(planner, [target_inputs, pixels, eraser, *maps.units]).nodes()
    made = None
    if target_inputs.in_operator:  # the fused operator makes the pair targets with the pixels
        mixed, made = pixels.pixels(images, plan_nodes, x_in, targets=target_inputs.operator_inputs(labels))
    else:
        mixed = pixels.pixels(images, plan_nodes, x_in)
    mixed = eraser.apply(mixed, e_in, images if normalize is None else mixed)
    if pixels.casts_back:
        mixed = fn.cast_like(mixed, images)
    elif normalize is not None and normalize.dtype != types.FLOAT:
        mixed = fn.cast(mixed, dtype=normalize.dtype)
    targets, labels_b, labels, shares = target_inputs.build(labels_a, plan_nodes["perm"], t_in, problem, made)
    if targets is not None:
        targets = _on(targets, images)
    extra = maps.build(masks, plan_nodes, m_in, mixed) if masks is not None or source_map else {}
    return MixResult(mixed, targets, labels_a, labels_b, plan_nodes["lam"], plan_nodes["method"], recipe,
                     labels, shares, **extra)


def _unmixed(images, labels_a, recipe: MixRecipe, normalize: Normalization | None, kind: str,
             problem=None, masks=None, source_map: bool = False) -> MixResult:
    """A recipe that never mixes: images only normalised (when asked), one-hot (multi-hot) targets,
    the masks as they are (flipped with the images)."""
    scalar = labels_a if problem is None else problem  # one value per sample
    lam = fn.cast(scalar * 0 + 1, dtype=types.FLOAT)
    if normalize is not None:
        if kind == "dali":  # the fused operator checks the layout itself
            images = execute.check_images(images, Geometry(recipe.layout, None, None, recipe.channels))
        images = execute.normalize_only(images, normalize, kind, layout=recipe.layout,
                                        channels=recipe.channels, dtype=normalize.dtype)
    targets = None
    if recipe.target == "dense":
        targets = _on(unmixed_targets(labels_a, recipe, problem), images)
    method = fn.cast(scalar * 0 + len(recipe.candidates), dtype=types.INT32)
    extra = {}
    if masks is not None or source_map:
        extra = unmoved_maps(masks, None if normalize is None else normalize.mirror, source_map, lam, images)
    return MixResult(images, targets, labels_a, labels_a, lam, method, recipe, **extra)


def _on(node, images):
    """`node` (CPU) moved to the device of `images`."""
    return node.gpu() if getattr(images, "device", "cpu") == "gpu" else node


def _current_pipeline() -> Pipeline:
    pipe = Pipeline.current()
    if pipe is None:
        raise ValueError("random_mix must be called inside a pipeline definition")
    return pipe
