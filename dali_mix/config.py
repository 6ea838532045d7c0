"""MixRecipe: one typed, validated description of a mixing recipe.

Every field has the default of its paper / official code. CLI flags (train.py) and YAML/JSON
files map onto it (`MixRecipe.from_dict`, `MixRecipe.from_file`). Every bad value raises a
`ValueError` naming the field when the recipe is built, never when the pipeline runs.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

METHODS = ("mixup", "cutmix", "resizemix", "fmix", "cutout", "random_erasing")
"""Candidate names. The first four mix two samples; cutout and random_erasing keep the label."""

PAIR_METHODS = ("mixup", "cutmix", "resizemix", "fmix")
ERASE_METHODS = ("cutout", "random_erasing")


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
        _check_int("num_classes", self.num_classes, 1)
        _check_range("prob", self.prob, 0.0, 1.0)
        _check_choice("mode", self.mode, ("sample", "pair", "batch"))
        if not 0.0 <= _num("label_smoothing", self.label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        _check_choice("target", self.target, ("dense", "sparse"))
        _check_choice("layout", self.layout, ("CHW", "HWC"))
        _check_int("channels", self.channels, 1)
        for name in ("mixup_alpha", "cutmix_alpha", "fmix_alpha", "fmix_decay_power"):
            if not _num(name, getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.cutmix_minmax is not None:
            set_("cutmix_minmax", _unit_pair("cutmix_minmax", self.cutmix_minmax))
        set_("resizemix_scale", _unit_pair("resizemix_scale", self.resizemix_scale))
        if self.fmix_size is not None:
            size = (self.fmix_size, self.fmix_size) if isinstance(self.fmix_size, int) else self.fmix_size
            if len(tuple(size)) != 2:
                raise ValueError(f"fmix_size must be (H, W), got {self.fmix_size!r}")
            for v in size:
                _check_int("fmix_size", v, 1)
            set_("fmix_size", tuple(int(v) for v in size))
        _check_int("fmix_bank_size", self.fmix_bank_size, 1)
        _check_int("cutout_holes", self.cutout_holes, 1)
        _check_int("cutout_length", self.cutout_length, 1)
        _check_range("erasing_prob", self.erasing_prob, 0.0, 1.0)
        set_("erasing_area", _unit_pair("erasing_area", self.erasing_area))
        lo, hi = _pair("erasing_aspect", self.erasing_aspect)
        if not 0 < lo <= hi:
            raise ValueError(f"erasing_aspect must satisfy 0 < lo <= hi, got {self.erasing_aspect!r}")
        set_("erasing_aspect", (lo, hi))
        if self.erasing_fill != "random" and not isinstance(self.erasing_fill, (int, float)):
            raise ValueError(f"erasing_fill must be 'random' or a number, got {self.erasing_fill!r}")
        if not isinstance(self.erasing_log_aspect, bool):
            raise ValueError(f"erasing_log_aspect must be True or False, got {self.erasing_log_aspect!r}")
        after = (self.after,) if isinstance(self.after, str) else tuple(self.after)
        for step in after:
            _check_choice("after", step, ERASE_METHODS)
        set_("after", after)
        _check_choice("fmix_spectrum", self.fmix_spectrum, ("official", "paper"))
        _check_int("seed", self.seed, 0)

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


def _check_int(name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def _check_range(name: str, v, lo: float, hi: float) -> None:
    if not lo <= _num(name, v) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v!r}")


def _check_choice(name: str, v, choices) -> None:
    if v not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {v!r}")


def _pair(name: str, v) -> tuple[float, float]:
    try:
        lo, hi = v
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi), got {v!r}") from None
    return _num(name, lo), _num(name, hi)


def _unit_pair(name: str, v) -> tuple[float, float]:
    lo, hi = _pair(name, v)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"{name} must satisfy 0 < lo <= hi <= 1, got {v!r}")
    return lo, hi
