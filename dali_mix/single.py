"""One method at a time: thin wrappers over `random_mix` with a one-candidate recipe.

    out = dm.cutmix(images, labels, num_classes=1000, image_size=224, alpha=1.0)

Each takes the images and labels as `random_mix` does, `num_classes`, `image_size`, the
method's own parameters (named as below) and any other `MixRecipe` field or `random_mix` keyword
(`normalize`, `executor`, `label_smoothing`, `mode`, ...); returns a `MixResult`. There is
one per method of the table (`dali_mix.methods.TABLE`), its short keywords the fields' aliases.
"""
from __future__ import annotations

from dataclasses import fields

from dali_mix.recipe import MixRecipe
from dali_mix.methods import TABLE
from dali_mix.mix import MixResult, random_mix

_RECIPE_FIELDS = {f.name for f in fields(MixRecipe)}


def _single(method: str, renames: dict[str, str]):
    def wrapper(images, labels, *, num_classes: int, image_size, **kwargs) -> MixResult:
        recipe_args = {renames.get(k, k): v for k, v in kwargs.items() if renames.get(k, k) in _RECIPE_FIELDS}
        call_args = {k: v for k, v in kwargs.items() if renames.get(k, k) not in _RECIPE_FIELDS}
        recipe = MixRecipe(methods=[method], num_classes=num_classes, **recipe_args)
        return random_mix(images, labels, recipe, image_size=image_size, **call_args)

    wrapper.__name__ = wrapper.__qualname__ = method
    wrapper.__doc__ = (f"{method} alone: `random_mix` with MixRecipe(methods=[{method!r}], ...); "
                       f"keywords {sorted(renames)} stand for the recipe fields "
                       f"{[renames[k] for k in sorted(renames)]}.")
    return wrapper


for _m in TABLE:  # one function per method of the table, keywords from its fields' aliases
    globals()[_m.name] = _single(_m.name, _m.aliases)

__all__ = [m.name for m in TABLE]
