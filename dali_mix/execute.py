"""The two executors of a `dali_mix.plan.Plan`: the fused CPU operator, and DALI's own operators.

Each is one unit (`FusedExecutor`, `DaliExecutor`) with `names`, `encode(plan)` (its operators'
inputs, numpy per sample, fed by `dali_mix.feed.PlanFeed`) and `pixels(images, plan_nodes,
ins)` (the graph); `Eraser` is the unit of the erasing steps after either. They implement the
effect kinds of `dali_mix.effects` once, for every method of the table. Both take the images as
the user has them and write the mixed batch; neither needs DALI conditionals, so the same code
runs in a `@pipeline_def` and in a class-based `Pipeline`.

- "dali": `fn.multi_paste` (the same-size paste rows from their source samples: CutMix boxes,
  RICAP and Mosaic tiles, and FMix masks as runs of partner pixels; then the ResizeMix
  patches from `fn.resize`), then Mixup fused with the normalisation as the sum of two
  `fn.crop_mirror_normalize` calls with per-sample std (std / lam on the own image,
  std / (1 - lam) on the partner, which is cropped to 1x1 and broadcast for the samples that
  are not blended). This graph is the same on the CPU and the GPU: only the images' device
  differs (every plan input is a CPU argument; the noise of Random Erasing is moved with
  `.gpu()` like the targets).
- "fused": `dali_mix.native`'s C++ operator (CPU only) mixes and normalises each output row in
  one pass.

Erasing (Cutout, Random Erasing) runs after either executor on the output, with `fn.erase`
for constant fills and `fn.multi_paste` of `fn.random` noise for random fills.

CHW images are pasted as HWC images of shape (C*H, W, 1) (a free reshape; each rectangle
becomes C rectangles, one per channel plane), since `fn.multi_paste` takes HWC only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from nvidia.dali import fn, types
from nvidia.dali.pipeline import do_not_convert

from dali_mix import native
from dali_mix.recipe import MixRecipe
from dali_mix.effects import BLEND, CUTOUT, MASK, PASTE, RANDOM_ERASING
from dali_mix.labels import target_weights
from dali_mix.methods import ERASES, method
from dali_mix.plan import MixPlanner, Plan

EXECUTORS = ("auto", "fused", "dali")

DENSE_MASK_PIXELS = 8192
"""FMix masks of at most this many pixels go into every sample's packed plan for the fused
operator (one batch array: B masks copied, zero ranks for the samples without FMix); larger
ones into the FMix samples' plans only (per-sample arrays). The external source pays a few
microseconds per array: a batch array is cheaper up to about this size (spectrograms of
40 x 101, CIFAR's 32 x 32), per-sample arrays beyond."""



#: ImageNet's per-channel mean and std in pixel units (0-255), RGB: torchvision's
#: (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225) times 255, for `Normalization`.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class Normalization(NamedTuple):
    """Normalisation done inside `random_mix` (replacing your `fn.crop_mirror_normalize`):
    per-channel mean and std in pixel units, the per-sample horizontal flip (a 0/1 DataNode or
    0), the output dtype (types.FLOAT or types.FLOAT16); the output layout is CHW."""

    mean: tuple
    std: tuple
    mirror: object = 0
    dtype: object = types.FLOAT

    def value_range(self, channels: int) -> tuple[float, float]:
        """(lowest, highest) value the normalised output can hold, over all `channels`, for
        uint8 input (pixels 0-255): (0 - mean) / std to (255 - mean) / std."""
        mean, std = per_channel(self.mean, channels), per_channel(self.std, channels)
        return (min((0.0 - m) / s for m, s in zip(mean, std)), max((255.0 - m) / s for m, s in zip(mean, std)))


@dataclass(frozen=True)
class Geometry:
    """What the graph is built for: layout ("HWC" or "CHW"), H, W, C of every image (H and W
    None where any size is allowed: `check_images` of a recipe that never mixes)."""

    layout: str
    height: int | None
    width: int | None
    channels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        if self.layout == "HWC":
            return self.height, self.width, self.channels
        return self.channels, self.height, self.width

    def planes(self, boxes: np.ndarray, src_height: int | None = None) -> np.ndarray:
        """Rectangles (n, 4) (y, x, h, w) in pixels -> the int32 rows that paste them in this
        layout's paste view: (n, 4) as they are for HWC; for CHW (C * n, 4), C rows each in
        channel-major order, plane c offset by c * H (c * src_height, a number or (n,) per
        rectangle, for a source of another height)."""
        boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
        if self.layout == "HWC":
            return boxes
        c = np.arange(self.channels, dtype=np.int32)[:, None, None]
        out = np.broadcast_to(boxes, (self.channels,) + boxes.shape).copy()
        out[..., 0] += c[..., 0] * np.asarray(self.height if src_height is None else src_height, np.int32)
        return out.reshape(-1, 4)


def resolve_executor(executor: str, images) -> str:
    """"fused" or "dali" for `executor` ("auto": fused for CPU images when the operator can be
    built, else DALI's operators, with one warning naming the cause)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if executor == "dali":
        return "dali"
    return "fused" if native.use(True if executor == "fused" else None, images) else "dali"


# ---- the executors: each one unit that encodes a Plan into its operators' inputs and runs them --

class FusedExecutor:
    """The fused CPU operator (`dali_mix.native.mix`): `encode(plan)` gives its one plan input
    (`names`: "plan", each sample's packed plan, `dali_mix.native.pack_plan`), `pixels` runs it.

    Args: planner (for the FMix bank and the label smoothing), geo (the input images'
    geometry), normalize (None: mix only, the output keeps the input's layout and dtype),
    targets (the operator also makes the pair targets: the plan carries their weights)."""

    kind = "fused"

    def __init__(self, planner: MixPlanner, geo: Geometry, normalize: Normalization | None,
                 targets: bool = False):
        self.planner = planner
        self.geo = geo
        self.normalize = normalize
        self.targets = bool(targets)
        self.names = ["plan"]
        self.casts_back = False  # its output already has the input's dtype

    def encode(self, plan: Plan) -> dict:
        return {"plan": self._fused(plan)}

    def pixels(self, images, plan_nodes: dict, ins: dict, targets: dict | None = None):
        """The mixed images: normalised CHW float32 with `normalize`, else the input's layout
        and dtype; the operator checks the images' layout, size and channels itself. With
        `targets` (`TargetInputs.operator_inputs`): (the images, the (N, C) float32 pair
        targets the operator makes with them)."""
        geo, norm = self.geo, self.normalize
        kw = {} if norm is None else dict(mean=norm.mean, std=norm.std, mirror=norm.mirror, dtype=types.FLOAT)
        return native.mix(images, ins["plan"], layout=geo.layout, image_size=(geo.height, geo.width),
                          channels=geo.channels, **kw, **(targets or {}))

    def _fused(self, plan: Plan):
        """The packed plans (`dali_mix.native.pack_plan`): the paste rows with each row's slot
        replaced by its source sample (padding rows paste nothing), the FMix samples' bank rank
        images and (k, flip_y, flip_x), the pair target weights with `targets`. For masks of at
        most `DENSE_MASK_PIXELS` pixels every sample of a plan with FMix carries mask words (one
        (B, L) array), else only the FMix samples (a list of per-sample arrays)."""
        rows = plan.rows.copy()
        if rows.size:
            rows[:, :, 0] = np.take_along_axis(plan.sources, rows[:, :, 0], axis=1)
        weights = None
        if self.targets:
            weights = target_weights(plan.shares, self.planner.recipe.label_smoothing)[:, :, 0]
        used = plan.fmix[:, 0] >= 0
        H, W = self.geo.height, self.geo.width
        bank = self.planner.fmix_bank.bank(plan.epoch) if used.any() else None
        return native.pack_plan(plan.perm, plan.blend, rows, plan.fmix[:, 1:], height=H, width=W, ranks=bank,
                                mask_of=plan.fmix[:, 0], dense=H * W <= DENSE_MASK_PIXELS, weights=weights)


class DaliExecutor:
    """DALI's own operators (the graph GPU users get, also runnable on the CPU); see the module
    docstring. `encode(plan)` gives their inputs (`names`): the multi_paste rows of the
    same-size pastes and the FMix runs, the resized pastes' sizes and rows, Mixup's per-sample
    std and partner crop; `pixels` builds the graph. Which parts exist follows the effect kinds
    of the recipe's candidates (`dali_mix.methods`)."""

    kind = "dali"

    def __init__(self, planner: MixPlanner, geo: Geometry, normalize: Normalization | None):
        self.planner = planner
        self.geo = geo
        self.normalize = normalize
        self.std = np.asarray(per_channel(1.0 if normalize is None else normalize.std, geo.channels),
                              np.float32)
        names = planner.recipe.candidates
        pastes = [m for m in map(method, names) if PASTE in m.effects]
        used = {e for m in names for e in method(m).effects}
        # the graph's parts: the same-size pastes and the masks as multi_paste rows, the
        # resized pastes (whole partners shrunk) through fn.resize, the blend
        self.paste = MASK in used or any(not m.resized for m in pastes)
        self.resize = any(m.resized for m in pastes)
        self.blend = BLEND in used
        self.casts_back = normalize is None and self.blend  # Mixup computes in float32
        self.names = []
        if self.paste:
            self.names += ["paste_ids", "paste_from", "paste_at", "paste_shape"]
        if self.resize:
            self.names += ["patch_size", "patch_in", "patch_out", "patch_shape"]
        if self.blend:
            self.names += ["std_a", "std_b", "crop_h", "crop_w"]

    def encode(self, plan: Plan) -> dict:
        out = {}
        if self.paste:
            out.update(self._paste_rows(plan))
        if self.resize:
            out.update(self._patch_rows(plan))
        if self.blend:
            out.update(self._blend(plan))
        return out

    def pixels(self, images, plan_nodes: dict, ins: dict):
        """The mixed images: normalised CHW float32 with `normalize`, else the input's layout
        and dtype, but float32 when Mixup is a candidate (`casts_back`: `random_mix` casts it
        back, rounding uint8 to the nearest)."""
        geo, normalize = self.geo, self.normalize
        images = check_images(images, geo)
        canvas = images
        if self.paste:
            canvas = _paste(images, geo, [], in_ids=ins["paste_ids"], in_anchors=ins["paste_from"],
                            out_anchors=ins["paste_at"], shapes=ins["paste_shape"])
        partner = None
        if self.resize or self.blend:
            partner = fn.permute_batch(images, indices=plan_nodes["perm"])
        if self.resize:
            shrunk = fn.resize(partner, size=ins["patch_size"], interp_type=types.INTERP_NN, antialias=False)
            canvas = _paste(canvas, geo, [_view(shrunk, geo)] * _copies(geo), in_anchors=ins["patch_in"],
                            out_anchors=ins["patch_out"], shapes=ins["patch_shape"])
        if not self.blend:
            return canvas if normalize is None else normalize_only(canvas, normalize, "dali", layout=geo.layout,
                                                                      channels=geo.channels)
        mean = per_channel(0.0 if normalize is None else normalize.mean, geo.channels)
        common = dict(mean=mean, dtype=types.FLOAT,
                      output_layout="CHW" if normalize is not None else geo.layout,
                      mirror=0 if normalize is None else normalize.mirror)
        return (fn.crop_mirror_normalize(canvas, std=ins["std_a"], **common)
                + fn.crop_mirror_normalize(partner, std=ins["std_b"], crop_h=ins["crop_h"],
                                           crop_w=ins["crop_w"], **common))

    def _paste_rows(self, plan: Plan) -> dict:
        """Per sample: row 0 copies the sample itself, then its same-size paste rows (from
        their source samples) and its FMix runs (from the partner, at the same place): ids (R,)
        int32, source anchors and output anchors (R, 2) int32, shapes (R, 2) int32."""
        B = len(plan.perm)
        fmix_owner, fmix_rects = fmix_runs(self.planner, plan, per_sample=False)
        live = (plan.rows[:, :, 7] > 0) & (plan.rows[:, :, 8] > 0)
        same = live & (plan.rows[:, :, 3] == plan.rows[:, :, 7]) & (plan.rows[:, :, 4] == plan.rows[:, :, 8])
        row_owner, k = np.nonzero(same)
        picked = plan.rows[row_owner, k]
        owner_all = np.concatenate([row_owner, fmix_owner])
        src_ids = np.concatenate([plan.sources[row_owner, picked[:, 0]], plan.perm[fmix_owner]])
        dst = np.concatenate([picked[:, 5:9], fmix_rects])
        src = np.concatenate([np.concatenate([picked[:, 1:3], picked[:, 7:9]], 1), fmix_rects])
        owner, rows, pasted, index = paste_rows(self.geo, owner_all, dst, B, with_index=True)
        _, src_rows, _ = paste_rows(self.geo, owner_all, src, B)
        split = _splitter(owner, B)
        own = plan.sources[owner, 0]  # the whole-image row copies the sample itself (slot 0)
        ids = src_ids[index] if src_ids.size else own  # no rectangle: whole-image rows only
        return {"paste_ids": split(np.where(pasted, ids, own).astype(np.int32)),
                "paste_from": split(src_rows[:, :2]), "paste_at": split(rows[:, :2]),
                "paste_shape": split(rows[:, 2:])}

    def _patch_rows(self, plan: Plan) -> dict:
        """Resized pastes (ResizeMix: the whole partner shrunk): the partner's target size
        (B, 2) float32 ((1, 1) unused) and per sample the rows pasting the canvas, then the
        shrunk partner at its corner."""
        r = plan.rows
        resized = (r[:, :, 7] > 0) & (r[:, :, 8] > 0) & ((r[:, :, 3] != r[:, :, 7]) | (r[:, :, 4] != r[:, :, 8]))
        if np.any(resized.sum(1) > 1) or np.any(r[resized][:, 0] != 1) or np.any(
                r[resized][:, 1:5] != (0, 0, self.geo.height, self.geo.width)):
            raise ValueError("DALI's operators resize the whole partner only: at most one resized "
                             "paste row per sample, from slot 1's whole image")
        patch = np.zeros((len(r), 4), np.int32)
        owner, k = np.nonzero(resized)
        patch[owner] = r[owner, k, 5:9]
        size = np.where((patch[:, 2] > 0)[:, None], patch[:, 2:], 1).astype(np.float32)
        ins, outs, shapes = _pasted_whole(self.geo, patch)
        return {"patch_size": size, "patch_in": ins, "patch_out": outs, "patch_shape": shapes}

    def _blend(self, plan: Plan) -> dict:
        """Mixup as two normalisations: std / w on the own image, std / (1 - w) on the partner.
        A weight of 0 gives std * 1e30 (DALI turns an infinite std into NaN), so that image adds
        at most 1e-27 of its normalised value; outside Mixup (w = 1) the partner is also cropped
        to one row (broadcast over the image), which costs next to nothing. Not to 1x1: a
        one-channel 1x1 crop has volume 1, and DALI 2.4's `+`, broadcasting it in a batch that
        also holds whole images, adds wrong values (other pixels, or garbage near 1e30)."""
        w = plan.blend.astype(np.float64)[:, None]
        mixed = plan.blend < 1.0
        std_a = (self.std / np.maximum(w, 1e-30)).astype(np.float32)
        std_b = (self.std / np.maximum(1.0 - w, 1e-30)).astype(np.float32)
        return {"std_a": std_a, "std_b": std_b,
                "crop_h": np.where(mixed, self.geo.height, 1).astype(np.float32),
                "crop_w": np.full(len(mixed), self.geo.width, np.float32)}


class Eraser:
    """Cutout and Random Erasing after either executor, on the output (`out_geo`): `encode`
    gives the rectangles' inputs (`names`), `apply` erases them (`fn.erase` for constant
    fills, `fn.multi_paste` of `fn.random` noise for random ones). `fill`: one value for every
    erased pixel instead of the recipe's fills (segmentation masks: `ignore_index`)."""

    def __init__(self, recipe: MixRecipe, out_geo: Geometry, fill: float | None = None):
        self.recipe = recipe
        self.out_geo = out_geo
        self.fill = fill
        erasing = set(recipe.after) | {m for m in recipe.candidates if method(m).role == ERASES}
        random_fill = recipe.erasing_fill == "random" and fill is None
        self.erase_random = "random_erasing" in erasing and random_fill
        self.erase_cut = "cutout" in erasing
        self.erase_fill = "random_erasing" in erasing and not random_fill
        self.names = []
        if self.erase_cut:
            self.names += ["cut_anchor", "cut_shape"]
        if self.erase_fill:
            self.names += ["fill_anchor", "fill_shape"]
        if self.erase_random:
            self.names += ["noise_shape", "noise_in", "noise_out", "noise_size"]

    def encode(self, plan: Plan) -> dict:
        out = {}
        if self.erase_cut or self.erase_fill:
            out.update(self._erase_constant(plan))
        if self.erase_random:
            out.update(self._erase_random(plan))
        return out

    def apply(self, images, ins: dict, values_like):
        """Cutout holes (fill 0: the mean colour once normalised) and Random Erasing (constant
        `erasing_fill`, or random values) over the mixed images of layout `out_geo.layout`.
        Random values follow the dtype of `values_like` (the input images without `normalize`,
        the output with it): uniform pixel values 0-255 for integer images, N(0, 1) for float
        (normalised) ones; cast like `images`."""
        out_geo, recipe = self.out_geo, self.recipe
        if self.erase_cut:
            images = fn.erase(images, anchor=ins["cut_anchor"], shape=ins["cut_shape"], axis_names="HW",
                              fill_value=0.0 if self.fill is None else self.fill)
        if self.erase_fill:
            images = fn.erase(images, anchor=ins["fill_anchor"], shape=ins["fill_shape"], axis_names="HW",
                              fill_value=float(recipe.erasing_fill) if self.fill is None else self.fill)
        if self.erase_random:
            normal = fn.random.normal(shape=ins["noise_shape"])
            uniform = fn.random.uniform(range=[-0.5, 255.5], shape=ins["noise_shape"])
            if images.device == "gpu":
                normal, uniform = normal.gpu(), uniform.gpu()
            # 0.5 cast like an integer image rounds to 1, like a float image stays 0.5: pixel = 1 / 0
            pixel = fn.cast(fn.cast_like(normal * 0.0 + 0.5, values_like), dtype=types.FLOAT) * 2.0 - 1.0
            noise = fn.reshape(pixel * uniform + (1.0 - pixel) * normal, layout="HWC")
            images = _paste(images, out_geo, [fn.cast_like(noise, images)] * _copies(out_geo),
                            in_anchors=ins["noise_in"], out_anchors=ins["noise_out"], shapes=ins["noise_size"])
        return images

    def _erase_constant(self, plan: Plan) -> dict:
        """`fn.erase` regions, per sample flat (y0, x0, y1, x1, ...) anchors and (h0, w0, ...)
        shapes, float32: Cutout holes ("cut_*") and constant-fill Random Erasing ("fill_*")."""
        out = {}
        for name, kind in (("cut", CUTOUT), ("fill", RANDOM_ERASING)):
            rows = [e[e[:, 4] == kind] for e in plan.erase]
            out[f"{name}_anchor"] = [r[:, :2].reshape(-1).astype(np.float32) for r in rows]
            out[f"{name}_shape"] = [r[:, 2:4].reshape(-1).astype(np.float32) for r in rows]
        return out

    def _erase_random(self, plan: Plan) -> dict:
        """Random-fill Random Erasing (at most one rectangle per sample): the noise tensor's
        shape ((1, 1) when unused) and the rows pasting it over the output (row 0: the output
        itself; then the noise, C rows for CHW)."""
        geo = self.out_geo
        B = len(plan.perm)
        rect = np.zeros((B, 4), np.int32)
        for i, e in enumerate(plan.erase):
            rnd = e[e[:, 4] == RANDOM_ERASING]
            if len(rnd):
                rect[i] = rnd[0, :4]
        nh, nw = np.maximum(rect[:, 2], 1), np.maximum(rect[:, 3], 1)
        C = np.full(B, geo.channels)
        shapes = (np.stack([nh, nw, C], 1) if geo.layout == "HWC"
                  else np.stack([C * nh, nw, np.ones(B, np.int64)], 1)).astype(np.int32)
        ins, outs, sizes = _pasted_whole(geo, rect)
        return {"noise_shape": shapes, "noise_in": ins, "noise_out": outs, "noise_size": sizes}


def paste_rows(geo: Geometry, owner: np.ndarray, rects: np.ndarray, batch: int,
               src_height: np.ndarray | None = None, with_index: bool = False):
    """The `fn.multi_paste` rows of a batch of `batch` samples of geometry `geo`: per sample a
    row copying the whole image (of the paste view), then its rectangles (n, 4) (y, x, h, w)
    in pixels, owned by samples `owner` (n,), in the paste view (C rows each for CHW, plane c
    offset by c * H, or c * `src_height` (n,) for a source of another height). Returns, sorted
    by sample (a stable sort: every sample's rectangles keep their order after its whole-image
    row): owner (m,) int64, rows (m, 4) int32, pasted (m,) bool (False for the whole-image row);
    with `with_index` also index (m,) int64, the rectangle each row comes from (0 for the
    whole-image rows)."""
    rects = geo.planes(rects, src_height)
    full_rows = geo.height if geo.layout == "HWC" else geo.channels * geo.height
    full = np.broadcast_to(np.array([0, 0, full_rows, geo.width], np.int32), (batch, 4))
    owner = np.concatenate([np.arange(batch), np.tile(np.asarray(owner, np.int64), _copies(geo))])
    rows = np.concatenate([full, rects])
    pasted = np.arange(len(rows)) >= batch
    order = np.argsort(owner, kind="stable")
    if with_index:
        index = np.concatenate([np.zeros(batch, np.int64), np.tile(np.arange(len(rects) // _copies(geo)), _copies(geo))])
        return owner[order], rows[order], pasted[order], index[order]
    return owner[order], rows[order], pasted[order]


def _pasted_whole(geo: Geometry, rects: np.ndarray) -> tuple:
    """The rows pasting, over each sample's canvas, a whole second image of the size of its
    rectangle (B, 4) (y, x, h, w) at (y, x) (h = 0 or w = 0: nothing; that image is then 1x1):
    in anchors, out anchors and shapes, (B, R, 2) int32 each (R = 1 + C for CHW, 2 for HWC)."""
    B = len(rects)
    h, w = rects[:, 2], rects[:, 3]
    corner = np.stack([np.zeros_like(h), np.zeros_like(w), h, w], 1)
    _, dst, _ = paste_rows(geo, np.arange(B), rects, B)
    _, src, _ = paste_rows(geo, np.arange(B), corner, B, src_height=np.maximum(h, 1))
    return _per_sample(src[:, :2], B), _per_sample(dst[:, :2], B), _per_sample(dst[:, 2:], B)


def _per_sample(rows: np.ndarray, batch: int) -> np.ndarray:
    """Rows sorted by sample, the same number per sample -> one (batch, R, k) int32 array (an
    external source feeds one array much faster than a list of per-sample arrays)."""
    return np.ascontiguousarray(rows, np.int32).reshape(batch, -1, rows.shape[1])


def _splitter(owner: np.ndarray, batch: int):
    """A function splitting an array whose rows follow `owner` (sorted sample indices) into
    the `batch` per-sample arrays (contiguous) the external source returns."""
    cuts = np.cumsum(np.bincount(owner, minlength=batch))[:-1]
    return lambda a: np.split(np.ascontiguousarray(a), cuts)


def fmix_runs(planner: MixPlanner, plan: Plan, per_sample: bool = True):
    """The partner pixels of every FMix sample's mask as rectangles: B arrays (R_i, 4) int32
    (y, x, h, w), (0, 4) without FMix; with `per_sample=False` one array (R, 4) int32 and its
    owners (R,) int64, sorted by sample. Each row of the mask is split into horizontal runs of
    partner pixels, and a run repeated in the next rows is stacked into one taller rectangle
    (about half as many rectangles as runs). The mask keeps the own pixel where the bank's rank
    image is below k (mask mean exactly k / N), flipped as planned."""
    B, H, W = len(plan.perm), planner.height, planner.width
    idx = np.flatnonzero(plan.fmix[:, 0] >= 0)
    if not idx.size:
        rects = np.zeros((0, 4), np.int32)
        return [rects] * B if per_sample else (np.zeros(0, np.int64), rects)
    entry, k, flips = plan.fmix[idx, 0], plan.fmix[idx, 1], plan.fmix[idx, 2:].astype(bool)
    ranks = planner.fmix_bank.bank(plan.epoch)[entry, :, :, 0]
    padded = np.ones((idx.size, H, W + 2), bool)  # own pixels, with an own pixel on both sides
    np.less(ranks, k[:, None, None], out=padded[:, :, 1:-1])
    edges = np.flatnonzero(padded[:, :, 1:] != padded[:, :, :-1])
    start, end = edges[0::2], edges[1::2]  # partner runs open and close in pairs per row
    j, rest = np.divmod(start, H * (W + 1))
    y, x = np.divmod(rest, W + 1)
    j, y, x, h, w = _stack_runs(j, y, x, end - start, H, W)
    y = np.where(flips[j, 0], H - y - h, y)
    x = np.where(flips[j, 1], W - x - w, x)
    rects = np.stack([y, x, h, w], 1).astype(np.int32)
    owner = idx[j].astype(np.int64)
    return _splitter(owner, B)(rects) if per_sample else (owner, rects)


def _stack_runs(sample, y, x, w, height: int, width: int):
    """Merge runs (sample, row y, column x, width w) that repeat in consecutive rows of images
    `height` x `width` into rectangles: (sample, y, x, h, w) arrays, sorted by sample."""
    # one sortable key in (sample, x, w, y) order; y + 1 never reaches the next (x, w)
    key = ((sample * (width + 1) + x) * (width + 1) + w) * (height + 1) + y
    order = np.argsort(key, kind="stable")
    sample, y, x, w = sample[order], y[order], x[order], w[order]
    new = np.ones(sample.size, bool)
    new[1:] = np.diff(key[order]) != 1  # not the same run one row further down
    first = np.flatnonzero(new)
    h = np.diff(np.append(first, sample.size))
    return sample[first], y[first], x[first], h, w[first]


# ---- the graphs -------------------------------------------------------------------------------

@do_not_convert  # the check must stay plain Python in pipelines with conditionals (AutoGraph)
def check_images(images, geo: Geometry):
    """`images` after a per-batch check that every image has `geo`'s layout and shape (the plan
    is drawn for that size; any H and W where `geo` has None): a mismatch raises ValueError
    naming the expected and the actual value. The images come back through `fn.reshape` to the shapes the check returns (no copy),
    so every operator that moves pixels depends on the check: none runs before it has passed,
    and it cannot be pruned. The check runs on the CPU: for GPU images it reads their shape (a
    CPU value), not their layout (a GPU value), and names the layout the shape has."""
    expected_shape = geo.shape
    other = "CHW" if geo.layout == "HWC" else "HWC"
    other_shape = Geometry(other, geo.height, geo.width, geo.channels).shape
    read_layout = images.device != "gpu"

    def fits(shape, expected):
        return len(shape) == len(expected) and all(e is None or v == e for v, e in zip(shape, expected))

    def check(shapes, layouts=None):
        for i, shape in enumerate(shapes):
            shape = tuple(int(v) for v in shape)
            layout = None
            if layouts is not None:
                layout = bytes(np.asarray(layouts[i], np.uint8)).decode() or "(none)"
            elif fits(shape, other_shape) and not fits(shape, expected_shape):
                layout = other
            if layout is not None and layout != geo.layout:
                raise ValueError(
                    f"random_mix: the images have layout {layout} but the recipe says "
                    f"{geo.layout} (MixRecipe.layout; decoders and fn.resize give HWC, "
                    f"fn.crop_mirror_normalize gives CHW)")
            if not fits(shape, expected_shape):
                if geo.height is None:
                    raise ValueError(
                        f"random_mix: image {i} has shape {shape} ({geo.layout}) but "
                        f"MixRecipe.channels is {geo.channels}")
                raise ValueError(
                    f"random_mix: image {i} has shape {shape} ({geo.layout}) but the plan is "
                    f"drawn for {expected_shape}: image_size=({geo.height}, {geo.width}) and "
                    f"MixRecipe.channels={geo.channels} must match every image")
        return shapes

    inputs = [images.shape(dtype=types.INT64, device="cpu")]
    if read_layout:
        inputs.append(fn.get_property(images, key="layout"))
    shapes = fn.python_function(*inputs, function=check, batch_processing=True, num_outputs=1)
    return fn.reshape(images, shape=shapes)


def per_channel(values, channels: int) -> list[float]:
    """One value or one per channel -> a list of `channels` floats (a mean or std)."""
    return [float(v) for v in np.broadcast_to(np.atleast_1d(np.asarray(values, np.float64)), (channels,))]


def _copies(geo: Geometry) -> int:
    """Rows pasted from the second input per rectangle: 1 for HWC, C for CHW (one per plane)."""
    return 1 if geo.layout == "HWC" else geo.channels


def _view(images, geo: Geometry):
    """HWC images as they are; CHW images as HWC (C*H, W, 1) (a reshape, no copy)."""
    if geo.layout == "HWC":
        return images
    shape = images.shape(dtype=types.INT32, device="cpu")
    return fn.reshape(images, shape=fn.stack(shape[0] * shape[1], shape[2], shape[0] * 0 + 1),
                      layout="HWC")


def _paste(canvas, geo: Geometry, sources: list, **rows):
    """`fn.multi_paste` of `sources` (already in paste view) onto `canvas` (of layout
    `geo.layout`), row 0 being the canvas itself; returns the canvas's layout."""
    rows_h = geo.height if geo.layout == "HWC" else geo.channels * geo.height
    out = fn.multi_paste(_view(canvas, geo), *sources, output_size=[rows_h, geo.width], **rows)
    if geo.layout == "HWC":
        return out
    return fn.reshape(out, shape=list(geo.shape), layout="CHW")


def normalize_only(images, norm: Normalization, executor: str, *, layout: str, channels: int,
                   dtype=types.FLOAT):
    """Images of `layout` with `channels` channels (any size) -> normalised, flipped CHW
    `dtype`, without a plan: the fused operator (which checks the images' layout against
    `layout`) or `fn.crop_mirror_normalize`."""
    if executor == "fused":
        return native.normalize(images, mean=norm.mean, std=norm.std, mirror=norm.mirror,
                                dtype=dtype, layout=layout, channels=channels)
    return fn.crop_mirror_normalize(images, mean=per_channel(norm.mean, channels),
                                    std=per_channel(norm.std, channels), mirror=norm.mirror,
                                    dtype=dtype, output_layout="CHW")
