"""The method table: every mixing and erasing method, each one declaration.

A `Method` says everything about a method that is not written once for all of them: its name,
its role (it mixes labels, or it only erases pixels), its recipe fields (`Field`: default and
valid range, where the field is declared), the effect kinds it uses (`dali_mix.effects`), how
many samples an output draws from, and its draw: a vectorised numpy function of the samples
drawn together (`DrawContext` -> an effect), built on the shared samplers of
`dali_mix.draws`. The planner (`dali_mix.plan`) runs the draws and the executors
(`dali_mix.execute`) implement the effect kinds, each once; the label shares follow from the
plan (`Plan.shares`).

Derived from this table, not listed again: `MixRecipe`'s method fields and their checks, the
method names a recipe accepts (`METHODS`), the `after` steps, the single-method functions
(`dm.cutmix`, ...), train.py's `--mix` choices, the preview's names, the throughput
benchmark's contenders and the README's method list (`method_list_markdown`). The table's
order is the draw order of the plan's random stream and the order of `MixRecipe.candidates`,
so a new method goes after the existing ones of its role (docs/adding-a-method.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dali_mix import draws
from dali_mix.effects import (BLEND, CUTOUT, ERASE, MASK, PASTE, RANDOM_ERASING, Blend, Erase,
                              Mask, Paste, same_place_rows, tile_rows, whole_image_rows)
from dali_mix.fields import Field

MIX, ERASES = "mix", "erase"
"""Roles: a MIX method takes pixels from other samples and weights their labels; an ERASES
method only overwrites pixels (the label is kept), as a candidate or as an `after` step."""


@dataclass(frozen=True)
class DrawContext:
    """What a draw may read: rng (the `numpy.random.Generator` of the plans drawn together), n
    (samples drawn: one or more whole batches), H, W (image size, pixels), recipe (the
    `MixRecipe`), fmix_bank (the FMix mask bank or None), batch (samples per batch; n when None).
    Per-sample draws are for all n samples; a draw that picks samples of the batch (sources)
    makes it per batch (`per_batch`)."""

    rng: np.random.Generator
    n: int
    H: int
    W: int
    recipe: object
    fmix_bank: object = None
    batch: int | None = None

    def per_batch(self, draw: Callable[[np.random.Generator, int], np.ndarray]) -> np.ndarray:
        """`draw(rng, batch)` for each batch in turn, concatenated along the first axis: arrays
        over the n samples whose values index a sample of their own batch."""
        b = self.batch or self.n
        return np.concatenate([draw(self.rng, b) for _ in range(self.n // b)])


@dataclass(frozen=True)
class Method:
    """One method.

    name: its recipe name. role: MIX or ERASES. summary: one line for the docs and help.
    reference: the code its draw restates. fields: its recipe fields. effects: the effect kinds
    its draw returns. sources: samples an output draws from (2: itself and its partner).
    draw: DrawContext -> effect (arrays over the whole batch). default_candidate: one of
    RandomMix's default candidates (`MixRecipe()`, train.py's `randommix`). resized: its paste
    rows resize their source (DALI's operators then shrink the whole partner with `fn.resize`).
    """

    name: str
    role: str
    summary: str
    reference: str
    fields: tuple[Field, ...]
    effects: tuple[str, ...]
    draw: Callable[[DrawContext], object]
    sources: int = 2
    default_candidate: bool = False
    resized: bool = False

    @property
    def aliases(self) -> dict[str, str]:
        """Single-method keyword -> recipe field (`dm.cutmix(alpha=...)`)."""
        return {f.alias: f.name for f in self.fields if f.alias}


def _alpha(name: str, doc: str) -> Field:
    return Field(name, 1.0, lo=0.0, open_lo=True, alias="alpha", doc=doc)


# ---- the declarations -----------------------------------------------------------------------

MIXUP = Method(
    "mixup", MIX, "lam * x_i + (1 - lam) * x_j, lam ~ Beta(a, a)", "facebookresearch/mixup-cifar10, timm mixup.py",
    fields=(_alpha("mixup_alpha", "Mixup lam ~ Beta(a, a), paper 1.0 (timm's mixup_alpha)"),),
    effects=(BLEND,), default_candidate=True,
    draw=lambda d: Blend(draws.mixup_lams(d.rng, d.n, d.recipe.mixup_alpha)),
)

CUTMIX = Method(
    "cutmix", MIX, "a box of x_j pasted at the same place in x_i, side sqrt(1 - lam), clipped",
    "clovaai/CutMix-PyTorch rand_bbox, timm rand_bbox(_minmax)",
    fields=(_alpha("cutmix_alpha", "CutMix lam ~ Beta(a, a), paper 1.0"),
            Field("cutmix_minmax", None, kind="pair", lo=0.0, hi=1.0, open_lo=True, optional=True,
                  alias="minmax", doc="timm's box side range (fractions of the side), instead of alpha")),
    effects=(PASTE,), default_candidate=True,
    draw=lambda d: Paste(same_place_rows(*draws.cutmix_boxes(
        d.rng, d.n, d.H, d.W, d.recipe.cutmix_alpha, d.recipe.cutmix_minmax))),
)

RESIZEMIX = Method(
    "resizemix", MIX, "x_j shrunk by tau ~ U(lo, hi) pasted whole inside x_i", "JayQine/ResizeMix getbox_new",
    fields=(Field("resizemix_scale", (0.1, 0.8), kind="pair", lo=0.0, hi=1.0, open_lo=True,
                  alias="scale", doc="ResizeMix tau ~ U(lo, hi), paper (0.1, 0.8)"),),
    effects=(PASTE,), default_candidate=True, resized=True,
    draw=lambda d: Paste(whole_image_rows(*draws.resizemix_patches(
        d.rng, d.n, d.H, d.W, d.recipe.resizemix_scale), d.H, d.W)),
)


def _fmix_draw(d: DrawContext) -> Mask:
    k, entry, flips = draws.fmix_masks(d.rng, d.n, d.H * d.W, d.fmix_bank.bank_size, d.recipe.fmix_alpha)
    return Mask(k, entry, flips)


FMIX = Method(
    "fmix", MIX, "a low-frequency Fourier mask: the top lam * N pixels keep x_i", "ecs-vlc/FMix sample_mask",
    fields=(_alpha("fmix_alpha", "FMix lam ~ Beta(a, a), 1.0"),
            Field("fmix_decay_power", 3.0, lo=0.0, open_lo=True, alias="decay_power",
                  doc="FMix spectrum decay power, 3.0"),
            Field("fmix_size", None, kind="size", optional=True,
                  doc="(H, W) of the mask bank: the image size (None: random_mix's image_size)"),
            Field("fmix_bank_size", 256, kind="int", lo=1, doc="masks per bank (refreshed per epoch)"),
            Field("fmix_spectrum", "official", kind="choice", choices=("official", "paper"),
                  doc="'official' (ecs-vlc/FMix's real spectrum) or 'paper' (complex spectrum)")),
    effects=(MASK,), default_candidate=True, draw=_fmix_draw,
)


def _four_tiles(tiles) -> Callable[[DrawContext], Paste]:
    """The draw of a four-image method whose sampler `tiles(ctx)` gives (source rects,
    destination rects) (B, 4, 4): tile k from slot k, the slots the sample itself and the next
    three of a random cycle (`draws.source_cycles`; the rule for batches of fewer than four)."""
    def draw(d: DrawContext) -> Paste:
        rows = tile_rows(*tiles(d))
        return Paste(rows, d.per_batch(lambda rng, b: draws.source_cycles(rng, b, 4)))
    return draw


RICAP = Method(
    "ricap", MIX, "four crops from four samples fill the quadrants around a boundary point "
    "(round(H Beta(b, b)), round(W Beta(b, b)))", "jackryo/ricap TrainerRICAP.ricap",
    fields=(Field("ricap_beta", 0.3, lo=0.0, open_lo=True, alias="beta",
                  doc="RICAP boundary ~ Beta(b, b) per side, official 0.3"),),
    effects=(PASTE,), sources=4,
    draw=_four_tiles(lambda d: draws.ricap_tiles(d.rng, d.n, d.H, d.W, d.recipe.ricap_beta)),
)

MOSAIC = Method(
    "mosaic", MIX, "four samples around a random centre of a 2x canvas (YOLOv5), the output "
    "its centre window", "ultralytics/yolov5 load_mosaic",
    fields=(), effects=(PASTE,), sources=4,
    draw=_four_tiles(lambda d: draws.mosaic_tiles(d.rng, d.n, d.H, d.W)),
)


def _cutout_draw(d: DrawContext) -> Erase:
    r = d.recipe
    return Erase(*draws.cutout_boxes(d.rng, d.n, d.H, d.W, r.cutout_holes, r.cutout_length), CUTOUT)


CUTOUT_METHOD = Method(
    "cutout", ERASES, "n square holes of side L, centre uniform, clipped (label kept)", "uoguelph-mlrg/Cutout",
    fields=(Field("cutout_holes", 1, kind="int", lo=1, alias="holes", doc="Cutout holes per image (paper 1)"),
            Field("cutout_length", 16, kind="int", lo=2, alias="length",
                  doc="hole side in pixels (paper 16 on CIFAR-10; >= 2: a hole is "
                      "[c - length//2, c + length//2), so 1 is empty)")),
    effects=(ERASE,), draw=_cutout_draw,
)


def _erasing_draw(d: DrawContext) -> Erase:
    r = d.recipe
    y, x, h, w = draws.erasing_boxes(d.rng, d.n, d.H, d.W, r.erasing_prob, r.erasing_area,
                                     r.erasing_aspect, r.erasing_log_aspect)
    return Erase(y[:, None], x[:, None], h[:, None], w[:, None], RANDOM_ERASING)


RANDOM_ERASING_METHOD = Method(
    "random_erasing", ERASES, "with p, a rectangle of area U(lo, hi) and aspect U(lo, hi) erased (label kept)",
    "zhunzhong07/Random-Erasing",
    fields=(Field("erasing_prob", 0.5, lo=0.0, hi=1.0, alias="p", doc="Random Erasing p = 0.5"),
            Field("erasing_area", (0.02, 0.4), kind="pair", lo=0.0, hi=1.0, open_lo=True, alias="area",
                  doc="area fraction range (0.02, 0.4)"),
            Field("erasing_aspect", (0.3, 1 / 0.3), kind="pair", lo=0.0, open_lo=True, alias="aspect",
                  doc="aspect range (0.3, 1/0.3)"),
            Field("erasing_fill", "random", kind="fill", alias="fill",
                  doc="'random' (N(0, 1) noise in normalised units) or a number"),
            Field("erasing_log_aspect", False, kind="bool",
                  doc="draw the aspect log-uniformly (timm, torchvision) instead of uniformly")),
    effects=(ERASE,), draw=_erasing_draw,
)

TABLE: tuple[Method, ...] = (MIXUP, CUTMIX, RESIZEMIX, FMIX, RICAP, MOSAIC, CUTOUT_METHOD,
                             RANDOM_ERASING_METHOD)
"""Every method, in draw order (see the module docstring)."""

BY_NAME: dict[str, Method] = {m.name: m for m in TABLE}
METHODS: tuple[str, ...] = tuple(m.name for m in TABLE)
MIX_METHODS: tuple[str, ...] = tuple(m.name for m in TABLE if m.role == MIX)
PAIR_METHODS: tuple[str, ...] = tuple(m.name for m in TABLE if m.role == MIX and m.sources == 2)
ERASE_METHODS: tuple[str, ...] = tuple(m.name for m in TABLE if m.role == ERASES)
DEFAULT_CANDIDATES: tuple[str, ...] = tuple(m.name for m in TABLE if m.default_candidate)
FIELDS: tuple[Field, ...] = tuple(f for m in TABLE for f in m.fields)


def method(name: str) -> Method:
    """The declaration of `name`; ValueError naming the known ones."""
    if name not in BY_NAME:
        raise ValueError(f"unknown method {name!r}; choose from {list(METHODS)}")
    return BY_NAME[name]


def max_sources(names) -> int:
    """Label slots S of a plan over the methods `names`: 2, or more for a many-source method."""
    return max([2] + [BY_NAME[n].sources for n in names])


def method_list_markdown() -> str:
    """The README's method list: one line per method, from the table."""
    lines = []
    for m in TABLE:
        knobs = ", ".join(f"`{f.name}`" for f in m.fields)
        lines.append(f"- **{m.name}** ({'mixes labels' if m.role == MIX else 'keeps the label'}): "
                     f"{m.summary}; fields {knobs}; reference {m.reference}.")
    return "\n".join(lines)
