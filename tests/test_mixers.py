"""Label-pixel consistency of the single mixers (dali_mix.mixers), on the CPU.

Every sample of a test batch is a distinct constant colour (a different value per sample and per
channel), so each output pixel tells where it came from: sample i's own colour, its partner's
colour (partner = labels_b, the index of the sample it was paired with), a blend (Mixup), zero
(Cutout) or something else (Random Erasing). Images are non-square (20x28) and both layouts are
covered.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

import dali_mix as dm

H, W, C = 20, 28, 3
N = 12


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def colour(i: int, c: int) -> int:
    """Value of channel c of sample i: distinct per sample and per channel, fits in uint8."""
    return 1 + i + 60 * c


def constant_images(n=N, layout="CHW", dtype=np.float32, h=H, w=W, c=C):
    out = []
    for i in range(n):
        px = np.array([colour(i, k) for k in range(c)], dtype=dtype)
        img = np.broadcast_to(px, (h, w, c)).copy()
        out.append(np.ascontiguousarray(img.transpose(2, 0, 1)) if layout == "CHW" else img)
    return out


def gradient_images(n=N, layout="CHW", h=H, w=W, c=C):
    """value = 10000*i + 1000*c + 30*y + x + 1: sample, channel, row and column can be decoded."""
    y = np.arange(h)[:, None, None]
    x = np.arange(w)[None, :, None]
    ch = np.arange(c)[None, None, :]
    out = []
    for i in range(n):
        img = (10000 * i + 1000 * ch + 30 * y + x + 1).astype(np.float32)
        out.append(np.ascontiguousarray(img.transpose(2, 0, 1)) if layout == "CHW" else img)
    return out


def to_np(tl):
    return np.stack([np.asarray(tl[i]) for i in range(len(tl))])


def run(graph, images, *, layout="CHW", seed=0, iters=1):
    """Run `graph(images_node, index_labels_node) -> tuple of nodes` for `iters` batches."""
    n = len(images)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        idx = fn.external_source(source=lambda: [np.array(i, np.int64) for i in range(n)], batch=True)
        return graph(x, idx)

    p = pipe()
    p.build()
    return [[to_np(o) for o in p.run()] for _ in range(iters)]


def paired(mixer):
    """Graph: pair the batch (labels = sample index), apply `mixer(x, other)`; outputs
    (mixed, lam, partner index)."""
    def graph(x, idx):
        pr = dm.pair(x, idx)
        mixed, lam = mixer(x, pr.images_b)
        return mixed, lam, pr.labels_b
    return graph


def hwc(batch, layout):
    return batch if layout == "HWC" else batch.transpose(0, 2, 3, 1)


def colour_masks(mixed_hwc, i, j):
    own = np.all(mixed_hwc[i] == np.array([colour(i, k) for k in range(C)]), axis=-1)
    other = np.all(mixed_hwc[i] == np.array([colour(j, k) for k in range(C)]), axis=-1)
    return own, other


def rect_of(mask):
    """(y, x, h, w) of the single filled axis-aligned rectangle `mask` is, or None if empty;
    fails if the set pixels are not exactly one rectangle."""
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    assert mask[y0:y1 + 1, x0:x1 + 1].all(), "changed pixels are not one filled rectangle"
    assert mask.sum() == (y1 - y0 + 1) * (x1 - x0 + 1), "changed pixels outside one rectangle"
    return int(y0), int(x0), int(y1 - y0 + 1), int(x1 - x0 + 1)


def check_two_colour(mixed, lam, partner, layout):
    """Every pixel is sample i's or its partner's colour (all channels); own fraction == lam."""
    m = hwc(mixed, layout)
    n = m.shape[0]
    assert lam.shape == (n,) and lam.dtype == np.float32
    for i in range(n):
        j = int(partner[i])
        assert j != i
        own, other = colour_masks(m, i, j)
        assert np.all(own ^ other), f"sample {i}: pixels that are neither own nor partner colour"
        # lam is the counted fraction: lam * H * W is the integer number of own pixels
        assert abs(float(lam[i]) * H * W - own.sum()) < 1e-3, (i, lam[i], own.sum())
    return m


# ------------------------------------------------------------------------------------------------
# Mixup
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_mixup_every_pixel_is_the_lam_blend(layout):
    imgs = constant_images(layout=layout)
    (mixed, lam, partner), = run(paired(lambda x, o: dm.mixup(x, o, alpha=0.7)), imgs,
                                 layout=layout, seed=11)
    assert mixed.dtype == np.float32
    assert np.all((lam > 0) & (lam < 1))
    m = hwc(mixed, layout)
    for i in range(N):
        j = int(partner[i])
        assert j != i
        ci = np.array([colour(i, k) for k in range(C)], np.float64)
        cj = np.array([colour(j, k) for k in range(C)], np.float64)
        expected = lam[i] * ci + (1 - lam[i]) * cj
        np.testing.assert_allclose(m[i], np.broadcast_to(expected, m[i].shape), rtol=1e-5, atol=1e-4)


def test_mixup_uint8_is_promoted_not_truncated():
    imgs = constant_images(layout="HWC", dtype=np.uint8)
    (mixed, lam, partner), = run(paired(lambda x, o: dm.mixup(x, o)), imgs, layout="HWC", seed=5)
    assert mixed.dtype == np.float32
    for i in range(N):
        j = int(partner[i])
        ci = np.array([colour(i, k) for k in range(C)], np.float64)
        cj = np.array([colour(j, k) for k in range(C)], np.float64)
        expected = lam[i] * ci + (1 - lam[i]) * cj
        np.testing.assert_allclose(mixed[i], np.broadcast_to(expected, mixed[i].shape), rtol=1e-5, atol=1e-3)
    # a truncating (integer) implementation would give whole numbers everywhere
    assert np.any(np.abs(mixed - np.round(mixed)) > 1e-2)


# ------------------------------------------------------------------------------------------------
# CutMix
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_cutmix_fraction_and_single_box(layout):
    imgs = constant_images(layout=layout)
    outs = run(paired(lambda x, o: dm.cutmix(x, o, layout=layout)), imgs, layout=layout, seed=1, iters=4)
    n_boxes = 0
    for mixed, lam, partner in outs:
        assert mixed.dtype == np.float32
        m = check_two_colour(mixed, lam, partner, layout)
        for i in range(N):
            own, other = colour_masks(m, i, int(partner[i]))
            box = rect_of(other)
            if box is not None:
                n_boxes += 1
                y, x, h, w = box
                assert 0 <= y and y + h <= H and 0 <= x and x + w <= W
    assert n_boxes >= N  # boxes were really pasted


def test_cutmix_uint8_keeps_dtype_and_values():
    imgs = constant_images(layout="CHW", dtype=np.uint8)
    outs = run(paired(lambda x, o: dm.cutmix(x, o)), imgs, seed=2, iters=2)
    for mixed, lam, partner in outs:
        assert mixed.dtype == np.uint8
        check_two_colour(mixed, lam, partner, "CHW")
        assert np.any(lam < 1)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_cutmix_minmax_box_is_clipped_rectangle_not_larger_than_max(layout):
    lo, hi = 0.35, 0.6
    imgs = constant_images(layout=layout)
    outs = run(paired(lambda x, o: dm.cutmix(x, o, minmax=(lo, hi), layout=layout)), imgs,
               layout=layout, seed=4, iters=4)
    for mixed, lam, partner in outs:
        m = check_two_colour(mixed, lam, partner, layout)
        for i in range(N):
            _, other = colour_masks(m, i, int(partner[i]))
            box = rect_of(other)
            # int(lo * side) >= 2, so even a clipped box keeps at least half its side
            assert box is not None, "minmax box empty"
            _, _, h, w = box
            # within the range up to one pixel (exact range: test below)
            assert 1 <= h <= hi * H + 1 and 1 <= w <= hi * W + 1, (h, w)


def test_cutmix_minmax_sides_lie_in_the_range():
    lo, hi = 0.35, 0.6
    imgs = constant_images(layout="CHW")
    outs = run(paired(lambda x, o: dm.cutmix(x, o, minmax=(lo, hi))), imgs, seed=4, iters=4)
    for mixed, lam, partner in outs:
        m = check_two_colour(mixed, lam, partner, "CHW")
        for i in range(N):
            _, other = colour_masks(m, i, int(partner[i]))
            box = rect_of(other)
            assert box is not None
            _, _, h, w = box
            assert int(lo * H) <= h < int(hi * H), ("height", h)
            assert int(lo * W) <= w < int(hi * W), ("width", w)


# ------------------------------------------------------------------------------------------------
# ResizeMix
# ------------------------------------------------------------------------------------------------

def tau_consistent(h, w, scale, eps=1e-6):
    """True when one tau in [scale) gives h = max(1, floor(tau*H)) and w = max(1, floor(tau*W))."""
    lo_t, hi_t = scale[0], scale[1]
    lo_h, hi_h = (0.0, 2.0 / H) if h == 1 else (h / H, (h + 1) / H)
    lo_w, hi_w = (0.0, 2.0 / W) if w == 1 else (w / W, (w + 1) / W)
    return max(lo_t, lo_h, lo_w) <= min(hi_t, hi_h, hi_w) + eps


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("scale", [(0.1, 0.8), (0.3, 0.45)])
def test_resizemix_fraction_and_patch_geometry(layout, scale):
    imgs = constant_images(layout=layout)
    outs = run(paired(lambda x, o: dm.resizemix(x, o, scale=scale, layout=layout)), imgs,
               layout=layout, seed=7, iters=3)
    for mixed, lam, partner in outs:
        assert mixed.dtype == np.float32
        m = check_two_colour(mixed, lam, partner, layout)
        for i in range(N):
            _, other = colour_masks(m, i, int(partner[i]))
            box = rect_of(other)
            assert box is not None, "ResizeMix always pastes a patch"
            y, x, h, w = box
            assert y >= 0 and x >= 0 and y + h <= H and x + w <= W
            # one tau for both sides, within the scale range, up to one pixel of rounding
            t_lo = max(h / H, w / W) - 1.0 / min(H, W)
            t_hi = min((h + 1) / H, (w + 1) / W) + 1.0 / min(H, W)
            assert t_lo <= t_hi and t_lo <= scale[1] and t_hi >= scale[0], (h, w, scale)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("scale", [(0.1, 0.8), (0.3, 0.45)])
def test_resizemix_patch_side_is_floor_of_tau_side(layout, scale):
    imgs = constant_images(layout=layout)
    outs = run(paired(lambda x, o: dm.resizemix(x, o, scale=scale, layout=layout)), imgs,
               layout=layout, seed=7, iters=3)
    for mixed, lam, partner in outs:
        m = check_two_colour(mixed, lam, partner, layout)
        for i in range(N):
            _, other = colour_masks(m, i, int(partner[i]))
            _, _, h, w = rect_of(other)
            assert tau_consistent(h, w, scale), (h, w, scale)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_resizemix_patch_is_the_nearest_downscaled_partner(layout):
    imgs = gradient_images(layout=layout)
    outs = run(paired(lambda x, o: dm.resizemix(x, o, layout=layout)), imgs, layout=layout, seed=3, iters=2)
    for mixed, lam, partner in outs:
        m = hwc(mixed, layout)
        orig = hwc(np.stack(imgs), layout)
        for i in range(N):
            j = int(partner[i])
            v = m[i].astype(np.int64) - 1
            sample = v // 10000
            own = sample == i
            np.testing.assert_array_equal(m[i][own], orig[i][own])
            from_j = np.all(sample == j, axis=-1)
            assert np.all(own.all(axis=-1) ^ from_j), "pixels from neither sample nor partner"
            y, x, h, w = rect_of(from_j)
            assert abs(float(lam[i]) - (1 - h * w / (H * W))) < 1e-6
            patch = v[y:y + h, x:x + w]
            np.testing.assert_array_equal((patch % 10000) // 1000,
                                          np.broadcast_to(np.arange(C), patch.shape))
            sy = (patch % 1000) // 30
            sx = (patch % 1000) % 30
            # separable sampling: source row depends on the patch row only, column on the column
            assert np.all(sy == sy[:, :1, :1]) and np.all(sx == sx[:1, :, :1])
            sy, sx = sy[:, 0, 0], sx[0, :, 0]
            # nearest: source pixel lies within the footprint of the destination pixel
            dy, dx = np.arange(h), np.arange(w)
            assert np.all(sy >= np.floor(dy * H / h)) and np.all(sy <= np.ceil((dy + 1) * H / h) - 1), sy
            assert np.all(sx >= np.floor(dx * W / w)) and np.all(sx <= np.ceil((dx + 1) * W / w) - 1), sx


# ------------------------------------------------------------------------------------------------
# FMix
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("bank_hw", [(H, W), (10, 14)])
def test_fmix_fraction_is_lam(layout, bank_hw):
    imgs = constant_images(layout=layout)

    def graph(x, idx):
        pr = dm.pair(x, idx)
        ranks = dm.fmix_ranks(dm.FMixMaskBank(bank_hw, N, bank_size=6, seed=3))
        mixed, lam = dm.fmix(x, pr.images_b, ranks, layout=layout)
        return mixed, lam, pr.labels_b

    outs = run(graph, imgs, layout=layout, seed=9, iters=3)
    fractional = 0
    for mixed, lam, partner in outs:
        assert mixed.dtype == np.float32
        check_two_colour(mixed, lam, partner, layout)
        fractional += int(np.sum((lam > 0) & (lam < 1)))
    assert fractional > 0


# ------------------------------------------------------------------------------------------------
# Cutout
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("length", [8, 7])
def test_cutout_one_hole(layout, length):
    imgs = constant_images(layout=layout)
    outs = run(lambda x, idx: dm.cutout(x, n_holes=1, length=length, layout=layout), imgs,
               layout=layout, seed=13, iters=4)
    half = length // 2
    for out, lam in outs:
        np.testing.assert_array_equal(lam, np.ones(N, np.float32))
        m = hwc(out, layout)
        orig = hwc(np.stack(imgs), layout)
        for i in range(N):
            zero = np.all(m[i] == 0, axis=-1)
            changed = np.any(m[i] != orig[i], axis=-1)
            np.testing.assert_array_equal(zero, changed)  # holes zeroed in every channel, rest kept
            y, x, h, w = rect_of(zero)
            for start, side, full in ((y, h, H), (x, w, W)):
                assert half <= side <= 2 * half + 1
                if start > 0 and start + side < full:  # not clipped: the whole square
                    assert side == 2 * half


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_cutout_several_holes_zero_count(layout):
    n_holes, length = 3, 6
    imgs = constant_images(layout=layout)
    outs = run(lambda x, idx: dm.cutout(x, n_holes=n_holes, length=length, layout=layout), imgs,
               layout=layout, seed=17, iters=2)
    for out, lam in outs:
        np.testing.assert_array_equal(lam, np.ones(N, np.float32))
        m = hwc(out, layout)
        orig = hwc(np.stack(imgs), layout)
        for i in range(N):
            zero = np.all(m[i] == 0, axis=-1)
            assert np.array_equal(zero, np.any(m[i] != orig[i], axis=-1))
            side = 2 * (length // 2)
            assert (length // 2) ** 2 <= zero.sum() <= n_holes * side * side


# ------------------------------------------------------------------------------------------------
# Random Erasing
# ------------------------------------------------------------------------------------------------

def erasing_box_possible(h, w, area, aspect):
    """Could h, w come from h = clamp(round(sqrt(A r)), 1, H), w = clamp(round(sqrt(A / r)), 1, W)
    with A / (H W) in `area` and r in `aspect`?"""
    def real_range(v, full):
        lo = v - 0.5 if v > 1 else 0.0
        hi = v + 0.5 if v < full else math.inf
        return lo, hi
    hl, hh = real_range(h, H)
    wl, wh = real_range(w, W)
    a_ok = hl * wl <= area[1] * H * W + 1e-6 and hh * wh >= area[0] * H * W - 1e-6
    r_ok = (hl / wh if wh > 0 else 0) <= aspect[1] + 1e-6 and (hh / wl if wl > 0 else math.inf) >= aspect[0] - 1e-6
    return a_ok and r_ok


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("fill", ["random", -3.5])
def test_random_erasing_p1_changes_one_rectangle(layout, fill):
    area, aspect = (0.02, 0.4), (0.3, 1 / 0.3)
    imgs = constant_images(layout=layout)
    outs = run(lambda x, idx: dm.random_erasing(x, p=1.0, area=area, aspect=aspect, fill=fill,
                                                layout=layout),
               imgs, layout=layout, seed=21, iters=4)
    noise = []
    clamped = 0
    for out, lam in outs:
        np.testing.assert_array_equal(lam, np.ones(N, np.float32))
        assert out.dtype == np.float32
        m = hwc(out, layout)
        orig = hwc(np.stack(imgs), layout)
        for i in range(N):
            changed = np.any(m[i] != orig[i], axis=-1)
            assert np.array_equal(changed, np.all(m[i] != orig[i], axis=-1))
            y, x, h, w = rect_of(changed)
            assert erasing_box_possible(h, w, area, aspect), (h, w)
            if h == H or w == W:
                clamped += 1
            else:
                # unclamped: area within the range up to the rounding of each side
                frac = h * w / (H * W)
                slack = (0.5 * (h + w) + 0.25) / (H * W)
                assert area[0] - slack <= frac <= area[1] + slack, frac
            if fill == "random":
                noise.append(m[i][changed])
            else:
                assert np.all(m[i][changed] == np.float32(fill))
    if fill == "random":
        values = np.concatenate(noise).ravel()
        assert abs(values.mean()) < 0.1 and 0.85 < values.std() < 1.15  # N(0, 1) noise


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("fill", ["random", 0.0])
def test_random_erasing_p0_is_identity(layout, fill):
    imgs = constant_images(layout=layout)
    outs = run(lambda x, idx: dm.random_erasing(x, p=0.0, fill=fill, layout=layout), imgs,
               layout=layout, seed=23, iters=2)
    for out, lam in outs:
        np.testing.assert_array_equal(out, np.stack(imgs))
        np.testing.assert_array_equal(lam, np.ones(N, np.float32))


def test_fmix_with_int32_ranks_from_a_large_bank_resizes_and_keeps_exact_lam():
    """Banks above 256x256 store int32 ranks (more than 65536 pixels); resizing them to the
    images' size must work and lam must stay the true mask fraction."""
    import dali_mix as dm
    from nvidia.dali import fn, pipeline_def

    n, h, w = 4, 40, 36
    imgs = [np.full((h, w, 3), 10 * i + 1, np.float32) for i in range(n)]

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=3)
    def pipe():
        x = fn.external_source(source=lambda: imgs, batch=True, layout="HWC")
        pairs = dm.pair(x, fn.external_source(source=lambda: [np.array([i]) for i in range(n)], batch=True))
        ranks = dm.fmix_ranks(dm.FMixMaskBank((300, 260), n, bank_size=2, seed=1))
        mixed, lam = dm.fmix(x, pairs.images_b, ranks, layout="HWC")
        return mixed, lam

    p = pipe()
    p.build()
    mixed, lam = p.run()
    for i in range(n):
        frac = np.mean(np.array(mixed[i])[..., 0] == 10 * i + 1)
        assert frac == pytest.approx(float(np.array(lam[i])), abs=1e-6)


