"""MixRecipe: one typed, validated description of a mixing recipe.

Every field has the default of its paper / official code. CLI flags (train.py) and YAML/JSON
files map onto it (`MixRecipe.from_dict`, `MixRecipe.from_file`). Every bad value raises a
`ValueError` naming the field, the value and the valid range when the recipe is built, never
when the pipeline runs: each field's range is stated once, where the field is declared (the
recipe's own fields in `RECIPE_FIELDS`, each method's with the method in `dali_mix.methods`),
and checked by `Field.check`. What needs the images (their size, their value range) is checked by
`image_problems` when the pipeline is built (`random_mix`), warnings said once (`warn_once`).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from dali_mix import methods as _table
from dali_mix.effects import ERASE, MASK, PASTE
from dali_mix.fields import Field, number

LABEL_FORMATS = ("index", "multi_hot", "ids")
"""`MixRecipe.label_format`: "index" (one class id per sample), "multi_hot" ((C,) float32 or
uint8 0/1 vector per sample), "ids" (a variable-length list of class ids per sample, empty = no
class: what DALI's COCO reader and list files give)."""

METHODS = _table.METHODS
"""Candidate names, in the method table's order (`dali_mix.methods.TABLE`)."""

PAIR_METHODS = _table.PAIR_METHODS
"""The methods that mix a sample with one partner."""
ERASE_METHODS = _table.ERASE_METHODS
"""The methods that only erase pixels (the label is kept)."""

RECIPE_FIELDS: tuple[Field, ...] = (
    Field("methods", None, kind="any", doc="candidate name -> weight"),
    Field("num_classes", 1000, kind="int", lo=1, doc="number of classes C"),
    Field("prob", 1.0, lo=0.0, hi=1.0, doc="chance that a sample, pair or batch is mixed"),
    Field("mode", "sample", kind="choice", choices=("sample", "pair", "batch"), doc="draw per sample, pair or batch"),
    Field("label_smoothing", 0.0, lo=0.0, hi=1.0, open_hi=True, doc="eps"),
    Field("target", "dense", kind="choice", choices=("dense", "sparse"), doc="target form"),
    Field("no_self_pairs", True, kind="bool", doc="pair every sample with another one"),
    Field("layout", "HWC", kind="choice", choices=("CHW", "HWC"), doc="layout of the images"),
    Field("channels", 3, kind="int", lo=1, doc="C of the images"),
    Field("after", (), kind="any", doc="erasing steps after mixing"),
    Field("seed", 0, kind="int", lo=0, doc="seed of the FMix mask bank"),
    Field("label_format", "index", kind="choice", choices=LABEL_FORMATS,
          doc="labels per sample: one class id, a (C,) multi-hot vector, or a list of class ids"),
    Field("target_threshold", None, lo=0.0, hi=1.0, open_hi=True, optional=True,
          doc="binarise the dense targets after mixing: 1 where > threshold, else 0 (timm's target_threshold)"),
    Field("multi_label_smoothing", "classes", kind="choice", choices=("classes", "half"),
          doc="multi-label smoothing: off eps / C (timm's BCE) or towards 0.5 (timm's Mixup(multi_label=True))"),
    Field("ignore_index", 255, kind="int", doc="mask value of erased pixels (segmentation masks)"),
)
"""The recipe's own fields (the methods' fields come from the method table)."""

ALL_FIELDS: dict[str, Field] = {f.name: f for f in RECIPE_FIELDS + _table.FIELDS}


def _with_method_fields(cls):
    """Give the dataclass-to-be `cls` the fields of every method of the table (name, default),
    after its own; `__post_init__` checks them with their declarations."""
    for f in _table.FIELDS:
        cls.__annotations__[f.name] = object
        setattr(cls, f.name, f.default)
    cls.__doc__ += "\n    Method fields (from `dali_mix.methods.TABLE`):\n" + "".join(
        f"        {f.name} = {f.default!r}: {f.doc}.\n" for f in _table.FIELDS)
    return cls


@dataclass(frozen=True)
@_with_method_fields
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
        target: "dense" ((N, C) float32) or "sparse" ((y_a, y_b, lam), for very many classes;
            (labels (N, S), weights (N, S)) when a candidate draws from S > 2 samples).
        no_self_pairs: pair every sample with another one (batch size > 1).
        layout: layout of the images given to `random_mix`: "HWC" (what DALI's decoders and
            `fn.resize` give, the default) or "CHW" (after `fn.crop_mirror_normalize`); checked
            against the data at run time. channels: C of the images.
        after: steps applied to every sample after mixing (not candidates): any of the erasing
            methods (`ERASE_METHODS`: "cutout", "random_erasing"; e.g. timm's `--reprob`
            together with Mixup/CutMix).
        seed: seed of the FMix mask bank (the planner follows the pipeline's seed).
        label_format: the labels given to `random_mix` (`LABEL_FORMATS`): "index" (one class id
            per sample, the default), "multi_hot" ((C,) float32 or uint8 0/1 vector per sample)
            or "ids" (a variable-length list of class ids per sample, empty = no class). The
            multi-label formats give dense targets sum_k share_k * y_k over the plan's label
            slots, smoothed (`multi_label_smoothing`); target "sparse" is refused for them.
        target_threshold: None, or binarise the dense targets after mixing and smoothing: 1.0
            where > threshold, else 0.0 (timm's `BinaryCrossEntropy(target_threshold=...)`,
            train.py's `--bce-target-thresh`). Any label format.
        multi_label_smoothing: how `label_smoothing` eps moves multi-label targets: "classes"
            (y (1 - eps) + eps / C: off eps / C, on 1 - eps + eps / C, timm's BCE on class
            ids) or "half" (y (1 - eps) + eps / 2, timm's `Mixup(multi_label=True)`).
        ignore_index: the value erased pixels take in segmentation masks (`random_mix(masks=)`;
            the loss ignores it, `dali_mix.torch.mixed_segmentation_loss`).
        Each method's own fields (defaults of its paper / official code, valid ranges) are
        declared with the method in `dali_mix.methods`; they are listed below.
    """

    methods: Mapping[str, float] = field(default_factory=lambda: {m: 1.0 for m in _table.DEFAULT_CANDIDATES})
    num_classes: int = 1000
    prob: float = 1.0
    mode: str = "sample"
    label_smoothing: float = 0.0
    target: str = "dense"
    no_self_pairs: bool = True
    layout: str = "HWC"
    channels: int = 3
    after: tuple[str, ...] = ()
    seed: int = 0
    label_format: str = "index"
    target_threshold: float | None = None
    multi_label_smoothing: str = "classes"
    ignore_index: int = 255

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("methods", _normalise_methods(self.methods))
        for f in ALL_FIELDS.values():
            set_(f.name, f.check(getattr(self, f.name)))
        after = (self.after,) if isinstance(self.after, str) else tuple(self.after)
        for step in after:
            if step not in ERASE_METHODS:
                raise ValueError(f"after must be one of {list(ERASE_METHODS)}, got {step!r}")
        set_("after", after)
        if self.label_format != "index" and self.target == "sparse":
            raise ValueError(f"target 'sparse' needs label_format 'index' (one class id per sample), got "
                             f"label_format {self.label_format!r}: multi-label targets are dense (N, C)")
        if self.target_threshold is not None and self.target == "sparse":
            raise ValueError("target_threshold binarises dense targets: it needs target 'dense', got 'sparse'")
        if self.multi_label_smoothing != "classes" and self.label_format == "index":
            raise ValueError(f"multi_label_smoothing {self.multi_label_smoothing!r} is for multi-label "
                             f"targets: it needs label_format 'multi_hot' or 'ids', got 'index'")

    # ---- derived views -------------------------------------------------------------------
    @property
    def candidates(self) -> tuple[str, ...]:
        """Names of the methods with a positive weight, in `METHODS` order (index = method id)."""
        return tuple(m for m in METHODS if self.methods.get(m, 0.0) > 0)

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(self.methods[m] for m in self.candidates)

    @property
    def multi_label(self) -> bool:
        """True for the multi-label label formats ("multi_hot", "ids")."""
        return self.label_format != "index"

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
        for key in [f.name for f in ALL_FIELDS.values() if f.kind in ("pair", "size")] + ["after"]:
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
                  label_smoothing: float = 0.1, num_classes: int = 1000, multi_label: bool = False,
                  bce_loss: bool = False, bce_target_thresh: float | None = None,
                  **overrides) -> "MixRecipe":
        """The recipe of `timm.data.Mixup(...)` called with the same arguments (and defaults),
        and of timm's train.py `--bce-loss` / `--bce-target-thresh`.

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

        multi_label (timm's `Mixup(multi_label=True)`: dense (N, C) multi-hot targets smoothed
        towards 0.5): label_format "multi_hot" (override it with "ids" for lists of class ids)
        and multi_label_smoothing "half". bce_loss (train.py `--bce-loss`): timm keeps Mixup's
        targets and trains them with `BinaryCrossEntropy`, so the targets stay dense (target
        "sparse" is refused) and are the same; bce_target_thresh (`--bce-target-thresh`, used by
        timm only with `--bce-loss`): target_threshold, the binarisation timm's loss applies,
        done here in the pipeline. The loss is `dali_mix.torch.binary_cross_entropy`.

        Raises:
            ValueError: correct_lam=False with CutMix (lambda here is always the exact pixel
                fraction), mode "half" (no counterpart), bce_target_thresh without bce_loss
                (timm ignores it), bce_loss with target "sparse", any value MixRecipe refuses.
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
        if bce_target_thresh is not None and not bce_loss:
            raise ValueError("from_timm: bce_target_thresh is used by timm only with bce_loss=True "
                             "(train.py --bce-target-thresh without --bce-loss does nothing); pass both")
        if bce_loss and overrides.get("target", "dense") != "dense":
            raise ValueError("from_timm: bce_loss trains dense (N, C) targets with binary cross-entropy: "
                             f"target must be 'dense', got {overrides['target']!r}")
        fields_ = dict(methods=methods, num_classes=num_classes, prob=prob, mode=timm_modes[mode],
                       label_smoothing=label_smoothing, cutmix_minmax=cutmix_minmax,
                       mixup_alpha=mixup_alpha if use_mixup else 1.0,
                       cutmix_alpha=cutmix_alpha if cutmix_alpha > 0 else 1.0)
        if multi_label:
            fields_.update(label_format="multi_hot", multi_label_smoothing="half")
        if bce_target_thresh is not None:
            fields_["target_threshold"] = bce_target_thresh
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
        w = number(f"methods[{name!r}]", w)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"methods: weight of {name!r} must be finite and >= 0, got {w}")
        out[name] = w
    if out and sum(out.values()) <= 0:
        raise ValueError(f"methods: weights must not all be zero, got {out}")
    return out


BOX_METHODS = tuple(m.name for m in _table.TABLE if set(m.effects) & {PASTE, MASK, ERASE})
"""Methods that replace a part of the image (a box, a patch, a mask): from the method table."""

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
