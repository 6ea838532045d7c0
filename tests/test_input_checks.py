"""random_mix refuses inputs it would mix wrongly: layout, image size, channel count, missing
image_size, a normalisation of images already normalised; each error names the expected and the
actual value.
Run on both executors (the fused operator checks the data itself, DALI's graph through a
per-batch check)."""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

import dali_mix as dm
from dali_mix import native

B = 4
IDENTITY = dm.Normalization(mean=(0.0,) * 3, std=(1.0,) * 3)


def run_once(images, layout, recipe, *, gpu=False, **kw):
    @pipeline_def(batch_size=B, num_threads=1, device_id=0 if gpu else None, seed=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        if gpu:
            x = x.gpu()
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(B)], batch=True)
        return dm.random_mix(x, y, recipe, **kw).outputs()

    p = pipe()
    p.build()
    return p.run()


def hwc(h, w, dtype=np.uint8):
    return [np.full((h, w, 3), 10 * i, dtype) for i in range(B)]


def chw(h, w):
    return [np.full((3, h, w), float(i), np.float32) for i in range(B)]


@pytest.fixture(params=["dali", "fused", pytest.param("gpu", marks=pytest.mark.gpu)])
def executor(request):
    """The executor, as random_mix's keywords: DALI's operators or the fused one on CPU images,
    DALI's operators on GPU images."""
    if request.param == "fused":
        native.load()
    if request.param == "gpu":
        return {"executor": "dali", "gpu": True}
    return {"executor": request.param}


def test_default_layout_on_normalised_chw_images_names_both(executor):
    """The old default (CHW) mixed HWC images along the wrong axes without a word; now the
    recipe's layout is checked against the data."""
    recipe = dm.MixRecipe(methods=["cutmix", "mixup"], num_classes=B)  # layout HWC by default
    with pytest.raises(RuntimeError, match=r"layout CHW but the recipe says HWC"):
        run_once(chw(8, 8), "CHW", recipe, image_size=8, **executor)


def test_chw_recipe_on_hwc_images_names_both(executor):
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=B, layout="CHW")
    with pytest.raises(RuntimeError, match=r"layout HWC but the recipe says CHW"):
        run_once(hwc(8, 8), "HWC", recipe, image_size=8, **executor)


@pytest.mark.parametrize("methods", [["cutmix", "resizemix"], ["mixup"], ["cutout", "random_erasing"]])
def test_wrong_image_size_names_expected_and_actual(executor, methods):
    recipe = dm.MixRecipe(methods=methods, num_classes=B, cutout_length=4)  # 16 would cover 8x8 images whole
    kw = dict(image_size=(8, 8), normalize=IDENTITY, **executor)
    with pytest.raises(RuntimeError, match=r"image 0 .*\(6, 8, 3\).*\(8, 8, 3\)|image 0 is 6x8 \(HxW\) but image_size is 8x8"):
        run_once(hwc(6, 8), "HWC", recipe, **kw)


@pytest.mark.parametrize("methods", [["cutmix", "fmix"], ["mixup"]])
def test_wrong_channel_count_names_expected_and_actual(executor, methods):
    """Grey images (one channel) for a recipe of three: refused before anything is mixed."""
    recipe = dm.MixRecipe(methods=methods, num_classes=B)  # channels 3
    grey = [np.full((8, 8, 1), 10 * i, np.uint8) for i in range(B)]
    with pytest.raises(RuntimeError, match=r"image 0 has shape \(8, 8, 1\).*MixRecipe.channels=3"
                                           r"|image 0 has 1 channels \(layout HWC\) but MixRecipe.channels is 3"):
        run_once(grey, "HWC", recipe, image_size=8, **executor)


def test_missing_image_size_is_refused_when_building():
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=B)
    with pytest.raises(ValueError, match="image_size"):
        run_once(hwc(8, 8), "HWC", recipe)


def test_normalize_with_a_chw_recipe_is_refused():
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=B, layout="CHW")
    with pytest.raises(ValueError, match="normalize takes uint8 HWC"):
        run_once(chw(8, 8), "CHW", recipe, image_size=8, normalize=IDENTITY)


def test_unknown_executor_is_refused():
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=B)
    with pytest.raises(ValueError, match="executor must be one of"):
        run_once(hwc(8, 8), "HWC", recipe, image_size=8, executor="gpu")


def test_pair_mode_needs_an_even_batch():
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=B, mode="pair")
    with pytest.raises(ValueError, match="even batch size"):
        dm.MixPlanner(recipe, 5, 8)


def test_a_recipe_that_never_mixes_still_checks_the_layout(executor):
    """prob=0 (or no candidates) only normalises; both executors still refuse images whose
    layout is not the recipe's instead of normalising already-normalised CHW images again
    (DALI's operators did so without a word), and images of another channel count."""
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=B, prob=0.0)  # layout HWC
    with pytest.raises(RuntimeError, match=r"layout CHW but the recipe says HWC"):
        run_once(chw(8, 8), "CHW", recipe, normalize=IDENTITY, **executor)
    grey = [np.full((8, 6, 1), 10 * i, np.uint8) for i in range(B)]
    with pytest.raises(RuntimeError, match=r"image 0 has shape \(8, 6, 1\) \(HWC\) but MixRecipe.channels is 3"
                                           r"|image 0 has 1 channels \(layout HWC\) but MixRecipe.channels is 3"):
        run_once(grey, "HWC", recipe, normalize=IDENTITY, **executor)
    out = run_once(hwc(8, 6), "HWC", recipe, normalize=IDENTITY, **executor)  # any size passes
    images = np.asarray(out[0].as_cpu().as_array() if executor.get("gpu") else out[0].as_array())
    np.testing.assert_array_equal(images, np.stack([np.full((3, 8, 6), 10.0 * i, np.float32)
                                                    for i in range(B)]))
