"""Per-pixel maps moved with the pixels: segmentation masks and the source map.

The plan says, for every output pixel, which sample it came from. `PixelMaps` runs the images'
executor (the same kind, so the same code on CPU and GPU) a second time, on (H, W, 1) float32
maps instead of images, with the plan's pixel moves and no blending:

- masks: each sample's class map moved as its pixels move: CutMix, FMix, RICAP and Mosaic
  paste the sources' mask pixels exactly where their image pixels land, ResizeMix shrinks the
  partner's mask by nearest neighbour (the images' resized pastes are nearest neighbour too);
  a blend keeps the sample's own mask (`masks`) and gives the partner's (`masks_b`), weighted
  by `mask_weight` (the blend weight: Mixup's lambda, 1.0 for every other sample);
- erasing (Cutout, Random Erasing) sets the erased pixels of both masks to
  `recipe.ignore_index`: no class is visible there;
- the source map: 0 where an output pixel is the sample's own, 1 where it came from another
  sample (the images' mirror is applied to every map; erasing leaves the map at 0).

Class ids are carried as float32 (exact below 2**24) and delivered as int64.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from nvidia.dali import fn, types

from dali_mix.effects import BLEND
from dali_mix.execute import DaliExecutor, Eraser, FusedExecutor, Geometry, Normalization
from dali_mix.methods import method
from dali_mix.plan import MixPlanner, Plan

__all__ = ["PixelMaps", "check_masks", "unmoved_maps"]


class _Unblended:
    """An executor unit that reads the plan with its blend weights replaced: `partner` False
    keeps the own map (weight 1), True takes the partner's where the plan blends (weight 0)."""

    def __init__(self, unit, partner: bool):
        self.unit = unit
        self.partner = partner
        self.names = unit.names

    def encode(self, plan: Plan) -> dict:
        blended = plan.blend < 1.0
        weight = np.where(blended, 0.0, 1.0) if self.partner else np.ones_like(plan.blend)
        return self.unit.encode(dataclasses.replace(plan, blend=weight.astype(np.float32)))

    def pixels(self, maps, plan_nodes: dict, ins: dict):
        return self.unit.pixels(maps, plan_nodes, ins)


class _Weights:
    """The plan's per-sample values the maps need: `mask_weight` (B,) float32 blend weight of
    the own mask, `index` (B,) float32 each sample's own index (for the source map)."""

    names = ["mask_weight", "index"]

    def encode(self, plan: Plan) -> dict:
        return {"mask_weight": plan.blend.astype(np.float32),
                "index": plan.sources[:, 0].astype(np.float32)}


