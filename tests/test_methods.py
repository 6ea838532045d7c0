"""The method table (`dali_mix.methods`): every method one declaration, and what is derived
from it: the recipe's fields and their declared ranges, the single-method functions, train.py's
--mix choices, the benchmark contenders, and the docs that must describe every method."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import dali_mix as dm
from dali_mix import methods
from dali_mix.recipe import ALL_FIELDS, RECIPE_FIELDS
from dali_mix.fields import Field

ROOT = Path(__file__).resolve().parents[1]


def test_the_recipe_has_exactly_the_declared_fields_with_their_defaults():
    from dataclasses import fields

    names = [f.name for f in fields(dm.MixRecipe)]
    assert names == [f.name for f in RECIPE_FIELDS] + [f.name for f in methods.FIELDS]
    recipe = dm.MixRecipe()
    for f in methods.FIELDS:
        assert getattr(recipe, f.name) == f.default, f.name
    assert recipe.candidates == methods.DEFAULT_CANDIDATES == ("mixup", "cutmix", "resizemix", "fmix")


def _outside(f: Field):
    """Values just outside a numeric field's declared range (and the bound itself when open)."""
    if f.kind not in ("float", "int", "pair"):
        return []
    out = []
    step = 1 if f.kind == "int" else 1e-6
    if f.lo is not None:
        out.append(f.lo if f.open_lo else f.lo - step)
    if f.hi is not None:
        out.append(f.hi if f.open_hi else f.hi + step)
    if f.kind == "pair":
        inside = f.default if f.default is not None else (0.5, 0.5)
        out = [(v, inside[1]) for v in out if f.lo is not None and v <= inside[1]] + \
              [(inside[0], v) for v in out if f.hi is not None and v >= inside[0]]
    return out


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS.values() if _outside(f)], ids=lambda f: f.name)
def test_every_declared_range_is_enforced_naming_the_field(f):
    for bad in _outside(f):
        with pytest.raises(ValueError, match=re.escape(f.name)):
            dm.MixRecipe(**{f.name: bad})
    if f.default is not None and f.name != "methods":
        assert getattr(dm.MixRecipe(**{f.name: f.default}), f.name) == f.default


def test_derived_lists_follow_the_table():
    import train
    from benchmarks import throughput

    mixing = [m.name for m in methods.TABLE if m.role == methods.MIX]
    assert list(train.MIX_CHOICES) == ["none", *mixing, "randommix"]
    for m in mixing:
        assert throughput.DALI_METHODS[f"dali-{m}"] == {m: 1.0}
    assert set(throughput.DALI_METHODS["dali-randommix-all"]) == set(mixing)
    for m in methods.TABLE:
        fn = getattr(dm, m.name)
        assert fn.__name__ == m.name and all(a in fn.__doc__ for a in m.aliases)
    assert methods.max_sources(["mixup", "cutmix"]) == 2 and methods.max_sources(["cutmix", "ricap"]) == 4


def test_docs_describe_every_method_and_field():
    readme = (ROOT / "README.md").read_text()
    fidelity = (ROOT / "docs" / "fidelity.md").read_text()
    for m in methods.TABLE:
        assert f"| `{m.name}` |" in readme, f"README.md's method table has no row for {m.name}"
        title = {"random_erasing": "Random Erasing", "resizemix": "ResizeMix", "cutmix": "CutMix",
                 "fmix": "FMix", "ricap": "RICAP"}.get(m.name, m.name.capitalize())
        assert f"| {title} |" in fidelity, f"docs/fidelity.md has no row for {m.name}"
        for f in m.fields:
            if f.name not in ("fmix_spectrum", "erasing_log_aspect"):  # described in prose
                assert f"`{f.name}`" in readme, f"README.md does not describe {f.name}"
    assert "RICAP" in (ROOT / "docs" / "adding-a-method.md").read_text()
