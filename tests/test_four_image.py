"""RICAP and Mosaic, the four-image methods, on both executors, checked by value.

Test images are constant colours, one per class (sample i has class i % C and that class's
colour), so every output pixel tells which sample it came from. Checked: every pixel is one of
the sample's four sources' colours, each source covers exactly its share of the pixels (area
shares exact, so to one pixel), tile 0 is the sample itself and the four sources are four
different samples (batches of fewer than four: the documented cycle), the mean colour is the
shares' weighted colours, the dense targets are the shares' weighted one-hot rows (smoothed),
the sparse outputs (slot_labels, slot_weights) are the same shares; modes; odd batch sizes;
RICAP's boundary and crop distributions against a re-statement of the official
jackryo/ricap sampler, Mosaic's against YOLOv5's `load_mosaic` (KS, p > 0.01).
"""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def
from scipy import stats

import dali_mix as dm
from dali_mix.plan import MixPlanner

MEAN, STD = (100.0, 110.0, 120.0), (50.0, 60.0, 70.0)
H, W, C = 12, 18, 5  # non-square: an H/W swap shows
SIGNIFICANCE = 0.01


def colour(k: int) -> np.ndarray:
    return np.array([10 + 40 * k, 200 - 30 * k, 7 + 11 * k], np.uint8)


def images_of(n: int, layout: str):
    hwc = [np.broadcast_to(colour(i % C), (H, W, 3)).copy() for i in range(n)]
    if layout == "CHW":
        return [np.ascontiguousarray(((a - 120.0) / 60.0).astype(np.float32).transpose(2, 0, 1)) for a in hwc]
    return hwc


def run(method: str, executor: str, n: int = 7, kind: str = "uint8", batches: int = 2, **fields):
    """Batches of `method` over constant-colour images: dicts of numpy outputs."""
    layout = "CHW" if kind == "chw" else "HWC"
    recipe = dm.MixRecipe(methods=[method], num_classes=C, layout=layout, **fields)
    images = images_of(n, layout)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=4)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        y = fn.external_source(source=lambda: [np.array([i % C], np.int32) for i in range(n)], batch=True)
        norm = dm.Normalization(MEAN, STD) if kind == "normalize" else None
        out = dm.random_mix(x, y, recipe, image_size=(H, W), normalize=norm, executor=executor)
        return (*out.outputs(), out.labels, out.shares, out.lam, out.labels_a)

    p = pipe()
    p.build()
    names = dm.output_names(recipe) + ["labels", "shares", "lam", "labels_a"]
    out = []
    for _ in range(batches):
        got = p.run()
        out.append({k: np.stack([np.asarray(t[i]) for i in range(n)]) for k, t in zip(names, got)})
    return recipe, out


def pixel_colours(images: np.ndarray, kind: str) -> np.ndarray:
    """(N, H, W, 3) colours in pixel units (float64) of the outputs."""
    x = images.astype(np.float64)
    if kind == "normalize":
        return x.transpose(0, 2, 3, 1) * np.array(STD) + np.array(MEAN)
    if kind == "chw":
        return x.transpose(0, 2, 3, 1) * 60.0 + 120.0
    return x


@pytest.mark.parametrize("executor", ["fused", "dali"])
@pytest.mark.parametrize("kind", ["uint8", "normalize", "chw"])
@pytest.mark.parametrize("method", ["ricap", "mosaic"])
def test_pixels_shares_and_targets(method, kind, executor):
    n = 7  # odd
    recipe, batches = run(method, executor, n=n, kind=kind, label_smoothing=0.1)
    colours = np.stack([colour(k) for k in range(C)]).astype(np.float64)
    for b in batches:
        labels, shares = b["labels"].astype(np.int64), b["shares"].astype(np.float64)
        assert labels.shape == (n, 4) and shares.shape == (n, 4)
        np.testing.assert_array_equal(labels[:, 0], np.arange(n) % C)  # slot 0: the sample itself
        np.testing.assert_allclose(shares.sum(1), 1.0, atol=1e-6)
        np.testing.assert_array_equal(b["lam"], b["shares"][:, 0])
        pix = pixel_colours(b["images"], kind)
        for i in range(n):
            # each pixel is one class's colour; the class's pixel count is its slots' share
            dist = np.abs(pix[i][:, :, None, :] - colours[None, None]).max(-1)
            cls = dist.argmin(-1)
            assert dist.min(-1).max() < 1e-3 * (1 if kind == "uint8" else 100)
            counts = np.bincount(cls.ravel(), minlength=C)
            want = np.zeros(C)
            np.add.at(want, labels[i], shares[i] * H * W)
            np.testing.assert_allclose(counts, want, atol=1e-3)  # exact: area shares, no rounding
            np.testing.assert_allclose(pix[i].mean((0, 1)), shares[i] @ colours[labels[i]], atol=1e-3)
            target = np.zeros(C)
            np.add.at(target, labels[i], shares[i] * 0.9)
            np.testing.assert_allclose(b["targets"][i], target + 0.1 / C, atol=1e-6)


