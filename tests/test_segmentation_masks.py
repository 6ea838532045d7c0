"""Segmentation masks and the source map moved by the plan, on both executors, checked by value.

Test images show their classes: every pixel has the colour of its class (a constant colour
per class, classes drawn per 4x4 block) and the mask holds that class. After mixing, for every
paste method (CutMix, ResizeMix, FMix, RICAP, Mosaic) each output pixel's mask value must be
the class whose colour the pixel shows; Mixup keeps the own mask in `masks`, the partner's in
`masks_b` and `mask_weight` equals lambda exactly; erased pixels are `ignore_index` in both
masks; the source map's partner fraction is 1 - lambda (to one pixel); uint8 HWC, normalised
(with a random mirror) and CHW float inputs; odd batch sizes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm
from dali_mix.torch import mixed_segmentation_loss

MEAN, STD = (100.0, 110.0, 120.0), (50.0, 60.0, 70.0)
H, W, K = 16, 20, 6  # non-square: an H/W swap shows; K classes
IGNORE = 255


def colour(k) -> np.ndarray:
    k = np.asarray(k)
    return np.stack([10 + 40 * k, 200 - 30 * k, 7 + 11 * k], -1).astype(np.uint8)


def scene(i: int) -> np.ndarray:
    """(H, W) uint8 class map of sample i: a class per 4x4 block, drawn from i."""
    rng = np.random.default_rng(100 + i)
    return np.kron(rng.integers(0, K, (H // 4, W // 4)), np.ones((4, 4), np.int64)).astype(np.uint8)


def run(methods, executor: str, kind: str, n: int = 7, batches: int = 2, mask_shape: str = "HW",
        source_map: bool = True, **fields):
    layout = "CHW" if kind == "chw" else "HWC"
    recipe = dm.MixRecipe(methods=methods, num_classes=K, layout=layout, **fields)
    masks = [scene(i) for i in range(n)]
    hwc = [colour(m) for m in masks]
    images = hwc if layout == "HWC" else \
        [np.ascontiguousarray(((a - 120.0) / 60.0).astype(np.float32).transpose(2, 0, 1)) for a in hwc]
    mask_in = masks if mask_shape == "HW" else [m[:, :, None].astype(np.int32) for m in masks]

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=11)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        m = fn.external_source(source=lambda: mask_in, batch=True)
        y = fn.external_source(source=lambda: [np.array([i % K], np.int32) for i in range(n)], batch=True)
        flip = fn.random.coin_flip(seed=3)
        norm = dm.Normalization(MEAN, STD, mirror=flip) if kind == "normalize" else None
        out = dm.random_mix(x, y, recipe, image_size=(H, W), normalize=norm, executor=executor,
                            masks=m, source_map=source_map)
        return (*out.outputs(), out.lam, out.labels_b, fn.cast(flip, dtype=types.INT32))

    p = pipe()
    p.build()
    names = dm.output_names(recipe, masks=True, source_map=source_map) + ["lam", "perm_label", "flip"]
    got = []
    for _ in range(batches):
        outs = p.run()
        got.append({k: np.stack([np.asarray(t[i]) for i in range(n)]) for k, t in zip(names, outs)})
    return recipe, np.stack(masks), got


def shown_class(images: np.ndarray, kind: str) -> np.ndarray:
    """(N, H, W) class whose colour each output pixel shows (-1: no class colour)."""
    x = images.astype(np.float64)
    if kind == "normalize":
        x = x.transpose(0, 2, 3, 1) * np.array(STD) + np.array(MEAN)
    elif kind == "chw":
        x = x.transpose(0, 2, 3, 1) * 60.0 + 120.0
    dist = np.abs(x[..., None, :] - colour(np.arange(K)).astype(np.float64)).max(-1)  # (N, H, W, K)
    cls = dist.argmin(-1)
    return np.where(dist.min(-1) < 0.05, cls, -1)


@pytest.mark.parametrize("executor", ["fused", "dali"])
@pytest.mark.parametrize("kind", ["uint8", "normalize", "chw"])
@pytest.mark.parametrize("method", ["cutmix", "resizemix", "fmix", "ricap", "mosaic"])
def test_paste_masks_follow_the_pixels(method, kind, executor):
    recipe, _, batches = run([method], executor, kind)
    for b in batches:
        shown = shown_class(b["images"], kind)
        assert (shown >= 0).all(), "a pixel shows no class colour"
        np.testing.assert_array_equal(b["masks"], shown)
        np.testing.assert_array_equal(b["masks_b"], b["masks"])
        np.testing.assert_array_equal(b["mask_weight"], np.ones(len(shown), np.float32))
        assert b["masks"].dtype == np.int64 and b["masks"].shape == (len(shown), H, W)


@pytest.mark.parametrize("executor", ["fused", "dali"])
@pytest.mark.parametrize("method", ["cutmix", "fmix"])
def test_source_map_fraction_is_one_minus_lambda(method, executor):
    _, masks, batches = run([method], executor, "uint8")
    for b in batches:
        frac = b["source"].reshape(len(b["lam"]), -1).mean(1)
        np.testing.assert_allclose(frac, 1.0 - b["lam"], atol=1.0 / (H * W) + 1e-6)
        # where the map says "own", the mask is the sample's own mask
        own = b["source"] == 0
        np.testing.assert_array_equal(b["masks"][own], masks[own])
        assert set(np.unique(b["source"])) <= {0, 1}


@pytest.mark.parametrize("executor", ["fused", "dali"])
@pytest.mark.parametrize("kind", ["uint8", "normalize"])
def test_mixup_keeps_both_masks_and_lambda(kind, executor):
    recipe, masks, batches = run(["mixup"], executor, kind, mask_shape="HW1")
    for b in batches:
        flip = b["flip"].reshape(-1).astype(bool) if kind == "normalize" else np.zeros(len(masks), bool)
        own = np.where(flip[:, None, None], masks[:, :, ::-1], masks)
        np.testing.assert_array_equal(b["masks"], own)
        # the partner: the sample whose label is labels_b (labels are i % K; n = 7 > K, so
        # compare the partner's mask via the source of each pixel: blends take every pixel)
        partner_ok = [any(np.array_equal(b["masks_b"][i], (m[:, ::-1] if flip[i] else m))
                          for j, m in enumerate(masks) if j % K == b["perm_label"][i] and j != i)
                      for i in range(len(masks))]
        assert all(partner_ok)
        np.testing.assert_array_equal(b["mask_weight"], b["lam"])
        assert (b["mask_weight"] < 1).all()
        np.testing.assert_array_equal(b["source"], 0)  # a blend moves no pixel


@pytest.mark.parametrize("executor", ["fused", "dali"])
@pytest.mark.parametrize("erasing", ["cutout", "random_erasing"])
def test_erased_pixels_are_ignore_index_in_both_masks(erasing, executor):
    recipe, _, batches = run(["mixup", "cutmix"], executor, "uint8", after=[erasing], erasing_prob=1.0,
                             cutout_length=6, ignore_index=IGNORE)
    for b in batches:
        shown = shown_class(b["images"], "uint8")
        erased = b["masks"] == IGNORE
        assert erased.any(axis=(1, 2)).all()  # every sample lost a rectangle
        np.testing.assert_array_equal(b["masks_b"] == IGNORE, erased)
        # outside the erased pixels the masks are classes; cut samples show their class there
        assert (b["masks"][~erased] < K).all()
        cut = b["mask_weight"] == 1.0
        np.testing.assert_array_equal(b["masks"][cut][~erased[cut]], shown[cut][~erased[cut]])
        # erased pixels show no class colour (Cutout's fill 0 is none of the colours)
        if erasing == "cutout":
            assert (shown[erased] == -1).all()


def test_unmixed_recipe_passes_masks_through():
    recipe, masks, batches = run([], "dali", "normalize", source_map=True)
    for b in batches:
        flip = b["flip"].reshape(-1).astype(bool)
        np.testing.assert_array_equal(b["masks"], np.where(flip[:, None, None], masks[:, :, ::-1], masks))
        np.testing.assert_array_equal(b["mask_weight"], 1.0)
        np.testing.assert_array_equal(b["source"], 0)


@pytest.mark.parametrize("executor", ["fused", "dali"])
def test_mask_of_the_wrong_size_is_named(executor):
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=K)

    @pipeline_def(batch_size=3, num_threads=1, device_id=None, seed=1)
    def pipe():
        x = fn.external_source(source=lambda: [colour(scene(i)) for i in range(3)], batch=True, layout="HWC")
        m = fn.external_source(source=lambda: [scene(i).T.copy() for i in range(3)], batch=True)  # W x H
        y = fn.external_source(source=lambda: [np.array([0], np.int32)] * 3, batch=True)
        return dm.random_mix(x, y, recipe, image_size=(H, W), executor=executor, masks=m).outputs()

    p = pipe()
    p.build()
    with pytest.raises(Exception, match=r"mask 0 has shape \(20, 16\) but the images are \(16, 20\)"):
        p.run()


def test_mixed_segmentation_loss_against_a_restatement():
    g = torch.Generator().manual_seed(0)
    N, C = 3, 4
    logits = torch.randn(N, C, 5, 6, generator=g)
    a = torch.randint(0, C, (N, 5, 6), generator=g)
    b = torch.randint(0, C, (N, 5, 6), generator=g)
    a[0, :2] = IGNORE
    b[0, :2] = IGNORE
    b[1, 0] = IGNORE  # the partner's own ignored pixels (a blend)
    w = torch.tensor([1.0, 0.3, 0.75])
    got = mixed_segmentation_loss(logits, a, b, w, ignore_index=IGNORE, label_smoothing=0.1)
    # re-statement: per pixel -sum_c q_c log p_c with q the smoothed one-hot, both masks weighted
    logp = torch.log_softmax(logits, 1)
    num, den = 0.0, 0.0
    for i in range(N):
        for mask, weight in ((a[i], w[i]), (b[i], 1 - w[i])):
            for y in range(5):
                for x in range(6):
                    c = int(mask[y, x])
                    if c == IGNORE:
                        continue
                    q = torch.full((C,), 0.1 / C)
                    q[c] += 0.9
                    num += weight * -(q * logp[i, :, y, x]).sum()
                    den += weight
    torch.testing.assert_close(got, num / den)
    # weight 1 everywhere: torch's own cross entropy with ignore_index
    ones = mixed_segmentation_loss(logits, a, b, torch.ones(N), ignore_index=IGNORE)
    torch.testing.assert_close(ones, torch.nn.functional.cross_entropy(logits, a, ignore_index=IGNORE))


@pytest.mark.parametrize("masks_on_gpu", [False, True])
@pytest.mark.parametrize("methods", [["mixup", "cutmix", "resizemix", "fmix", "ricap"], []])
def test_gpu_graph_with_masks_is_defined_with_every_output_on_the_gpu(methods, masks_on_gpu):
    """GPU images (DALI's operators): the maps' graph is defined with every output on the GPU,
    masks given on the CPU or the GPU (no GPU needed to define it; the gpu tests run it)."""
    recipe = dm.MixRecipe(methods=methods, num_classes=K, after=["random_erasing"])

    @pipeline_def(batch_size=4, num_threads=1, device_id=0)
    def pipe():
        x = fn.external_source(name="x", layout="HWC").gpu()
        m = fn.external_source(name="m")
        y = fn.external_source(name="y")
        out = dm.random_mix(x, y, recipe, image_size=(H, W), masks=m.gpu() if masks_on_gpu else m,
                            source_map=True, normalize=dm.Normalization(MEAN, STD, mirror=fn.random.coin_flip()))
        return out.outputs()

    p = pipe()
    p._build_graph()
    assert [o.device for o in p._graph_outputs] == ["gpu"] * len(dm.output_names(recipe, masks=True, source_map=True))


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["cutmix", "fmix", "mosaic"])
def test_paste_masks_follow_the_pixels_on_the_gpu(method):
    """The value test of the paste methods with GPU images and GPU masks (needs a GPU)."""
    recipe = dm.MixRecipe(methods=[method], num_classes=K)
    masks = [scene(i) for i in range(5)]
    images = [colour(m) for m in masks]

    @pipeline_def(batch_size=5, num_threads=1, device_id=0, seed=2)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC").gpu()
        m = fn.external_source(source=lambda: masks, batch=True).gpu()
        y = fn.external_source(source=lambda: [np.array([0], np.int32)] * 5, batch=True)
        out = dm.random_mix(x, y, recipe, image_size=(H, W), masks=m)
        return out.images, out.masks

    p = pipe()
    p.build()
    got_images, got_masks = p.run()
    shown = shown_class(np.stack([np.asarray(got_images.as_cpu()[i]) for i in range(5)]), "uint8")
    np.testing.assert_array_equal(np.stack([np.asarray(got_masks.as_cpu()[i]) for i in range(5)]), shown)
