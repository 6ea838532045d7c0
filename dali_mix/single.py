"""One method at a time: thin wrappers over `random_mix` with a one-candidate recipe.

    out = dm.cutmix(images, labels, num_classes=1000, image_size=224, alpha=1.0)

Each takes the images and labels as `random_mix` does, `num_classes`, `image_size`, the
method's own parameters (named as below) and any other `MixRecipe` field or `random_mix` keyword
(`normalize`, `executor`, `label_smoothing`, `mode`, ...); returns a `MixResult`.
"""
from __future__ import annotations

from dataclasses import fields

from dali_mix.config import MixRecipe
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


mixup = _single("mixup", {"alpha": "mixup_alpha"})
cutmix = _single("cutmix", {"alpha": "cutmix_alpha", "minmax": "cutmix_minmax"})
resizemix = _single("resizemix", {"scale": "resizemix_scale"})
fmix = _single("fmix", {"alpha": "fmix_alpha", "decay_power": "fmix_decay_power"})
cutout = _single("cutout", {"holes": "cutout_holes", "length": "cutout_length"})
random_erasing = _single("random_erasing", {"p": "erasing_prob", "area": "erasing_area",
                                            "aspect": "erasing_aspect", "fill": "erasing_fill"})
