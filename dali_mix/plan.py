"""Every random parameter of a RandomMix batch, drawn in one vectorised numpy step.

Drawing the per-sample boxes, scales and thresholds with `fn.random.*` and DALI arithmetic
takes about 60 small operators, and on the CPU each costs 0.1-0.3 ms per batch whatever it
computes (see benchmarks/RESULTS.md): together more than the mixing itself. When the image
size is fixed and known (the built-in pipelines, or `random_mix(..., image_size=...)`), a
`MixPlanner` instead draws them for the whole batch at once, as one external source
(`batch=True, batch_info=True`), and the graph keeps only the operators that move pixels.

The draws follow the same definitions as the graph mixers in `dali_mix.mixers` (the official
code's): CutMix boxes as clovaai `rand_bbox` (or timm's `cutmix_minmax`), ResizeMix scales
tau ~ U(scale) with the patch fully inside, FMix thresholds k = floor(lam0 * N + u) over the
bank's pixel ranks, Mixup lam ~ Beta(alpha, alpha). A plan is a pure function of
(seed, epoch, step) through a `BatchClock`, so runs are reproducible and a resumed run (DALI
restores the run counter from its checkpoint) gets the same batches.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from dali_mix.config import PAIR_METHODS, MixRecipe
from dali_mix.masks import FMixMaskBank
from dali_mix.schedule import BatchClock

PLANNED_METHODS = PAIR_METHODS
"""Methods a `MixPlanner` can draw for (the four that pair two samples); recipes with cutout or
random_erasing use the general path."""

# a plan has outputs a given graph may not use (lam without explain=True, w_a/w_b with sparse
# targets); producing them costs microseconds, so DALI's hint about unused outputs is noise here
warnings.filterwarnings("ignore", message=r"The external source node '<dali_mix\.plan\.MixPlanner")

_SALT = 0x6D6978  # separates the plan's random stream from the FMix bank's index stream


def can_plan(recipe: MixRecipe, image_size, fmix_bank: FMixMaskBank | None = None) -> bool:
    """True when `random_mix` can use a `MixPlanner` for `recipe` on images of `image_size`.

    Needs a known (H, W), HWC images (`fn.multi_paste`'s layout), candidates among
    `PLANNED_METHODS`, and, with FMix, a mask bank of the image size (no resize in the graph).
    """
    if image_size is None or recipe.layout != "HWC":
        return False
    if any(m not in PLANNED_METHODS for m in recipe.candidates):
        return False
    if "fmix" in recipe.candidates and fmix_bank is not None:
        return tuple(fmix_bank.size) == _hw(image_size)
    return True


def _hw(image_size) -> tuple[int, int]:
    """(H, W) from an int side or an (H, W) pair."""
    if np.isscalar(image_size):
        return int(image_size), int(image_size)
    h, w = image_size
    return int(h), int(w)


class MixPlanner:
    """Callable for `fn.external_source(source=planner, num_outputs=len(planner.output_names),
    batch=True, batch_info=True)`: the parameters of one batch, as named by `output_names`.

    Outputs (B = batch size, K = len(recipe.candidates), all CPU):
        method: (B,) int32, index into `recipe.candidates`, K = not mixed.
        perm: (B,) int32, the partner of each sample (no fixed points with `no_self_pairs`).
        lam: (B,) float32, the exact weight of each sample's own label (1.0 when not mixed).
        w_a, w_b: (B,) float32, target weights lam * (1 - eps) and (1 - lam) * (1 - eps).
        paste_ids, paste_anchors, paste_shape (CutMix, FMix): per sample R_i rows for
            `fn.multi_paste(images, in_ids=...)`: (R_i,) int32 source sample, (R_i, 2) int32
            (y, x) corner (the same in source and output) and (R_i, 2) int32 (h, w). Row 0 copies
            the sample itself; a CutMix sample adds its box from the partner; an FMix sample
            adds the partner pixels of its mask as boxes (row runs, stacked where they repeat).
        patch_size, patch_out, patch_shape (ResizeMix): (B, 2) float32 (h, w) of the shrunk
            partner ((1, 1) when unused) and (B, 2, 2) int32 rows for
            `fn.multi_paste(canvas, shrunk)`: the canvas itself, then the patch at its corner
            ((0, 0) shape when unused).
        is_mixup: (B,) bool, the samples Mixup applies to (when Mixup is a candidate and not
            the only method always applied).
        std_a, std_b: (B, C) float32 normalisation std divided by lam and by 1 - lam (at least
            1e-20), for Mixup fused with the normalisation (only with `normalize_std`).
    With `fused=True` (for the fused operator `dali_mix.native.mix_normalize`) the pixel
    outputs are instead:
        blend: (B,) float32, the weight of the own image: lam for Mixup samples, else 1.
        boxes (CutMix): per sample (R_i, 4) int32 rows (y, x, h, w) of partner pixels ((0, 4)
            for samples without a box).
        patch (ResizeMix): (B, 4) int32 (y, x, h, w) of the shrunk partner, zeros when unused.
        mask (FMix): per sample the bank's (H, W, 1) pixel ranks (uint16 or int32, a view of the
            bank), (0, 0, 1) for samples without FMix.
        mask_params (FMix): (B, 3) int32 k (own pixels: rank < k), flip_y, flip_x.

    Args:
        recipe: the recipe (candidates among `PLANNED_METHODS`).
        batch_size: samples per batch (the pipeline's batch size).
        image_size: (H, W) of every image, in pixels.
        seed: base seed (make it differ between shards).
        clock: maps DALI's run counter to (epoch, step); a plain run counter when None.
        fmix_bank: mask source for FMix, of size `image_size`.
        normalize_std: per-channel std when Mixup is fused with the normalisation.
        enabled: optional callable batch_info -> (B,) bool; False samples are not mixed
            (e.g. `dali_mix.schedule.MixOffSchedule`).
        fused: plan for `dali_mix.native.mix_normalize` (outputs blend, boxes, patch, mask,
            mask_params) instead of the DALI operator graph; the same draws either way.
    """

    def __init__(self, recipe: MixRecipe, batch_size: int, image_size, *, seed: int = 0,
                 clock: BatchClock | None = None, fmix_bank: FMixMaskBank | None = None,
                 normalize_std=None, enabled=None, fused: bool = False):
        if not can_plan(recipe, image_size, fmix_bank):
            raise ValueError(f"MixPlanner needs HWC images of a known size, candidates among "
                             f"{PLANNED_METHODS} and an FMix bank of the image size; got "
                             f"candidates {recipe.candidates}, layout {recipe.layout!r}, "
                             f"image_size {image_size!r}")
        if "fmix" in recipe.candidates and fmix_bank is None:
            raise ValueError("MixPlanner with fmix needs an fmix_bank")
        self.recipe = recipe
        self.batch_size = int(batch_size)
        self.height, self.width = _hw(image_size)
        self.seed = int(seed) & 0x7FFFFFFF
        self.clock = clock if clock is not None else BatchClock()
        self.fmix_bank = fmix_bank
        self.normalize_std = None if normalize_std is None else np.asarray(normalize_std, np.float32)
        self.enabled = enabled
        self.fused = bool(fused)
        names = recipe.candidates
        self.ids = {m: names.index(m) for m in names}
        self.none_id = len(names)
        total = float(sum(recipe.weights))
        p = [recipe.prob * float(w) / total for w in recipe.weights] + [1.0 - recipe.prob]
        self.method_p = np.asarray(p, np.float64) / sum(p)
        self.always = names[0] if len(names) == 1 and recipe.prob == 1.0 and enabled is None else None
        self.output_names = ["method", "perm", "lam", "w_a", "w_b"]
        if self.fused:
            self.output_names += ["blend", "boxes", "patch", "mask", "mask_params"]
        elif "cutmix" in names or "fmix" in names:
            self.output_names += ["paste_ids", "paste_anchors", "paste_shape"]
        if "resizemix" in names and not self.fused:
            self.output_names += ["patch_size", "patch_out", "patch_shape"]
        if "mixup" in names and not self.fused:
            if self.always != "mixup":
                self.output_names.append("is_mixup")
            if self.normalize_std is not None:
                self.output_names += ["std_a", "std_b"]

    # ---- drawing ----------------------------------------------------------------------------
    def rng(self, epoch: int, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch), int(step), _SALT])

    def plan(self, epoch: int, step: int, enabled=None) -> dict:
        """The named outputs (see the class docstring) for batch `step` of `epoch`."""
        rng = self.rng(epoch, step)
        B, H, W = self.batch_size, self.height, self.width
        r = self.recipe
        if r.mode == "batch":
            method = np.full(B, rng.choice(len(self.method_p), p=self.method_p), np.int32)
        else:
            method = rng.choice(len(self.method_p), size=B, p=self.method_p).astype(np.int32)
        method[method == len(self.method_p) - 1] = self.none_id  # the "not mixed" slot
        if enabled is not None:
            method[~np.asarray(enabled, bool).reshape(B)] = self.none_id
        perm = self.permutation(rng)
        lam = np.ones(B, np.float64)
        out = {"method": method, "perm": perm}
        rows = [] if self.fused else [_Rows.whole(B, H, W)]  # row 0: the sample itself

        if "cutmix" in self.ids:
            sel = method == self.ids["cutmix"]
            y, x, h, w = self.cutmix_boxes(rng)
            lam[sel] = 1.0 - (h * w)[sel] / (H * W)
            sel &= h * w > 0
            rows.append(_Rows(np.flatnonzero(sel), perm[sel], y[sel], x[sel], h[sel], w[sel]))
        if self.fused:
            out.update(self.fmix_masks(rng, epoch, method, lam))
        elif "fmix" in self.ids:
            sel = method == self.ids["fmix"]
            runs, k = self.fmix_runs(rng, epoch, sel)
            lam[sel] = k[sel] / float(H * W)
            rows.append(runs._replace(src=perm[runs.sample]))
        if "paste_ids" in self.output_names:
            out.update(zip(("paste_ids", "paste_anchors", "paste_shape"), _Rows.per_sample(rows, B)))
        if self.fused:
            out["boxes"] = _Rows.boxes_per_sample(rows, B)
            out["patch"] = np.zeros((B, 4), np.int32)
            out["blend"] = np.ones(B, np.float32)
        if "resizemix" in self.ids:
            sel = method == self.ids["resizemix"]
            y, x, h, w = self.resizemix_patches(rng)
            lam[sel] = 1.0 - (h * w)[sel] / (H * W)
            if self.fused:
                out["patch"][sel] = np.stack([y, x, h, w], 1)[sel]
            else:
                out.update(self._patch_paste_rows(sel, y, x, h, w))
        if "mixup" in self.ids:
            sel = method == self.ids["mixup"]
            lam[sel] = rng.beta(r.mixup_alpha, r.mixup_alpha, size=B)[sel]
            if self.fused:
                out["blend"][sel] = lam[sel]
            if "is_mixup" in self.output_names:
                out["is_mixup"] = sel
            if "std_a" in self.output_names:
                w_a = np.maximum(lam, 1e-20)[:, None]
                w_b = np.maximum(1.0 - lam, 1e-20)[:, None]
                out["std_a"] = (self.normalize_std[None, :] / w_a).astype(np.float32)
                out["std_b"] = (self.normalize_std[None, :] / w_b).astype(np.float32)
        lam32 = lam.astype(np.float32)
        on = np.float32(1.0 - r.label_smoothing)
        out["lam"] = lam32
        out["w_a"] = lam32 * on
        out["w_b"] = (np.float32(1.0) - lam32) * on
        return out

    def _patch_paste_rows(self, sel, y, x, h, w) -> dict:
        """patch_size, patch_out, patch_shape (see the class docstring) of ResizeMix patches."""
        B, H, W = self.batch_size, self.height, self.width
        size = np.ones((B, 2), np.float32)
        size[sel] = np.stack([h, w], 1)[sel]
        p_out = np.zeros((B, 2, 2), np.int32)
        p_shape = np.zeros((B, 2, 2), np.int32)
        p_shape[:, 0] = (H, W)
        p_out[sel, 1] = np.stack([y, x], 1)[sel]  # read from (0, 0) of the shrunk partner
        p_shape[sel, 1] = np.stack([h, w], 1)[sel]
        return {"patch_size": size, "patch_out": p_out, "patch_shape": p_shape}

    def permutation(self, rng: np.random.Generator) -> np.ndarray:
        """A uniform random permutation of the batch, (B,) int32; with `no_self_pairs` a uniform
        random derangement (redrawn until no sample is its own partner; batch size 1 excepted)."""
        B = self.batch_size
        perm = rng.permutation(B)
        if self.recipe.no_self_pairs and B > 1:
            while np.any(perm == np.arange(B)):
                perm = rng.permutation(B)
        return perm.astype(np.int32)

    def cutmix_boxes(self, rng):
        """CutMix boxes (y, x, h, w), (B,) int64 each, as `dali_mix.mixers.cutmix_box`."""
        B, H, W = self.batch_size, self.height, self.width
        r = self.recipe
        if r.cutmix_minmax is None:
            cut = np.sqrt(1.0 - rng.beta(r.cutmix_alpha, r.cutmix_alpha, size=B))
            cut_h, cut_w = np.floor(H * cut).astype(np.int64), np.floor(W * cut).astype(np.int64)
            cy, cx = rng.integers(0, H, size=B), rng.integers(0, W, size=B)
            y1, y2 = np.clip(cy - cut_h // 2, 0, H), np.clip(cy + cut_h // 2, 0, H)
            x1, x2 = np.clip(cx - cut_w // 2, 0, W), np.clip(cx + cut_w // 2, 0, W)
            return y1, x1, y2 - y1, x2 - x1
        lo, hi = r.cutmix_minmax
        h_lo, h_hi = int(H * lo), int(H * hi)
        w_lo, w_hi = int(W * lo), int(W * hi)
        h = h_lo + rng.integers(0, max(h_hi - h_lo, 1), size=B)
        w = w_lo + rng.integers(0, max(w_hi - w_lo, 1), size=B)
        return rng.integers(0, H - h + 1), rng.integers(0, W - w + 1), h, w

    def resizemix_patches(self, rng):
        """ResizeMix patches (y, x, h, w), (B,) int64 each, as `dali_mix.mixers.resizemix`."""
        B, H, W = self.batch_size, self.height, self.width
        lo, hi = self.recipe.resizemix_scale
        tau = rng.uniform(lo, hi, size=B)
        h = np.maximum(np.floor(H * tau).astype(np.int64), 1)
        w = np.maximum(np.floor(W * tau).astype(np.int64), 1)
        return rng.integers(0, H - h + 1), rng.integers(0, W - w + 1), h, w

    def fmix_draws(self, rng, sel: np.ndarray):
        """FMix draws: (B,) int64 k = number of own pixels (0 outside `sel`), k =
        floor(lam0 * N + u) with lam0 ~ Beta(alpha, alpha), u ~ U(0, 1) (the official code's
        random rounding); (B,) int64 bank entries; (B, 2) bool vertical / horizontal flips.
        The entries come from the plan's stream (seeded per shard), not `bank.indices`, so
        shards sharing a bank still draw different masks."""
        B, n = self.batch_size, self.height * self.width
        a = self.recipe.fmix_alpha
        k = np.clip(np.floor(rng.beta(a, a, size=B) * n + rng.uniform(size=B)), 0, n).astype(np.int64)
        entries = rng.integers(0, self.fmix_bank.bank_size, size=B)
        flips = rng.integers(0, 2, size=(B, 2)).astype(bool)
        k[~sel] = 0
        return k, entries, flips

    def fmix_masks(self, rng, epoch: int, method: np.ndarray, lam: np.ndarray) -> dict:
        """FMix for the fused operator: "mask" (the bank's rank images of the FMix samples) and
        "mask_params" (k, flips), drawn as `fmix_runs` draws them; sets lam = k / N in place."""
        B, H, W = self.batch_size, self.height, self.width
        params = np.zeros((B, 3), np.int32)
        if "fmix" not in self.ids:
            return {"mask": [np.zeros((0, 0, 1), np.uint16)] * B, "mask_params": params}
        bank = self.fmix_bank.bank(epoch)
        masks = [np.zeros((0, 0, 1), bank.dtype)] * B
        sel = method == self.ids["fmix"]
        k, entries, flips = self.fmix_draws(rng, sel)
        lam[sel] = k[sel] / float(H * W)
        params[:, 0] = k
        params[:, 1:] = flips
        for i in np.flatnonzero(sel):
            masks[i] = bank[entries[i]]
        return {"mask": masks, "mask_params": params}

    def fmix_runs(self, rng, epoch: int, sel: np.ndarray):
        """The partner pixels of the FMix samples in `sel` as boxes (a `_Rows`, `src` = the
        sample itself, to be replaced by its partner), and k: the horizontal runs of each row,
        a run repeated in the next rows stacked into one taller box (about half as many boxes
        as runs: 140 instead of 265 per 224x224 mask on average).

        The mask of sample i keeps its own pixel where the bank's rank image is below k_i (the
        k_i brightest pixels of a low-frequency image: mask mean exactly k_i / N), then flipped
        as drawn; the flips are applied to the runs' coordinates."""
        H, W = self.height, self.width
        k, entries, flips = self.fmix_draws(rng, sel)
        idx = np.flatnonzero(sel)
        if not idx.size:
            empty = np.zeros(0, np.int64)
            return _Rows(empty, empty, empty, empty, empty, empty), k
        ranks = self.fmix_bank.bank(epoch)[entries[idx], :, :, 0]
        padded = np.ones((idx.size, H, W + 2), bool)  # own pixels, with an own pixel on both sides
        np.less(ranks, k[idx, None, None], out=padded[:, :, 1:-1])
        edges = np.flatnonzero(padded[:, :, 1:] != padded[:, :, :-1])
        start, end = edges[0::2], edges[1::2]  # partner runs open and close in pairs per row
        j, rest = np.divmod(start, H * (W + 1))
        y, x = np.divmod(rest, W + 1)
        sample, y, x, h, w = _stack_runs(idx[j], y, x, end - start)
        y = np.where(flips[sample, 0], H - y - h, y)
        x = np.where(flips[sample, 1], W - x - w, x)
        return _Rows(sample, sample, y, x, h, w), k

    def fmix_mask(self, plan: dict, i: int) -> np.ndarray:
        """(H, W) uint8 mask of sample i of a plan (1 = own pixel), rebuilt from its paste rows
        (fused: from its ranks, k and flips): for tests and previews."""
        if self.fused:
            k, flip_y, flip_x = plan["mask_params"][i]
            mask = (plan["mask"][i][..., 0] < k).astype(np.uint8)
            return mask[::-1 if flip_y else 1, ::-1 if flip_x else 1]
        mask = np.ones((self.height, self.width), np.uint8)
        boxes = np.concatenate([plan["paste_anchors"][i][1:], plan["paste_shape"][i][1:]], 1)
        for y, x, h, w in boxes:
            mask[y:y + h, x:x + w] = 0
        return mask

    def __call__(self, batch_info):
        epoch, step = self.clock.epoch_step(batch_info)
        enabled = None if self.enabled is None else self.enabled(batch_info)
        out = self.plan(epoch, step, enabled)
        return tuple(out[name] for name in self.output_names)


def _stack_runs(sample, y, x, w):
    """Merge runs (sample, row y, column x, width w) that repeat in consecutive rows into boxes:
    returns (sample, y, x, h, w) arrays of the boxes."""
    order = np.lexsort((y, w, x, sample))
    sample, y, x, w = sample[order], y[order], x[order], w[order]
    new = np.ones(sample.size, bool)
    new[1:] = ((sample[1:] != sample[:-1]) | (x[1:] != x[:-1]) | (w[1:] != w[:-1])
               | (y[1:] != y[:-1] + 1))
    first = np.flatnonzero(new)
    h = np.diff(np.append(first, sample.size))
    return sample[first], y[first], x[first], h, w[first]


class _Rows(NamedTuple):
    """Paste rows of a batch, one entry per row: output sample, source sample, box."""

    sample: np.ndarray
    src: np.ndarray
    y: np.ndarray
    x: np.ndarray
    h: np.ndarray
    w: np.ndarray

    @classmethod
    def whole(cls, B: int, H: int, W: int) -> "_Rows":
        i = np.arange(B)
        zero = np.zeros(B, np.int64)
        return cls(i, i, zero, zero, np.full(B, H), np.full(B, W))

    @staticmethod
    def per_sample(parts, B: int):
        """Concatenate row sets (the first holding each sample's row 0) and split them per
        output sample: lists of B (R_i,) ids, (R_i, 2) anchors, (R_i, 2) shapes, int32."""
        rows = _Rows(*(np.concatenate(c) for c in zip(*parts)))
        order = np.argsort(rows.sample, kind="stable")  # keeps row 0 first
        ids = rows.src[order].astype(np.int32)
        anchors = np.stack([rows.y, rows.x], 1)[order].astype(np.int32)
        shapes = np.stack([rows.h, rows.w], 1)[order].astype(np.int32)
        counts = np.bincount(rows.sample, minlength=B)
        ends = np.cumsum(counts)
        bounds = list(zip(ends - counts, ends))
        return ([ids[a:b] for a, b in bounds], [anchors[a:b] for a, b in bounds],
                [shapes[a:b] for a, b in bounds])

    @staticmethod
    def boxes_per_sample(parts, B: int) -> list:
        """Row sets (partner pixels only) split per output sample: B (R_i, 4) int32 arrays of
        (y, x, h, w), (0, 4) for a sample without rows."""
        if not parts:
            return [np.zeros((0, 4), np.int32) for _ in range(B)]
        rows = _Rows(*(np.concatenate(c) for c in zip(*parts)))
        order = np.argsort(rows.sample, kind="stable")
        boxes = np.stack([rows.y, rows.x, rows.h, rows.w], 1)[order].astype(np.int32)
        ends = np.cumsum(np.bincount(rows.sample, minlength=B))
        return np.split(boxes, ends[:-1])
