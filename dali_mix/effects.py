"""The effect kinds: what a method does to the pixels, as the executors implement it once.

A method's draw (`dali_mix.methods`) returns one of these for all the samples drawn together
(arrays over the B samples of a chunk of batches, `dali_mix.plan.CHUNK`, before the planner
spreads the draws of the mode's leaders and selects the samples that take the method); the planner (`dali_mix.plan`) writes them into the `Plan`, and computes
the label shares from them in one place.

- `Blend`: out = w * own + (1 - w) * partner (Mixup).
- `Paste`: rows of (slot, source rect, destination rect): the pixels of source `slot` in the
  source rect, resized to the destination rect by nearest neighbour where the sizes differ
  (CutMix: one row from the partner at the same place; ResizeMix: the whole partner shrunk;
  RICAP, Mosaic: four rows from four samples). Slot 0 is the sample itself, slot 1 its partner
  (`Plan.perm`); a method with more sources gives its `sources` per sample.
- `Mask`: the partner's pixels where an FMix bank mask says (bank entry, k, flips).
- `Erase`: rectangles erased after mixing (Cutout, Random Erasing), kind CUTOUT or
  RANDOM_ERASING; the label is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLEND, PASTE, MASK, ERASE = "blend", "paste", "mask", "erase"
"""Names of the effect kinds (`Method.effects`)."""

CUTOUT, RANDOM_ERASING = 0, 1
"""Kinds of erased rectangles in `Plan.erase` (the executors fill them as the recipe says)."""

ROW_COLUMNS = ("slot", "src_y", "src_x", "src_h", "src_w", "y", "x", "h", "w")
"""Columns of a paste row (int32): source slot, source rect, destination rect, in pixels."""


@dataclass
class Blend:
    """weight: (B,) float64 weight of the own image (and label)."""

    weight: np.ndarray

    def take(self, leader: np.ndarray) -> "Blend":
        return Blend(self.weight[leader])


@dataclass
class Paste:
    """rows: (B, R, 9) int64 paste rows (`ROW_COLUMNS`), applied in order; a row of zero
    destination area pastes nothing. sources: (B, S) int64 sample of each slot (slot 0 the
    sample itself), or None: slots 0 and 1 are the sample and its partner."""

    rows: np.ndarray
    sources: np.ndarray | None = None

    def take(self, leader: np.ndarray) -> "Paste":
        """The leaders' geometry for every sample; the sources stay each sample's own."""
        return Paste(self.rows[leader], self.sources)


@dataclass
class Mask:
    """FMix: k (B,) own pixels, entry (B,) bank entries, flips (B, 2) (flip_y, flip_x)."""

    k: np.ndarray
    entry: np.ndarray
    flips: np.ndarray

    def take(self, leader: np.ndarray) -> "Mask":
        return Mask(self.k[leader], self.entry[leader], self.flips[leader])


@dataclass
class Erase:
    """y, x, h, w: (B, E) int64 rectangles (h = 0 or w = 0: none); kind CUTOUT or RANDOM_ERASING."""

    y: np.ndarray
    x: np.ndarray
    h: np.ndarray
    w: np.ndarray
    kind: int

    def take(self, leader: np.ndarray) -> "Erase":
        return Erase(self.y[leader], self.x[leader], self.h[leader], self.w[leader], self.kind)


def same_place_rows(y, x, h, w, slot: int = 1) -> np.ndarray:
    """(B, 1, 9) rows pasting slot `slot`'s pixels of each rectangle at the same place."""
    y, x, h, w = (np.asarray(a, np.int64) for a in (y, x, h, w))
    return np.stack([np.full_like(y, slot), y, x, h, w, y, x, h, w], 1)[:, None, :]


def whole_image_rows(y, x, h, w, H: int, W: int, slot: int = 1) -> np.ndarray:
    """(B, 1, 9) rows pasting slot `slot`'s whole H x W image resized into each rectangle."""
    y, x, h, w = (np.asarray(a, np.int64) for a in (y, x, h, w))
    zero = np.zeros_like(y)
    return np.stack([np.full_like(y, slot), zero, zero, np.full_like(y, H), np.full_like(y, W),
                     y, x, h, w], 1)[:, None, :]


def tile_rows(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(B, K, 9) rows pasting tile k from slot k: source rects and destination rects (B, K, 4)."""
    B, K, _ = src.shape
    slots = np.broadcast_to(np.arange(K, dtype=np.int64)[None, :, None], (B, K, 1))
    return np.concatenate([slots, src, dst], 2).astype(np.int64)