@pytest.mark.parametrize("method", ["mixup", "cutmix", "fmix"])
def test_random_mix_with_fused_normalisation_equals_normalising_the_mix(method):
    """`random_mix(normalize=...)` on uint8 HWC returns CHW float pixels equal to
    ((mix of the uint8 colours) - mean) / std, flipped where mirror is set; lam stays exact."""
    import dali_mix as dm
    from dali_mix.mix import Normalization
    from nvidia.dali import fn, pipeline_def

    n, h, w = 6, 10, 14
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 5.0)
    colours = np.array([[20 * i + 5, 20 * i + 7, 20 * i + 9] for i in range(n)], np.float64)
    imgs = [np.broadcast_to(colours[i].astype(np.uint8), (h, w, 3)).copy() for i in range(n)]
    recipe = dm.MixRecipe(methods=[method], num_classes=n, layout="HWC")

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=11, enable_conditionals=True)
    def pipe():
        x = fn.external_source(source=lambda: imgs, batch=True, layout="HWC")
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)], batch=True)
        out = dm.random_mix(x, y, recipe, image_size=(h, w),
                            normalize=Normalization(mean, std, mirror=fn.random.coin_flip()))
        return out.images, out.lam, out.labels_b

    p = pipe()
    p.build()
    images, lam, partner = p.run()
    for i in range(n):
        out = np.array(images[i])
        assert out.shape == (3, h, w) and out.dtype == np.float32
        lam_i, j = float(np.array(lam[i])), int(np.array(partner[i]))
        norm_i = (colours[i] - mean) / std
        norm_j = (colours[j] - mean) / std
        if method == "mixup":
            expected = (lam_i * colours[i] + (1 - lam_i) * colours[j] - mean) / std
            np.testing.assert_allclose(out.reshape(3, -1).mean(1), expected, atol=1e-4)
            np.testing.assert_allclose(out.reshape(3, -1).std(1), 0, atol=1e-4)
        else:  # box and mask methods: every pixel is one of the two normalised colours
            own = np.all(np.isclose(out, norm_i[:, None, None], atol=1e-5), axis=0)
            other = np.all(np.isclose(out, norm_j[:, None, None], atol=1e-5), axis=0)
            assert np.all(own | other)
            assert own.mean() == pytest.approx(lam_i, abs=1e-6)
