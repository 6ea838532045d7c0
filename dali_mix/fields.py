"""Recipe fields as declarations: a name, a default, a kind and a valid range, checked in one place.

`Field.check` turns a value given by a user (Python, YAML, JSON, CLI) into the field's value or
raises a one-line `ValueError` naming the field, the valid range and the value. `MixRecipe`'s
own fields (`dali_mix.recipe.RECIPE_FIELDS`) and each method's fields (`dali_mix.methods`) are
declared this way, so a range is stated once, where the field is declared.

Kinds: "float" and "int" (a number in [lo, hi], `open_lo` / `open_hi` exclude the bound),
"pair" (lo <= hi, both in the range; a list is taken as a tuple), "size" ((H, W) pixels, or
one int for a square), "bool", "choice" (one of `choices`), "fill" ("random" or a number),
"any" (unchecked; checked by its owner).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    """One recipe field.

    name: the `MixRecipe` attribute. default: its value when not given (the paper's / official
    code's). kind: see the module docstring. lo, hi: bounds of a number (each element of a
    pair); None: unbounded. open_lo, open_hi: exclude the bound. optional: None is allowed.
    choices: the values of a "choice". alias: the keyword of the single-method function
    (`dm.cutmix(alpha=...)`), None: the full name. doc: one line for the docs.
    """

    name: str
    default: Any
    kind: str = "float"
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    optional: bool = False
    choices: tuple = ()
    alias: str | None = None
    doc: str = ""

    def check(self, value):
        """The field's value for `value` (pairs and sizes as tuples), or ValueError naming the
        field, what it must be and the value."""
        if value is None and self.optional:
            return None
        kind = self.kind
        if kind == "any":
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be True or False, got {value!r}")
            return value
        if kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
            return value
        if kind == "fill":
            if value == "random":
                return value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{self.name} must be 'random' or a finite number, got {value!r}")
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not self._inside(value):
                raise ValueError(f"{self.name} must be an integer {self.range_text()}, got {value!r}")
            return value
        if kind == "float":
            v = number(self.name, value)
            if not self._inside(v):
                raise ValueError(f"{self.name} must be a finite number {self.range_text()}, got {value!r}")
            return v
        if kind == "pair":
            try:
                lo, hi = value
            except (TypeError, ValueError):
                raise ValueError(f"{self.name} must be a pair (lo, hi), got {value!r}") from None
            lo, hi = number(self.name, lo), number(self.name, hi)
            if not (self._inside(lo) and self._inside(hi) and lo <= hi):
                raise ValueError(f"{self.name} must satisfy {self.range_text('lo <= hi')}, got {value!r}")
            return lo, hi
        if kind == "size":
            size = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
            try:
                size = tuple(size)
            except TypeError:
                raise ValueError(f"{self.name} must be (H, W), got {value!r}") from None
            if len(size) != 2:
                raise ValueError(f"{self.name} must be (H, W), got {value!r}")
            for v in size:
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ValueError(f"{self.name} must be an integer >= 1 (each of H, W), got {value!r}")
            return tuple(int(v) for v in size)
        raise AssertionError(f"field {self.name}: unknown kind {kind!r}")

    def _inside(self, v) -> bool:
        if self.lo is not None and (v <= self.lo if self.open_lo else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.open_hi else v > self.hi):
            return False
        return True

    def range_text(self, middle: str | None = None) -> str:
        """The valid range as text: "> 0", "in [0, 1]", ">= 1", "0 < lo <= hi <= 1"."""
        lo_op = "<" if self.open_lo else "<="
        hi_op = "<" if self.open_hi else "<="
        if middle is not None:
            left = f"{_fmt(self.lo)} {lo_op} " if self.lo is not None else ""
            right = f" {hi_op} {_fmt(self.hi)}" if self.hi is not None else ""
            return f"{left}{middle}{right}"
        if self.lo is not None and self.hi is not None:
            return (f"in {'(' if self.open_lo else '['}{_fmt(self.lo)}, {_fmt(self.hi)}"
                    f"{')' if self.open_hi else ']'}")
        if self.lo is not None:
            return f"{'>' if self.open_lo else '>='} {_fmt(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.open_hi else '<='} {_fmt(self.hi)}"
        return "a number"


def number(name: str, v) -> float:
    """`v` as a finite float, or ValueError naming `name`."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    if not math.isfinite(float(v)):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return float(v)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
