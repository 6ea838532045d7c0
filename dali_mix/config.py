"""MixRecipe: one typed, validated description of a mixing recipe.

Every field has the default of its paper / official code. CLI flags (train.py) and YAML/JSON
files map onto it (`MixRecipe.from_dict`, `MixRecipe.from_file`). Every bad value raises a
`ValueError` naming the field, the value and the valid range when the recipe is built, never
when the pipeline runs: each numeric field's range is stated once, in `FIELD_RANGES`, and
checked by `check_field`. What needs the images (their size, their value range) is checked by
`image_problems` when the pipeline is built (`random_mix`), warnings said once (`warn_once`).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

METHODS = ("mixup", "cutmix", "resizemix", "fmix", "cutout", "random_erasing")
"""Candidate names. The first four mix two samples; cutout and random_erasing keep the label."""

PAIR_METHODS = ("mixup", "cutmix", "resizemix", "fmix")
ERASE_METHODS = ("cutout", "random_erasing")


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric recipe field: a number between `lo` and `hi` (each bound
    included unless `lo_open` / `hi_open`; an infinite bound only says "no bound", the value
    must be finite), an integer when `integer`; `pair`: a (first, second) pair of such values,
    first <= second when `ordered`."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    pair: bool = False
    ordered: bool = True

    def holds(self, v: float) -> bool:
        """True when the single value `v` is in the range."""
        if not math.isfinite(v) or (self.integer and v != int(v)):
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        lo = "" if self.lo == -math.inf else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = "" if self.hi == math.inf else f"{'<' if self.hi_open else '<='} {self.hi:g}"
        if lo and hi:
            one = f"{kind} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        else:
            one = " ".join(x for x in (kind, lo, hi) if x)
        if not self.pair:
            return one
        return f"a pair (lo, hi), each {one}, with lo <= hi" if self.ordered else f"a pair, each {one}"


_UNIT = Range(0.0, 1.0, lo_open=True, pair=True)
#: The valid range of every numeric MixRecipe field, stated once (checked by `check_field` when
#: a recipe is built). The checks that need the images (`image_problems`) come on top.
FIELD_RANGES: dict[str, Range] = {
    "num_classes": Range(1, integer=True),
    "prob": Range(0.0, 1.0),
    "label_smoothing": Range(0.0, 1.0, hi_open=True),
    "channels": Range(1, integer=True),
    "mixup_alpha": Range(0.0, lo_open=True),
    "cutmix_alpha": Range(0.0, lo_open=True),
    "cutmix_minmax": _UNIT,
    "resizemix_scale": _UNIT,
    "fmix_alpha": Range(0.0, lo_open=True),
    "fmix_decay_power": Range(0.0, lo_open=True),
    "fmix_size": Range(1, integer=True, pair=True, ordered=False),
    "fmix_bank_size": Range(1, integer=True),
    "cutout_holes": Range(1, integer=True),
    "cutout_length": Range(2, integer=True),  # holes are [c - length//2, c + length//2): 1 is empty
    "erasing_prob": Range(0.0, 1.0),
    "erasing_area": _UNIT,
    "erasing_aspect": Range(0.0, lo_open=True, pair=True),
    "erasing_fill": Range(),  # or "random"; against the images' values: `image_problems`
    "seed": Range(0, integer=True),
}


def check_field(name: str, value):
    """`value` of the numeric field `name` checked against `FIELD_RANGES[name]`: returned as
    int / float (a tuple for pairs); ValueError naming the field, the value and the range."""
    rng = FIELD_RANGES[name]

    def one(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (rng.integer and not isinstance(v, int)):
            return None
        return v if rng.integer else float(v)

    bad = ValueError(f"{name} must be {rng}, got {value!r}")
    if rng.pair:
        try:
            first, second = value
        except (TypeError, ValueError):
            raise bad from None
        pair = (one(first), one(second))
        if None in pair or not all(rng.holds(v) for v in pair) or (rng.ordered and pair[0] > pair[1]):
            raise bad
        return pair
    v = one(value)
    if v is None or not rng.holds(v):
        raise bad
    return v


BOX_METHODS = ("cutmix", "resizemix", "fmix", "cutout", "random_erasing")
"""Methods that replace a part of the image (a box, a patch, a mask)."""

_WARNED: set[str] = set()


def image_problems(recipe: "MixRecipe", height: int, width: int,
                   value_range: tuple[float, float] | None = None,
                   units: str = "normalised units, (pixel - mean) / std") -> list[str]:
    """`recipe` against the images it will meet: `height` x `width` px, whose values lie in
    `value_range` (lo, hi) when known (the normalised range with a normalisation, 0-255 for
    uint8 pixels; None: unknown), in `units` (for the message). A value that cannot work
    raises ValueError naming the field, its value and the valid range for these images; a legal
    but degenerate one is returned as a warning line (`warn_once` says each once). Runs when
    the pipeline is built (`random_mix`)."""
    H, W = int(height), int(width)
    used = set(recipe.candidates) | set(recipe.after) if recipe.mixes else set()
    warnings_: list[str] = []
    boxes = [m for m in BOX_METHODS if m in used]
    if boxes and min(H, W) < 2:
        raise ValueError(f"image_size ({H}, {W}): {', '.join(boxes)} need images of at least 2x2 px "
                         "(on a 1-px side a box is the whole image or nothing)")
    if "cutout" in used:
        length, half = recipe.cutout_length, recipe.cutout_length // 2
        if half >= H and half >= W:
            raise ValueError(f"cutout_length {length} on {H}x{W} images: every hole covers the whole image; "
                             f"valid range for these images [2, {2 * max(H, W) - 1}] (a hole is "
                             "[c - length//2, c + length//2) around a centre c inside the image)")
        if 2 * half >= H and 2 * half >= W:
            warnings_.append(f"cutout_length {length} on {H}x{W} images: a hole centred near the middle covers "
                             f"the whole image (lengths below {2 * ((max(H, W) + 1) // 2)} never do)")
    if "random_erasing" in used and recipe.erasing_fill != "random" and value_range is not None:
        lo, hi = value_range
        if not lo <= recipe.erasing_fill <= hi:
            raise ValueError(f"erasing_fill {recipe.erasing_fill:g} is outside the values the images take: "
                             f"valid range [{lo:.4g}, {hi:.4g}] ({units})")
    return warnings_


def warn_once(lines, log=None) -> None:
    """Say each warning line once per process: through `log` ("warning: ..." lines) when given,
    else `warnings.warn`."""
    for line in lines:
        if line in _WARNED:
            continue
        _WARNED.add(line)
        if log is not None:
            log(f"warning: {line}")
        else:
            warnings.warn(line, UserWarning, stacklevel=3)


@dataclass(frozen=True)
class MixRecipe:
    """What to mix, how often, and how the targets look.

    Attributes:
        methods: candidate name -> weight (non-negative, not all zero); a list or tuple of names
            means equal weights (RandomMix's default). Empty: no mixing (plain one-hot targets).
        num_classes: number of classes C (>= 1); labels must lie in [0, C).
        prob: chance that a sample (mode "sample"), pair ("pair") or batch ("batch") is mixed.
        mode: "sample": a method and its parameters (lambda, box) drawn per sample (timm's
            "elem"); "pair": partners in pairs (i <-> j) sharing one draw (timm's "pair", even
            batch size); "batch": one method and one draw for the whole batch (the RandomMix
            paper, the official Mixup/CutMix code, timm's "batch").
        label_smoothing: eps; targets get eps / C on every class.
        target: "dense" ((N, C) float32) or "sparse" ((y_a, y_b, lam), for very many classes).
        no_self_pairs: pair every sample with another one (batch size > 1).
        layout: layout of the images given to `random_mix`: "HWC" (what DALI's decoders and
            `fn.resize` give, the default) or "CHW" (after `fn.crop_mirror_normalize`); checked
            against the data at run time. channels: C of the images.
        mixup_alpha: Mixup lam ~ Beta(a, a), paper 1.0 (timm's `mixup_alpha`).
        cutmix_alpha: CutMix lam ~ Beta(a, a), paper 1.0; cutmix_minmax: timm's box side range
            (fractions of the side) used instead of alpha when set.
        resizemix_scale: ResizeMix tau ~ U(lo, hi), paper (0.1, 0.8).
        fmix_alpha, fmix_decay_power: FMix lam ~ Beta(a, a) (1.0), decay power (3.0).
        fmix_size: (H, W) of the mask bank: the image size (None: `random_mix`'s image_size;
            another size is refused); fmix_bank_size: masks per bank (refreshed per epoch).
        cutout_holes, cutout_length: Cutout n holes of side `length` px (paper: 1, 16 on CIFAR-10).
        erasing_prob, erasing_area, erasing_aspect, erasing_fill: Random Erasing p = 0.5,
            area (0.02, 0.4), aspect (0.3, 1/0.3), fill "random" (N(0,1) noise in normalised
            units) or a number (normalised units). erasing_log_aspect: draw the aspect
            log-uniformly (timm, torchvision) instead of uniformly (the official code).
        after: steps applied to every sample after mixing (not candidates): any of "cutout",
            "random_erasing" (e.g. timm's `--reprob` together with Mixup/CutMix).
        fmix_spectrum: "official" (ecs-vlc/FMix's real spectrum: point-symmetric masks, the
            published results) or "paper" (a complex spectrum, the paper's formula).
        seed: seed of the FMix mask bank (the planner follows the pipeline's seed).
    """

    methods: Mapping[str, float] = field(default_factory=lambda: {m: 1.0 for m in PAIR_METHODS})
    num_classes: int = 1000
    prob: float = 1.0
    mode: str = "sample"
    label_smoothing: float = 0.0
    target: str = "dense"
    no_self_pairs: bool = True
    layout: str = "HWC"
    channels: int = 3
    mixup_alpha: float = 1.0
    cutmix_alpha: float = 1.0
    cutmix_minmax: tuple[float, float] | None = None
    resizemix_scale: tuple[float, float] = (0.1, 0.8)
    fmix_alpha: float = 1.0
    fmix_decay_power: float = 3.0
    fmix_size: tuple[int, int] | None = None
    fmix_bank_size: int = 256
    cutout_holes: int = 1
    cutout_length: int = 16
    erasing_prob: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_aspect: tuple[float, float] = (0.3, 1 / 0.3)
    erasing_fill: Any = "random"
    erasing_log_aspect: bool = False
    after: tuple[str, ...] = ()
    fmix_spectrum: str = "official"
    seed: int = 0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("methods", _normalise_methods(self.methods))
        _check_choice("mode", self.mode, ("sample", "pair", "batch"))
        _check_choice("target", self.target, ("dense", "sparse"))
        _check_choice("layout", self.layout, ("CHW", "HWC"))
        for name in FIELD_RANGES:  # every numeric field against its stated range
            value = getattr(self, name)
            if value is None and name in ("cutmix_minmax", "fmix_size"):
                continue
            if name == "erasing_fill" and value == "random":
                continue
            if name == "fmix_size" and isinstance(value, int) and not isinstance(value, bool):
                value = (value, value)
            set_(name, check_field(name, value))
        if not isinstance(self.erasing_log_aspect, bool):
            raise ValueError(f"erasing_log_aspect must be True or False, got {self.erasing_log_aspect!r}")
        after = (self.after,) if isinstance(self.after, str) else tuple(self.after)
        for step in after:
            _check_choice("after", step, ERASE_METHODS)
        set_("after", after)
        _check_choice("fmix_spectrum", self.fmix_spectrum, ("official", "paper"))

    # ---- derived views -------------------------------------------------------------------
    @property
    def candidates(self) -> tuple[str, ...]:
        """Names of the methods with a positive weight, in `METHODS` order (index = method id)."""
        return tuple(m for m in METHODS if self.methods.get(m, 0.0) > 0)

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(self.methods[m] for m in self.candidates)

    @property
    def mixes(self) -> bool:
        """True when any sample can be mixed or erased."""
        return (bool(self.candidates) and self.prob > 0) or bool(self.after)

    def with_(self, **changes) -> "MixRecipe":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # ---- files and dicts -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides) -> "MixRecipe":
        """Build from a mapping; unknown keys raise ValueError naming them."""
        data = {**dict(data), **overrides}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; known fields: {sorted(known)}")
        for key in ("cutmix_minmax", "resizemix_scale", "erasing_area", "erasing_aspect", "fmix_size", "after"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "MixRecipe":
        """Read a YAML (.yaml/.yml) or JSON file holding the fields as a mapping
        (`read_recipe_file`); `overrides` replace the file's fields."""
        data = read_recipe_file(path)
        try:
            return cls.from_dict(data, **overrides)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_timm(cls, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                  cutmix_minmax: tuple[float, float] | None = None, prob: float = 1.0,
                  switch_prob: float = 0.5, mode: str = "batch", correct_lam: bool = True,
                  label_smoothing: float = 0.1, num_classes: int = 1000,
                  **overrides) -> "MixRecipe":
        """The recipe of `timm.data.Mixup(...)` called with the same arguments (and defaults).

        Mapping: Mixup when mixup_alpha > 0, CutMix when cutmix_alpha > 0 or cutmix_minmax is
        set (timm then ignores cutmix_alpha); both: methods {"mixup": 1 - switch_prob,
        "cutmix": switch_prob}, so a sample (elem), pair or batch is mixed with probability
        `prob` and then cut with probability `switch_prob`, as in timm; neither: no mixing
        (label smoothing only, as timm's Mixup with both alphas 0). mode "batch" -> "batch",
        "pair" -> "pair", "elem" -> "sample". timm pairs sample i with N - 1 - i (the flipped
        batch); here partners are a random permutation (a random matching in "pair" mode): the
        same distribution over a shuffled batch. CutMix's lambda is always the exact area
        fraction of the clipped box, timm's `correct_lam=True`. Other MixRecipe fields (layout,
        seed, ...) go in `overrides`.

        Raises:
            ValueError: correct_lam=False with CutMix (lambda here is always the exact pixel
                fraction), mode "half" (no counterpart), any value MixRecipe refuses.
        """
        use_mixup = mixup_alpha > 0
        use_cutmix = cutmix_alpha > 0 or cutmix_minmax is not None
        if use_cutmix and not correct_lam and cutmix_minmax is None:
            raise ValueError("from_timm: correct_lam=False is not available: CutMix's lambda is "
                             "always the exact fraction of the clipped box's pixels (timm's "
                             "correct_lam=True)")
        timm_modes = {"batch": "batch", "pair": "pair", "elem": "sample"}
        if mode not in timm_modes:
            raise ValueError(f"from_timm: mode must be one of {list(timm_modes)} (timm's names), "
                             f"got {mode!r}; timm's 'half' (mix the first half of the batch, "
                             f"keep the unmixed second half) has no counterpart: use 'pair'")
        if use_mixup and use_cutmix:
            methods = {"mixup": 1.0 - switch_prob, "cutmix": switch_prob}
        else:
            methods = ["mixup"] if use_mixup else ["cutmix"] if use_cutmix else []
        fields_ = dict(methods=methods, num_classes=num_classes, prob=prob, mode=timm_modes[mode],
                       label_smoothing=label_smoothing, cutmix_minmax=cutmix_minmax,
                       mixup_alpha=mixup_alpha if use_mixup else 1.0,
                       cutmix_alpha=cutmix_alpha if cutmix_alpha > 0 else 1.0)
        return cls(**{**fields_, **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["methods"] = dict(self.methods)
        return d


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """The fields a YAML (.yaml/.yml) or JSON recipe file holds, as written (not validated);
    ValueError naming the file (and line) when it is missing, malformed or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recipe file not found: {path}")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:  # malformed YAML: name the file and the line
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ValueError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"recipe file {path} must hold a mapping of fields, got {type(data).__name__}")
    return dict(data)


def _normalise_methods(methods) -> dict[str, float]:
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, (list, tuple)):
        methods = {m: 1.0 for m in methods}
    if not isinstance(methods, Mapping):
        raise ValueError(f"methods must be a mapping name -> weight or a list of names, got {methods!r}")
    out = {}
    for name, w in methods.items():
        if name not in METHODS:
            raise ValueError(f"methods: unknown method {name!r}; choose from {list(METHODS)}")
        w = _num(f"methods[{name!r}]", w)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"methods: weight of {name!r} must be finite and >= 0, got {w}")
        out[name] = w
    if out and sum(out.values()) <= 0:
        raise ValueError(f"methods: weights must not all be zero, got {out}")
    return out


def _num(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    if not math.isfinite(float(v)):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return float(v)


def _check_choice(name: str, v, choices) -> None:
    if v not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {v!r}")