@pytest.mark.parametrize("method", ["ricap", "mosaic"])
def test_sources_are_four_different_samples_and_tiles_the_shares(method):
    for n in (4, 5, 9, 64):
        p = MixPlanner(dm.MixRecipe(methods=[method], num_classes=3), n, (H, W), seed=1)
        for step in range(5):
            plan = p.plan(0, step)
            np.testing.assert_array_equal(plan.sources[:, 0], np.arange(n))
            assert all(len(set(row)) == 4 for row in plan.sources.tolist())
            for k in range(4):  # each tile position: a permutation of the batch
                np.testing.assert_array_equal(np.sort(plan.sources[:, k]), np.arange(n))
            for i in range(n):
                rows = plan.rows_of(i)
                cover = np.zeros((H, W), int)
                for slot, sy, sx, sh, sw, y, x, h, w in rows:
                    assert (sh, sw) == (h, w) and 0 <= sy <= H - h and 0 <= sx <= W - w
                    cover[y:y + h, x:x + w] += 1
                    assert plan.shares[i, slot] == np.float32(h * w / (H * W)) or slot == 0
                np.testing.assert_array_equal(cover, 1)  # the four tiles tile the image


@pytest.mark.parametrize("n,expected", [(1, [[0, 0, 0, 0]]), (2, "ijij"), (3, "ijli")])
def test_batches_of_fewer_than_four_cycle_through_the_batch(n, expected):
    """The documented rule: sample i, then the next samples of a random cycle, wrapping."""
    plan = MixPlanner(dm.MixRecipe(methods=["ricap"], num_classes=3), n, (H, W), seed=2).plan(0, 0)
    for i, row in enumerate(plan.sources.tolist()):
        if n == 1:
            assert row == expected[0]
            continue
        names = dict(zip(expected, row))
        assert row == [names[c] for c in expected] and row[0] == i and len(set(row)) == n
    np.testing.assert_allclose(plan.shares.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("executor", ["fused", "dali"])
def test_tiny_batches_run_with_their_sources(executor):
    for n in (1, 2, 3):
        _, batches = run("ricap", executor, n=n, batches=1)
        b = batches[0]
        pix = b["images"].astype(np.float64)
        colours = np.stack([colour(k) for k in range(C)]).astype(np.float64)
        for i in range(n):
            want = np.zeros(3)
            for s, w in zip(b["labels"][i], b["shares"][i]):
                want += w * colours[s]
            np.testing.assert_allclose(pix[i].mean((0, 1)), want, atol=1e-3)


def test_modes_share_the_geometry_as_they_say():
    B = 8
    batch = MixPlanner(dm.MixRecipe(methods=["ricap"], mode="batch", num_classes=3), B, (H, W)).plan(0, 0)
    np.testing.assert_array_equal(batch.rows, batch.rows[[0]].repeat(B, 0))  # one draw per batch
    pair = MixPlanner(dm.MixRecipe(methods=["mosaic"], mode="pair", num_classes=3), B, (H, W)).plan(0, 0)
    assert len({r.tobytes() for r in pair.rows}) <= B // 2  # pairs share their geometry
    sample = MixPlanner(dm.MixRecipe(methods=["ricap"], num_classes=3), 64, (H, W)).plan(0, 0)
    assert len({r.tobytes() for r in sample.rows}) > 32


def test_sparse_targets_are_the_slots():
    recipe, batches = run("ricap", "fused", n=6, target="sparse")
    assert dm.output_names(recipe) == ["images", "slot_labels", "slot_weights"]
    for b in batches:
        np.testing.assert_array_equal(b["slot_labels"], b["labels"])
        np.testing.assert_array_equal(b["slot_weights"], b["shares"])


def test_slot_cross_entropy_equals_the_dense_loss():
    import torch

    from dali_mix.torch import slot_cross_entropy, soft_target_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, C, generator=g)
    labels = torch.randint(0, C, (6, 4), generator=g)
    weights = torch.rand(6, 4, generator=g)
    weights = weights / weights.sum(1, keepdim=True)
    dense = torch.zeros(6, C).scatter_add_(1, labels, weights) * 0.9 + 0.1 / C
    torch.testing.assert_close(slot_cross_entropy(logits, labels, weights, smoothing=0.1),
                               soft_target_cross_entropy(logits, dense))


