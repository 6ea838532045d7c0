"""The planner: every random parameter of a batch, drawn once, in one vectorised numpy step.

A `MixPlanner` turns (seed, epoch, step) into a `Plan`: the partner of each sample, the method
it gets, its label slots' sources and shares (lambda), the blend weight, the paste rows (slot,
source rect, destination rect: CutMix's box, ResizeMix's shrunk partner, RICAP's and Mosaic's
four tiles), the FMix mask (bank entry, threshold, flips) and the erased rectangles (Cutout,
Random Erasing). It runs the draws of the method table (`dali_mix.methods`, built on
`dali_mix.draws`'s samplers) in table order and writes their effects (`dali_mix.effects`); the
plan is executor-neutral, and each executor (`dali_mix.execute`) encodes it into its
operators' inputs. It is fed to the pipeline as one
external source (`batch=True, batch_info=True`), so the graph has no random operator and no
conditional; a plan is a pure function of (seed, epoch, step) through a `BatchClock`, so runs
are reproducible and a resumed run (DALI restores the run counter) gets the same batches.

Chunks: the plans of `CHUNK` consecutive steps of an epoch (steps c * CHUNK to c * CHUNK +
CHUNK - 1) are drawn together, from one random stream (seed, epoch, c), as one batch of
CHUNK * B samples whose partners and sources are drawn per batch: numpy's per-call cost is then
paid once per chunk, not once per batch. The sample draws are independent, so every plan has
the distribution of a plan drawn alone; with `chunk=1` a plan is drawn alone, from the stream
(seed, epoch, step) (the stream of dali-mix before chunks, which tests/golden pins).

Modes (`MixRecipe.mode`): "sample" draws every parameter per sample; "pair" pairs the batch
(perm an involution) and both members of a pair share the draw of the lower index; "batch"
gives every sample the draw of sample 0 (one method, one lambda, one box per batch).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from nvidia.dali.pipeline import Pipeline

from dali_mix import draws
from dali_mix.recipe import MixRecipe
from dali_mix.effects import CUTOUT, RANDOM_ERASING, Blend, Erase, Mask, Paste  # noqa: F401 (re-exported kinds)
from dali_mix.methods import MIX, TABLE, DrawContext, max_sources
from dali_mix.masks import FMixMaskBank
from dali_mix.schedule import BatchClock, MixOffSchedule

_SALT = 0x6D6978  # separates the plan's random stream from the FMix bank's index stream

CHUNK = 8
"""Steps whose plans `MixPlanner` draws together (see the module docstring); a planner's
`chunk` argument overrides it."""


@dataclass
class Plan:
    """One batch's parameters (numpy, CPU), or a chunk's (`MixPlanner.chunk_plan`: its batches'
    samples one after the other, each indexing samples of its own batch). B = samples, K =
    len(recipe.candidates), S = label slots (2, or the most sources of a candidate:
    `dali_mix.methods.max_sources`), R = paste rows per sample (the most of a candidate; 0
    without pastes).

    method: (B,) int32 index into `recipe.candidates`; K = not mixed.
    perm: (B,) int32 partner of each sample (= sources[:, 1]).
    sources: (B, S) int32 sample of each label slot: slot 0 the sample itself, slot 1 its
        partner, slots 2.. further sources of a many-source method (the sample itself where
        unused, with share 0).
    lam: (B,) float32 exact weight of each sample's own label (1.0 when not mixed) = shares[:, 0].
    shares: (B, S) float32 each slot's share of the output: lambda for a blend, the pasted or
        masked pixel area over H * W for pastes and masks (`dali_mix.plan.label_shares`); for
        two-source samples shares[:, 1] = 1 - lam (float32), so they sum to 1.
    blend: (B,) float32 weight of the own image in a pixel blend (Mixup's lam, else 1.0).
    rows: (B, R, 9) int32 paste rows (`dali_mix.effects.ROW_COLUMNS`: slot, source rect,
        destination rect), applied in order; rows of zero destination area paste nothing (padding).
    fmix: (B, 4) int64 bank entry, k (own pixels: rank < k), flip_y, flip_x; entry -1 unused.
    erase: B arrays (E_i, 5) int32 (y, x, h, w, kind) of erased rectangles, kind CUTOUT or
        RANDOM_ERASING (at most one per sample), applied after mixing.
    epoch: the epoch the plan belongs to (selects the FMix bank).
    """

    method: np.ndarray
    perm: np.ndarray
    sources: np.ndarray
    lam: np.ndarray
    shares: np.ndarray
    blend: np.ndarray
    rows: np.ndarray
    fmix: np.ndarray
    erase: list
    epoch: int = 0

    def rows_of(self, i: int) -> np.ndarray:
        """Sample i's paste rows that paste something, (R_i, 9) int32."""
        r = self.rows[i]
        return r[(r[:, 7] > 0) & (r[:, 8] > 0)]

    def part(self, start: int, stop: int) -> "Plan":
        """The plan of samples start..stop-1 (copies; the erase rows, read-only, are shared),
        its partners and sources unchanged."""
        cut = slice(start, stop)
        return Plan(method=self.method[cut].copy(), perm=self.perm[cut].copy(),
                    sources=self.sources[cut].copy(), lam=self.lam[cut].copy(),
                    shares=self.shares[cut].copy(), blend=self.blend[cut].copy(),
                    rows=self.rows[cut].copy(), fmix=self.fmix[cut].copy(),
                    erase=self.erase[cut], epoch=self.epoch)

    def untouched(self, off: np.ndarray, none_id: int, partners: np.ndarray) -> "Plan":
        """This plan, changed in place, with the samples `off` ((B,) bool) neither mixed nor
        erased, as the planner leaves unselected samples: method `none_id`, partner `partners`
        (the drawn (B,) permutation), own label share 1, no paste, mask or erased rectangle."""
        if not off.any():
            return self
        i = np.flatnonzero(off)
        self.method[i] = none_id
        self.lam[i] = 1.0
        self.blend[i] = 1.0
        self.sources[i] = self.sources[i, :1]  # slots 1.. back to the sample itself (slot 0)
        self.sources[i, 1] = self.perm[i] = partners[i]
        self.shares[i] = 0.0
        self.shares[i, 0] = 1.0
        self.rows[i] = 0
        self.fmix[i] = (-1, 0, 0, 0)
        for k in i:
            self.erase[k] = _NO_ERASE
        return self


class BatchDraws:
    """What every per-batch numpy draw of the library stands on (`MixPlanner`, and
    `dali_mix.mixmo.MixMoSampler`): a base `seed` (31 bits), a `clock` (`BatchClock`) mapping
    DALI's batch_info to (epoch, step), and the random stream of batch (epoch, step), kept apart
    from the other streams of the same seed by the class's `salt`. A draw is then a pure function
    of (seed, epoch, step): runs are reproducible and a resumed run gets the same batches.
    """

    salt = 0

    def __init__(self, seed: int = 0, clock: BatchClock | None = None):
        self.seed = int(seed) & 0x7FFFFFFF
        self.clock = clock if clock is not None else BatchClock()

    def rng(self, epoch: int, step: int, *more: int) -> np.random.Generator:
        """The random stream of batch `step` of `epoch` (`more`: further ints that tell apart
        streams of the same batch, e.g. `MixPlanner`'s chunk size)."""
        return np.random.default_rng([self.seed, int(epoch), int(step), self.salt, *map(int, more)])

    def epoch_step(self, batch_info) -> tuple[int, int]:
        """(epoch, step) of the run `batch_info` (DALI's batch_info, or a run number)."""
        return self.clock.epoch_step(batch_info)


def pipeline_seed(pipe: Pipeline | None = None) -> int:
    """The seed of `pipe` (default: the pipeline being defined), or a random one when it has
    none (as DALI's own random operators do), as a 31-bit int for `BatchDraws`."""
    pipe = Pipeline.current() if pipe is None else pipe
    seed = None if pipe is None else pipe.seed
    if seed is None or seed < 0:
        seed = int(np.random.SeedSequence().entropy) & 0x7FFFFFFF
    return int(seed)


class MixPlanner(BatchDraws):
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
        chunk: steps whose plans are drawn together (default `CHUNK`; 1: each plan alone,
            the stream of dali-mix before chunks); see the module docstring.
    """

    salt = _SALT

    def __init__(self, recipe: MixRecipe, batch_size: int, image_size, *, seed: int = 0,
                 clock: BatchClock | None = None, fmix_bank: FMixMaskBank | None = None,
                 enabled=None, chunk: int | None = None):
        super().__init__(seed, clock)
        self.chunk = CHUNK if chunk is None else int(chunk)
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._chunks: OrderedDict = OrderedDict()  # (epoch, chunk index) -> _Chunk, the last two
        self._lock = threading.Lock()
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
        self.fmix_bank = fmix_bank
        self.enabled = enabled
        names = recipe.candidates
        self.ids = {m: names.index(m) for m in names}
        # the methods drawn for this recipe, in table order: its candidates and its after steps
        self.drawn = tuple(m for m in TABLE if m.name in self.ids or m.name in recipe.after)
        self.slots = max_sources(names)
        self.none_id = len(names)
        total = float(sum(recipe.weights)) or 1.0
        p = [recipe.prob * float(w) / total for w in recipe.weights]
        p.append(1.0 - sum(p))  # not mixed (every sample when there are no candidates)
        self.method_p = np.clip(np.asarray(p, np.float64), 0.0, None)
        self.method_p /= self.method_p.sum()

    def __call__(self, batch_info) -> Plan:
        return self.plan(*self.inputs(batch_info))

    def inputs(self, batch_info) -> tuple:
        """(epoch, step, enabled) of the run `batch_info`: with the seed and the recipe, all
        that its plan depends on (`enabled`: (B,) bool or None)."""
        epoch, step = self.epoch_step(batch_info)
        enabled = None if self.enabled is None else np.asarray(self.enabled(batch_info), bool)
        return epoch, step, enabled

    def predictable(self) -> bool:
        """Whether the inputs of a run may be read before DALI asks for it: `enabled` is None
        or a `MixOffSchedule` (a function of the epoch), not an arbitrary callable."""
        return self.enabled is None or isinstance(self.enabled, MixOffSchedule)

    def plan(self, epoch: int, step: int, enabled=None) -> Plan:
        """The plan of batch `step` of `epoch`; `enabled`: optional (B,) bool, False = untouched."""
        index, at = divmod(int(step), self.chunk)
        return self._batches(epoch, index, at, at + 1, enabled)

    def chunk_plan(self, epoch: int, index: int, enabled=None) -> Plan:
        """The plans of steps index * chunk to index * chunk + chunk - 1 of `epoch` as one plan
        of chunk * B samples (sample j of step index * chunk + c is sample c * B + j; partners
        and sources index samples of their own batch), `enabled` ((B,) bool or None) applied to
        every one of its batches."""
        return self._batches(epoch, index, 0, self.chunk, enabled)

    def _batches(self, epoch: int, index: int, first: int, stop: int, enabled) -> Plan:
        """Batches first..stop-1 of chunk `index` of `epoch` as one plan (a copy), `enabled`
        ((B,) bool or None) applied to each."""
        B = self.batch_size
        drawn = self._chunk(int(epoch), int(index))
        plan = drawn.plan.part(first * B, stop * B)
        if enabled is not None:
            off = np.tile(~np.asarray(enabled, bool).reshape(B), stop - first)
            plan.untouched(off, self.none_id, drawn.perm[first * B:stop * B])
        return plan

    def _chunk(self, epoch: int, index: int) -> "_Chunk":
        """Chunk `index` of `epoch`, drawn or from the last two drawn (plans are asked for from
        DALI's thread and the plan feed's, in order, so two are enough)."""
        key = (epoch, index)
        with self._lock:
            drawn = self._chunks.get(key)
        if drawn is None:
            drawn = self._draw_chunk(epoch, index)
            with self._lock:
                self._chunks[key] = drawn
                while len(self._chunks) > 2:
                    self._chunks.popitem(last=False)
        return drawn

    def _draw_chunk(self, epoch: int, index: int) -> "_Chunk":
        """The plans of the `chunk` steps from index * chunk, as one plan of chunk * B samples
        (sample j of step index * chunk + c is sample c * B + j), every sample enabled."""
        rng = self.rng(epoch, index, *([self.chunk] if self.chunk > 1 else []))
        r, B, C, H, W = self.recipe, self.batch_size, self.chunk, self.height, self.width
        n = B * C
        first = np.repeat(np.arange(0, n, B), B)  # each sample's batch's first sample
        own = np.arange(n) - first  # each sample's index in its batch
        ctx = DrawContext(rng, n, H, W, r, self.fmix_bank, batch=B)
        if r.mode == "pair":
            perm = ctx.per_batch(draws.pairing)
            leader = first + np.minimum(own, perm)
        else:
            perm = ctx.per_batch(lambda g, b: draws.permutation(g, b, r.no_self_pairs))
            leader = first if r.mode == "batch" else np.arange(n)
        method = rng.choice(len(self.method_p), size=n, p=self.method_p)[leader].astype(np.int32)
        build = _Builder(H, W, self.slots, own, perm)
        # every draw is for the whole chunk (a fixed stream per chunk), then the leaders' draws
        # are spread to their followers and only the selected samples use them
        for m in self.drawn:
            chosen = method == self.ids[m.name] if m.name in self.ids else np.zeros(n, bool)
            if m.role == MIX:
                sel, lead = chosen, leader
            else:  # a candidate shares its draw as the mode says; a step after mixing is per sample
                sel, lead = chosen | (m.name in r.after), np.where(chosen, leader, np.arange(n))
            build.apply(m.draw(ctx).take(lead), sel)
        return _Chunk(build.plan(method, epoch), perm)

    def fmix_mask(self, plan: Plan, i: int) -> np.ndarray:
        """(H, W) uint8 mask of sample i (1 = own pixel), for tests and previews."""
        entry, k, flip_y, flip_x = plan.fmix[i]
        if entry < 0:
            return np.ones((self.height, self.width), np.uint8)
        ranks = self.fmix_bank.bank(plan.epoch)[entry][..., 0]
        mask = (ranks < k).astype(np.uint8)
        return mask[::-1 if flip_y else 1, ::-1 if flip_x else 1]


@dataclass(frozen=True)
class _Chunk:
    """A drawn chunk: its plan (every sample enabled) and the drawn (n,) int64 partners."""

    plan: Plan
    perm: np.ndarray


class _Builder:
    """A plan being written: the effects of the drawn methods, each for its selected samples
    (one mixing method per sample; erasing on top), and the label shares computed from them."""

    def __init__(self, H: int, W: int, slots: int, own: np.ndarray, perm: np.ndarray):
        """own: (B,) int64 each sample's index in its batch; perm: (B,) int64 its partner."""
        B = own.shape[0]
        self.B, self.H, self.W = B, H, W
        self.lam = np.ones(B, np.float64)
        self.blend = np.ones(B, np.float32)
        self.sources = np.tile(own[:, None], (1, slots))
        self.sources[:, 1] = perm
        self.area = np.zeros((B, slots), np.int64)  # pasted pixels per slot (many-source pastes)
        self.many = np.zeros(B, bool)  # samples whose shares are their slots' areas
        self.pastes: list = []  # (sel, rows (B, R, 9))
        self.fmix = np.zeros((B, 4), np.int64)
        self.fmix[:, 0] = -1
        self.erase: dict[int, list] = {}  # sample -> its erased rectangles (most samples: none)

    def apply(self, effect, sel: np.ndarray) -> None:
        HW = self.H * self.W
        if isinstance(effect, Blend):
            self.lam[sel] = effect.weight[sel]
            self.blend[sel] = self.lam[sel]
        elif isinstance(effect, Paste):
            rows = effect.rows
            area = rows[:, :, 7] * rows[:, :, 8]
            slot_of_row = rows[:, :, 0, None] == np.arange(self.area.shape[1])  # (B, R, S)
            per_slot = (area[:, :, None] * slot_of_row).sum(1)
            # the own label keeps what no other slot covers (rows never overlap one another)
            self.lam[sel] = 1.0 - per_slot[sel, 1:].sum(1) / HW
            self.pastes.append((sel, rows))
            if effect.sources is not None:
                S = effect.sources.shape[1]
                self.sources[sel, :S] = effect.sources[sel]
                self.area[sel] = per_slot[sel]
                self.many |= sel
        elif isinstance(effect, Mask):
            self.fmix[sel] = np.column_stack([effect.entry, effect.k, effect.flips])[sel]
            self.lam[sel] = effect.k[sel] / float(HW)
        elif isinstance(effect, Erase):
            y, x, h, w = effect.y, effect.x, effect.h, effect.w
            for i in np.flatnonzero(sel):
                for j in range(y.shape[1]):
                    if h[i, j] > 0 and w[i, j] > 0:
                        self.erase.setdefault(i, []).append((y[i, j], x[i, j], h[i, j], w[i, j], effect.kind))
        else:
            raise TypeError(f"unknown effect {type(effect).__name__}")

    def plan(self, method: np.ndarray, epoch: int) -> Plan:
        B = self.B
        R = max([0] + [r.shape[1] for _, r in self.pastes])
        rows = np.zeros((B, R, 9), np.int32)
        for sel, r in self.pastes:
            rows[sel, :r.shape[1]] = r[sel]
        rows[(rows[:, :, 7] <= 0) | (rows[:, :, 8] <= 0)] = 0  # nothing pasted: padding
        lam32 = self.lam.astype(np.float32)
        return Plan(method=method, perm=self.sources[:, 1].astype(np.int32),
                    sources=self.sources.astype(np.int32), lam=lam32,
                    shares=label_shares(lam32, self.area, self.many, self.H * self.W),
                    blend=self.blend, rows=rows, fmix=self.fmix,
                    erase=self._erased(), epoch=int(epoch))

    def _erased(self) -> list:
        """B read-only (E_i, 5) int32 arrays: the erased rectangles of each sample."""
        erase = [_NO_ERASE] * self.B
        for i, rects in self.erase.items():
            erase[i] = _erase_rows(rects)
        return erase


def label_shares(lam: np.ndarray, area: np.ndarray, many: np.ndarray, pixels: int) -> np.ndarray:
    """Each label slot's share of the output, (B, S) float32, the one place label weights come
    from: slot 0 the own share `lam` (B,) float32 (lambda of a blend, own pixels / `pixels` of
    a paste or mask); a two-source sample's partner 1 - lam (float32, so they sum to 1); a
    many-source sample (`many`) slot k >= 1 its pasted `area` (B, S) int64 / `pixels`."""
    shares = np.zeros(area.shape, np.float32)
    shares[:, 0] = lam
    shares[:, 1] = np.float32(1.0) - lam
    if many.any():
        shares[many, 1:] = (area[many, 1:] / float(pixels)).astype(np.float32)
    return shares


_NO_ERASE = np.zeros((0, 5), np.int32)
_NO_ERASE.flags.writeable = False  # shared by every sample without erased rectangles


def _erase_rows(rows: list) -> np.ndarray:
    """(E, 5) int32, read-only: the plans of a chunk share it (`Plan.part` copies no erase rows)."""
    out = np.asarray(rows, np.int32).reshape(-1, 5)
    out.flags.writeable = False
    return out