class PixelMaps:
    """The units of the plan feed that move the masks and make the source map (`units`: none
    when neither is asked for).

    Args:
        planner: the images' planner.
        kind: the images' executor, "fused" or "dali".
        height, width: the images' size, pixels.
        normalize: the images' `Normalization` or None (only its `mirror` is used here).
        masks: whether masks are given. source_map: whether the source map is wanted.
    """

    def __init__(self, planner: MixPlanner, kind: str, height: int, width: int,
                 normalize: Normalization | None, masks: bool, source_map: bool):
        recipe = planner.recipe
        self.recipe = recipe
        self.geo = Geometry("HWC", height, width, 1)
        self.mirror = None if normalize is None else normalize.mirror
        self.masks, self.source_map = bool(masks), bool(source_map)
        executor = FusedExecutor if kind == "fused" else DaliExecutor
        blends = any(BLEND in method(m).effects for m in recipe.candidates)
        self.own = _Unblended(executor(planner, self.geo, None), partner=False)
        self.partner = _Unblended(executor(planner, self.geo, None), partner=True) if masks and blends else None
        self.eraser = Eraser(recipe, self.geo, fill=float(recipe.ignore_index)) if masks else None
        self.weights = _Weights()
        # no maps asked for: no unit, so the plan feed encodes nothing for them
        units = (self.own, self.partner, self.eraser, self.weights) if masks or source_map else ()
        self.units = [u for u in units if u is not None]

    def build(self, masks, plan_nodes: dict, ins: list[dict], like) -> dict:
        """The maps' DataNodes, on the device of `like` (the images): {"masks", "masks_b",
        "mask_weight"} (with masks) and {"source"} (with the source map). masks: (H, W) or
        (H, W, 1) integer class maps per sample, on the device the images' executor runs on;
        ins: the inputs of `units`, in order, from the plan feed."""
        ins = dict(zip(map(id, self.units), ins))
        out = {}
        if self.masks:
            maps = fn.cast(check_masks(masks, self.geo.height, self.geo.width), dtype=types.FLOAT)
            own = self._finish(self._moved(self.own, maps, plan_nodes, ins), ins)
            partner = own if self.partner is None else \
                self._finish(self._moved(self.partner, maps, plan_nodes, ins), ins)
            out["masks"] = self._as_class_map(own)
            out["masks_b"] = self._as_class_map(partner)
            out["mask_weight"] = ins[id(self.weights)]["mask_weight"]
        if self.source_map:
            index = ins[id(self.weights)]["index"]
            base = fn.reshape(fn.full(index, shape=[self.geo.height, self.geo.width, 1]), layout="HWC")
            if getattr(masks if self.masks else like, "device", "cpu") == "gpu":
                base = base.gpu()
            moved = self._flip(self._moved(self.own, base, plan_nodes, ins))
            # as integers: DALI's blend adds a partner's value times 1e-30 where it keeps the own
            moved, own = fn.cast(moved, dtype=types.INT32), fn.cast(index, dtype=types.INT32)
            own = own.gpu() if moved.device == "gpu" else own
            out["source"] = fn.reshape(fn.cast(moved != own, dtype=types.UINT8),
                                       shape=[self.geo.height, self.geo.width], layout="HW")
        on_gpu = getattr(like, "device", "cpu") == "gpu"
        return {k: v.gpu() if on_gpu and getattr(v, "device", "cpu") != "gpu" else v for k, v in out.items()}

    def _moved(self, unit: _Unblended, maps, plan_nodes: dict, ins: dict):
        return fn.cast(unit.pixels(maps, plan_nodes, ins[id(unit)]), dtype=types.FLOAT)

    def _flip(self, maps):
        return maps if self.mirror is None else fn.flip(maps, horizontal=self.mirror)

    def _finish(self, maps, ins: dict):
        """Flipped as the images, then the erased pixels set to ignore_index."""
        maps = self._flip(maps)
        return self.eraser.apply(maps, ins[id(self.eraser)], maps)

    def _as_class_map(self, maps):
        return fn.reshape(fn.cast(maps, dtype=types.INT64), shape=[self.geo.height, self.geo.width], layout="HW")


def check_masks(masks, height: int | None = None, width: int | None = None):
    """`masks` as (H, W, 1) "HWC" maps after a per-batch check that every mask is (H, W) or
    (H, W, 1) with the images' H and W (any when None): a mismatch raises ValueError naming
    the mask, its shape and the images' size (a transposed or resized mask must never be read
    as another one of the same volume)."""
    def check(shapes):
        out = []
        for i, shape in enumerate(shapes):
            shape = tuple(int(v) for v in shape)
            h, w = shape[:2] if height is None else (height, width)
            if shape not in ((h, w), (h, w, 1)):
                size = "" if height is None else f" but the images are ({height}, {width})"
                raise ValueError(f"random_mix: mask {i} has shape {shape}{size}: masks must be (H, W) "
                                 "or (H, W, 1) class maps of the images' size, after the same crop and resize")
            out.append(np.array([h, w, 1], np.int64))
        return out

    shapes = fn.python_function(masks.shape(dtype=types.INT64, device="cpu"), function=check,
                                batch_processing=True, num_outputs=1)
    return fn.reshape(masks, shape=shapes, layout="HWC")


def unmoved_maps(masks, mirror, source_map: bool, ones, like) -> dict:
    """The maps of a recipe that never mixes, on the device of `like`: the masks as they are
    ((H, W) int64, flipped by `mirror` when not None), masks_b the same, mask_weight `ones`
    (float32 1.0 per sample), the source map all 0 (without masks: not available, raises)."""
    if masks is None:
        raise ValueError("random_mix: source_map=True with a recipe that never mixes needs masks "
                         "(the map would be all 0: every pixel is the sample's own)")
    maps = check_masks(masks)
    if mirror is not None:
        maps = fn.flip(maps, horizontal=mirror)
    maps = fn.squeeze(fn.cast(maps, dtype=types.INT64), axes=[2])
    out = {"masks": maps, "masks_b": maps, "mask_weight": ones}
    if source_map:
        out["source"] = fn.cast(maps * 0, dtype=types.UINT8)
    on_gpu = getattr(like, "device", "cpu") == "gpu"
    return {k: v.gpu() if on_gpu and getattr(v, "device", "cpu") != "gpu" else v for k, v in out.items()}