# ---- distributions against the official samplers ------------------------------------------

def official_ricap(rng: np.random.RandomState, I_x: int, I_y: int, beta: float):
    """jackryo/ricap `TrainerRICAP.ricap`, re-stated for one batch of images (N, C, I_x, I_y):
    the boundary (w, h) and each tile's crop corner (x_k, y_k), in the official order."""
    w = int(np.round(I_x * rng.beta(beta, beta)))
    h = int(np.round(I_y * rng.beta(beta, beta)))
    w_ = [w, I_x - w, w, I_x - w]
    h_ = [h, h, I_y - h, I_y - h]
    corners = []
    for k in range(4):
        x_k = rng.randint(0, I_x - w_[k] + 1)
        y_k = rng.randint(0, I_y - h_[k] + 1)
        corners.append((x_k, y_k))
    return w, h, corners


def test_ricap_matches_the_official_sampler():
    beta, draws_n = 0.3, 3000
    rng = np.random.RandomState(0)
    ref = [official_ricap(rng, H, W, beta) for _ in range(draws_n)]
    p = MixPlanner(dm.MixRecipe(methods=["ricap"], num_classes=3, ricap_beta=beta), 100, (H, W), seed=3)
    rows = np.concatenate([p.plan(0, s).rows for s in range(30)])  # (3000, 4, 9), tiles in order
    # the boundary: the top tiles' height, the left tiles' width (tiles of zero area are padding)
    bh = np.maximum(rows[:, 0, 7], rows[:, 2, 7])
    bw = np.maximum(rows[:, 0, 8], rows[:, 1, 8])
    assert stats.ks_2samp(bh, [r[0] for r in ref]).pvalue > SIGNIFICANCE
    assert stats.ks_2samp(bw, [r[1] for r in ref]).pvalue > SIGNIFICANCE
    for k in range(4):
        live = rows[:, k, 7] * rows[:, k, 8] > 0
        ref_k = np.array([r[2][k] for r in ref if (r[0] if k in (0, 2) else H - r[0]) *
                          (r[1] if k in (0, 1) else W - r[1]) > 0])
        assert stats.ks_2samp(rows[live, k, 1], ref_k[:, 0]).pvalue > SIGNIFICANCE
        assert stats.ks_2samp(rows[live, k, 2], ref_k[:, 1]).pvalue > SIGNIFICANCE
    # the beta matters: a uniform boundary is told apart
    flat = MixPlanner(dm.MixRecipe(methods=["ricap"], num_classes=3, ricap_beta=1.0), 100, (H, W), seed=3)
    flat_rows = np.concatenate([flat.plan(0, s).rows for s in range(30)])
    flat_bh = np.maximum(flat_rows[:, 0, 7], flat_rows[:, 2, 7])
    assert stats.ks_2samp(flat_bh, [r[0] for r in ref]).pvalue < 1e-6


def test_mosaic_centre_matches_yolov5():
    """YOLOv5: yc, xc = (int(random.uniform(-x, 2 * s + x)) for x in mosaic_border), border
    -s // 2; the boundary in the output window is yc - s // 2."""
    import random

    random.seed(0)
    ref_y = [int(random.uniform(H // 2, 2 * H - H // 2)) - H // 2 for _ in range(3000)]
    ref_x = [int(random.uniform(W // 2, 2 * W - W // 2)) - W // 2 for _ in range(3000)]
    p = MixPlanner(dm.MixRecipe(methods=["mosaic"], num_classes=3), 100, (H, W), seed=5)
    rows = np.concatenate([p.plan(0, s).rows for s in range(30)])
    # the boundary: the top tiles' height, the left tiles' width (tiles of zero area are padding)
    by = np.maximum(rows[:, 0, 7], rows[:, 1, 7])
    bx = np.maximum(rows[:, 0, 8], rows[:, 2, 8])
    assert stats.ks_2samp(by, ref_y).pvalue > SIGNIFICANCE
    assert stats.ks_2samp(bx, ref_x).pvalue > SIGNIFICANCE
    # each tile shows the corner of its image next to the centre
    for t, (cy, cx) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
        r = rows[:, t]
        live = r[:, 7] * r[:, 8] > 0
        assert np.all((r[live, 1] + r[live, 3] == H) if cy else (r[live, 1] == 0))
        assert np.all((r[live, 2] + r[live, 4] == W) if cx else (r[live, 2] == 0))
