"""The planner: every random parameter of a batch, drawn once, in one vectorised numpy step.

A `MixPlanner` turns (seed, epoch, step) into a `Plan`: the partner of each sample, the method
it gets, the exact lambda, the Mixup weight, the CutMix box, the ResizeMix patch, the FMix mask
(bank entry, threshold, flips) and the erased rectangles (Cutout, Random Erasing). The draws
themselves are `dali_mix.draws`'s samplers; the plan is executor-neutral, and each executor
(`dali_mix.execute`) encodes it into its operators' inputs. It is fed to the pipeline as one
external source (`batch=True, batch_info=True`), so the graph has no random operator and no
conditional; a plan is a pure function of (seed, epoch, step) through a `BatchClock`, so runs
are reproducible and a resumed run (DALI restores the run counter) gets the same batches.

Modes (`MixRecipe.mode`): "sample" draws every parameter per sample; "pair" pairs the batch
(perm an involution) and both members of a pair share the draw of the lower index; "batch"
gives every sample the draw of sample 0 (one method, one lambda, one box per batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dali_mix import draws
from dali_mix.config import MixRecipe
from dali_mix.masks import FMixMaskBank
from dali_mix.schedule import BatchClock, MixOffSchedule

_SALT = 0x6D6978  # separates the plan's random stream from the FMix bank's index stream

CUTOUT, RANDOM_ERASING = 0, 1
"""Kinds of erased rectangles in `Plan.erase` (the executors fill them as the recipe says)."""


@dataclass
class Plan:
    """One batch's parameters (numpy, CPU). B = batch size, K = len(recipe.candidates).

    method: (B,) int32 index into `recipe.candidates`; K = not mixed.
    perm: (B,) int32 partner of each sample.
    lam: (B,) float32 exact weight of each sample's own label (1.0 when not mixed).
    blend: (B,) float32 weight of the own image in a pixel blend (Mixup's lam, else 1.0).
    boxes: B arrays (R_i, 4) int32 (y, x, h, w) of partner pixels pasted at the same place
        (CutMix: R_i <= 1).
    patch: (B, 4) int32 (y, x, h, w) where the partner, shrunk to (h, w), is pasted
        (ResizeMix); h = w = 0 when unused.
    fmix: (B, 4) int64 bank entry, k (own pixels: rank < k), flip_y, flip_x; entry -1 unused.
    erase: B arrays (E_i, 5) int32 (y, x, h, w, kind) of erased rectangles, kind CUTOUT or
        RANDOM_ERASING (at most one per sample), applied after mixing.
    epoch: the epoch the plan belongs to (selects the FMix bank).
    """

    method: np.ndarray
    perm: np.ndarray
    lam: np.ndarray
    blend: np.ndarray
    boxes: list
    patch: np.ndarray
    fmix: np.ndarray
    erase: list
    epoch: int = 0


class MixPlanner:
    """Draws `Plan`s for `recipe` on batches of `batch_size` images of `image_size`.

    Args:
        recipe: the validated recipe.
        batch_size: samples per batch (the pipeline's max batch size).
        image_size: (H, W) of every image, in pixels (an int for square images).
        seed: base seed (the pipeline's).
        clock: maps DALI's run counter to (epoch, step); a plain run counter when None.
        fmix_bank: mask bank of `image_size`, needed when FMix is a candidate.
        enabled: optional callable batch_info -> (B,) bool (e.g. `MixOffSchedule`); False
            samples are neither mixed nor erased.
    """

    def __init__(self, recipe: MixRecipe, batch_size: int, image_size, *, seed: int = 0,
                 clock: BatchClock | None = None, fmix_bank: FMixMaskBank | None = None,
                 enabled=None):
        self.recipe = recipe
        self.batch_size = int(batch_size)
        self.height, self.width = draws.size_hw(image_size)
        if recipe.mode == "pair" and self.batch_size % 2:
            raise ValueError(f"mode='pair' needs an even batch size, got {self.batch_size}")
        if "fmix" in recipe.candidates:
            if fmix_bank is None:
                raise ValueError("a recipe with fmix needs an FMixMaskBank")
            if tuple(fmix_bank.size) != (self.height, self.width):
                raise ValueError(f"the FMix bank makes {tuple(fmix_bank.size)} masks but image_size "
                                 f"is {(self.height, self.width)}; make the bank at the image size")
        self.seed = int(seed) & 0x7FFFFFFF
        self.clock = clock if clock is not None else BatchClock()
        self.fmix_bank = fmix_bank
        self.enabled = enabled
        names = recipe.candidates
        self.ids = {m: names.index(m) for m in names}
        self.none_id = len(names)
        total = float(sum(recipe.weights)) or 1.0
        p = [recipe.prob * float(w) / total for w in recipe.weights]
        p.append(1.0 - sum(p))  # not mixed (every sample when there are no candidates)
        self.method_p = np.clip(np.asarray(p, np.float64), 0.0, None)
        self.method_p /= self.method_p.sum()

    def rng(self, epoch: int, step: int) -> np.random.Generator:
        """The random stream of batch `step` of `epoch`."""
        return np.random.default_rng([self.seed, int(epoch), int(step), _SALT])

    def __call__(self, batch_info) -> Plan:
        return self.plan(*self.inputs(batch_info))

    def inputs(self, batch_info) -> tuple:
        """(epoch, step, enabled) of the run `batch_info`: with the seed and the recipe, all
        that its plan depends on (`enabled`: (B,) bool or None)."""
        epoch, step = self.clock.epoch_step(batch_info)
        enabled = None if self.enabled is None else np.asarray(self.enabled(batch_info), bool)
        return epoch, step, enabled

    def predictable(self) -> bool:
        """Whether the inputs of a run may be read before DALI asks for it: `enabled` is None
        or a `MixOffSchedule` (a function of the epoch), not an arbitrary callable."""
        return self.enabled is None or isinstance(self.enabled, MixOffSchedule)

    def plan(self, epoch: int, step: int, enabled=None) -> Plan:
        """The plan of batch `step` of `epoch`; `enabled`: optional (B,) bool, False = untouched."""
        rng = self.rng(epoch, step)
        r, B, H, W = self.recipe, self.batch_size, self.height, self.width
        if r.mode == "pair":
            perm = draws.pairing(rng, B)
            leader = np.minimum(np.arange(B), perm)
        else:
            perm = draws.permutation(rng, B, r.no_self_pairs)
            leader = np.zeros(B, np.int64) if r.mode == "batch" else np.arange(B)
        method = rng.choice(len(self.method_p), size=B, p=self.method_p)[leader].astype(np.int32)
        on = np.ones(B, bool) if enabled is None else np.asarray(enabled, bool).reshape(B)
        method[~on] = self.none_id
        lam = np.ones(B, np.float64)
        blend = np.ones(B, np.float32)
        boxes = [np.zeros((0, 4), np.int32)] * B
        patch = np.zeros((B, 4), np.int32)
        fmix = np.zeros((B, 4), np.int64)
        fmix[:, 0] = -1
        erase: list[list] = [[] for _ in range(B)]
        # every sampler draws for the whole batch (a fixed stream per batch), then the leaders'
        # draws are spread to their followers and only the selected samples use them
        if "mixup" in self.ids:
            sel = method == self.ids["mixup"]
            lam[sel] = draws.mixup_lams(rng, B, r.mixup_alpha)[leader][sel]
            blend[sel] = lam[sel]
        if "cutmix" in self.ids:
            sel = method == self.ids["cutmix"]
            y, x, h, w = (a[leader] for a in draws.cutmix_boxes(rng, B, H, W, r.cutmix_alpha, r.cutmix_minmax))
            lam[sel] = 1.0 - (h * w)[sel] / (H * W)
            for i in np.flatnonzero(sel & (h * w > 0)):
                boxes[i] = np.array([[y[i], x[i], h[i], w[i]]], np.int32)
        if "resizemix" in self.ids:
            sel = method == self.ids["resizemix"]
            y, x, h, w = (a[leader] for a in draws.resizemix_patches(rng, B, H, W, r.resizemix_scale))
            lam[sel] = 1.0 - (h * w)[sel] / (H * W)
            patch[sel] = np.stack([y, x, h, w], 1)[sel]
        if "fmix" in self.ids:
            sel = method == self.ids["fmix"]
            k, entry, flips = (a[leader] for a in draws.fmix_masks(rng, B, H * W, self.fmix_bank.bank_size,
                                                                  r.fmix_alpha))
            fmix[sel] = np.column_stack([entry, k, flips])[sel]
            lam[sel] = k[sel] / float(H * W)
        for name in ("cutout", "random_erasing"):
            if name in self.ids or name in r.after:
                chosen = method == self.ids[name] if name in self.ids else np.zeros(B, bool)
                sel = (chosen | (name in r.after)) & on
                # a candidate shares its draw as the mode says; a step after mixing is per sample
                self._erase(rng, name, sel, np.where(chosen, leader, np.arange(B)), erase)
        lam32 = lam.astype(np.float32)
        return Plan(method=method, perm=perm.astype(np.int32), lam=lam32, blend=blend, boxes=boxes,
                    patch=patch, fmix=fmix, erase=[_erase_rows(e) for e in erase], epoch=int(epoch))

    def _erase(self, rng, name: str, sel: np.ndarray, leader: np.ndarray, erase: list) -> None:
        """Add the rectangles of `name` (cutout / random_erasing) for the samples in `sel`, each
        sample i taking the draw of sample leader[i]."""
        r, B, H, W = self.recipe, self.batch_size, self.height, self.width
        if name == "cutout":
            y, x, h, w = (a[leader] for a in draws.cutout_boxes(rng, B, H, W, r.cutout_holes, r.cutout_length))
            kind = CUTOUT
        else:
            y, x, h, w = (a[leader, None] for a in draws.erasing_boxes(
                rng, B, H, W, r.erasing_prob, r.erasing_area, r.erasing_aspect, r.erasing_log_aspect))
            kind = RANDOM_ERASING
        for i in np.flatnonzero(sel):
            for j in range(y.shape[1]):
                if h[i, j] > 0 and w[i, j] > 0:
                    erase[i].append((y[i, j], x[i, j], h[i, j], w[i, j], kind))

    def fmix_mask(self, plan: Plan, i: int) -> np.ndarray:
        """(H, W) uint8 mask of sample i (1 = own pixel), for tests and previews."""
        entry, k, flip_y, flip_x = plan.fmix[i]
        if entry < 0:
            return np.ones((self.height, self.width), np.uint8)
        ranks = self.fmix_bank.bank(plan.epoch)[entry][..., 0]
        mask = (ranks < k).astype(np.uint8)
        return mask[::-1 if flip_y else 1, ::-1 if flip_x else 1]


def _erase_rows(rows: list) -> np.ndarray:
    return np.asarray(rows, np.int32).reshape(-1, 5)
