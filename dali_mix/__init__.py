"""dali-mix: mixed-sample data augmentation inside NVIDIA DALI pipelines.

Inside your own ``@pipeline_def(enable_conditionals=True)``::

    import dali_mix as dm
    recipe = dm.MixRecipe(methods=["mixup", "cutmix", "resizemix", "fmix"], num_classes=1000)
    out = dm.random_mix(images, labels, recipe)     # images: CHW float, CPU or GPU
    return out.outputs()                             # (images, targets (N, C) float32)

Fast path (HWC uint8 images of a known size, recipe.layout "HWC"; parameters drawn by one
vectorised ``dm.MixPlanner`` external source, normalisation done inside)::

    out = dm.random_mix(images, labels, recipe, image_size=(224, 224),
                        normalize=dm.Normalization(mean, std, mirror=fn.random.coin_flip()))

Lower level: ``dm.pair`` then ``dm.mixup / cutmix / resizemix / fmix / cutout / random_erasing``
(each returns the mixed images and the exact lambda), ``dm.dense_targets``.
"""
__version__ = "0.1.0"

from dali_mix.config import METHODS, MixRecipe  # noqa: E402
from dali_mix.labels import dense_targets, scalar_labels  # noqa: E402
from dali_mix.masks import FMixMaskBank, fmix_ranks  # noqa: E402
from dali_mix.mix import MixResult, Normalization, output_names, random_mix  # noqa: E402
from dali_mix.mixers import (cutmix, cutout, fmix, mixup, mixup_normalized, random_erasing,  # noqa: E402
                             resizemix)
from dali_mix.pairing import Pairs, pair  # noqa: E402
from dali_mix.plan import MixPlanner, can_plan  # noqa: E402
from dali_mix.schedule import BatchClock, MixOffSchedule  # noqa: E402
from dali_mix.select import choose, select  # noqa: E402

__all__ = [
    "METHODS", "BatchClock", "MixOffSchedule", "MixPlanner", "MixRecipe", "MixResult",
    "Normalization", "mixup_normalized", "Pairs", "FMixMaskBank", "can_plan", "choose", "cutmix",
    "cutout", "dense_targets", "fmix", "fmix_ranks", "mixup", "output_names", "pair",
    "random_erasing", "random_mix", "resizemix", "scalar_labels", "select",
]
