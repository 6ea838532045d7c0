"""dali-mix: mixed-sample data augmentation inside NVIDIA DALI pipelines.

Inside your own `@pipeline_def` or class-based `Pipeline` (no conditionals needed)::

    import dali_mix as dm
    recipe = dm.MixRecipe(methods=["mixup", "cutmix", "resizemix", "fmix"], num_classes=1000)
    images = fn.resize(fn.decoders.image_random_crop(jpegs, device="mixed"), size=[224, 224])
    out = dm.random_mix(images, labels, recipe, image_size=224,
                        normalize=dm.Normalization(mean, std, mirror=fn.random.coin_flip()))
    return out.outputs()        # (CHW float32 images, (N, C) float32 targets), on the images' device

One planner (`dm.MixPlanner`) draws every random parameter of a batch; two executors apply it:
the fused C++ operator on the CPU, DALI's own operators on the GPU (`executor=`).
"""
__version__ = "0.1.0"

from dali_mix.recipe import METHODS, MixRecipe  # noqa: E402
from dali_mix.masks import FMixMaskBank  # noqa: E402
from dali_mix.mix import MixResult, Normalization, output_names, random_mix  # noqa: E402
from dali_mix.plan import MixPlanner, Plan  # noqa: E402
from dali_mix.schedule import BatchClock, MixOffSchedule  # noqa: E402
from dali_mix import single as _single  # noqa: E402
from dali_mix.single import *  # noqa: E402,F401,F403  (one function per method of the table)

__all__ = [
    "METHODS", "BatchClock", "FMixMaskBank", "MixOffSchedule", "MixPlanner", "MixRecipe",
    "MixResult", "Normalization", "Plan", "output_names", "random_mix", *_single.__all__,
]
