"""Fidelity to the official code: each sampler against a numpy restatement of its method's
official algorithm written here (two-sample KS, p > 0.01, >= 2,000 draws per side).

Restated (from the published sources, with a `numpy.random.Generator` for the global RNGs):
- ecs-vlc/FMix `fmix.py`: `fftfreqnd`, `get_spectrum`, `make_low_freq_image`, `binarise_mask`,
  `sample_mask` (alpha = 1, decay power 3, max_soft = 0);
- zhunzhong07/Random-Erasing `transforms.py`: `RandomErasing.__call__` (p = 0.5,
  area U(0.02, 0.4), aspect U(0.3, 1/0.3), up to 100 tries, box strictly smaller than the image);
- timm `mixup.py`: `rand_bbox_minmax` (exclusive upper bounds of np.random.randint);
- alexrame/mixmo-pytorch: `misc.sample_lams` (Dirichlet(2, 2)), `mixing_blocks._cutmix_mask` /
  `_rand_bbox_of_area_lam`, `_single_mix` (kappa = mask mean) and
  `MixMoDataset._init_dict_output_mixmo` (cut-or-linear choice and role swap from the batch seed).

Each comparison also shows that it would fail on this library's first behaviour (the paper's
FMix spectrum, log-uniform erasing aspect, the inclusive minmax bound, the Cut-MixMo box fully
inside): the test has the power to tell them apart. End-to-end versions through
`dali_mix.random_mix` (constant-colour images) close the file.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def
from scipy import ndimage, stats

from dali_mix import draws, masks
from dali_mix.recipe import MixRecipe
from dali_mix.masks import FMixMaskBank
from dali_mix.mixmo import mixmo_inputs

P_MIN = 0.01  # KS p-value a match must exceed (over all the statistics a test compares)
P_OLD = 1e-6  # KS p-value below which the old behaviour counts as told apart


def assert_same(p: dict) -> None:
    """Every KS p-value of `p` (statistic -> p) above P_MIN / len(p): Bonferroni's correction,
    so that a true match fails one run in a hundred whatever the number of statistics compared
    (without it, a test of eight statistics would fail about one random stream in twelve)."""
    assert min(p.values()) > P_MIN / len(p), p


def ks(a, b) -> float:
    return stats.ks_2samp(np.asarray(a, np.float64), np.asarray(b, np.float64)).pvalue


def compare_boxes(ours, ref) -> dict:
    """KS p of (y, x, h, w, area) between two sets of boxes."""
    (y, x, h, w), (ry, rx, rh, rw) = ours, ref
    return {k: ks(a, b) for k, a, b in (("y", y, ry), ("x", x, rx), ("h", h, rh), ("w", w, rw),
                                         ("area", h * w, rh * rw))}


def reference_boxes(fn_, n: int, seed: int, *args):
    rng = np.random.default_rng(seed)
    return np.array([fn_(rng, *args) for _ in range(n)]).T


# ------------------------------------------------------------------------------------------------
# the official code, restated in numpy
# ------------------------------------------------------------------------------------------------

def official_low_freq_image(rng_or_param, h: int, w: int, decay: float = 3.0) -> np.ndarray:
    """ecs-vlc/FMix `make_low_freq_image(decay, (h, w))`: (1, h, w) float64 in [0, 1].
    `rng_or_param`: a Generator, or the (1, h, F, 2) Gaussian draws of `get_spectrum`."""
    # fftfreqnd(h, w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 == 1 else np.fft.fftfreq(w)[: w // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    # get_spectrum(freqs, decay, ch=1, h, w)
    scale = np.ones(1) / (np.maximum(freqs, np.array([1.0 / max(w, h, 0)])) ** decay)
    param = (rng_or_param.standard_normal([1] + list(freqs.shape) + [2])
             if isinstance(rng_or_param, np.random.Generator) else rng_or_param)
    spectrum = np.expand_dims(scale, -1)[None, :] * param
    # the (real, imaginary) pairs reshaped into one real x axis, handed to irfftn
    mask = np.fft.irfftn(spectrum.reshape(1, h, -1), (h, w), axes=(1, 2))[:1, :h, :w]
    mask = mask - mask.min()
    return mask / mask.max()


def official_fmix_mask(rng: np.random.Generator, h: int, w: int, decay: float = 3.0,
                       alpha: float = 1.0) -> np.ndarray:
    """ecs-vlc/FMix `sample_mask(alpha, decay, (h, w))`: (h, w) float mask of 0/1."""
    mask = official_low_freq_image(rng, h, w, decay)
    # sample_lam + binarise_mask(max_soft=0)
    lam = rng.beta(alpha, alpha)
    idx = mask.reshape(-1).argsort()[::-1]
    flat = mask.reshape(-1)
    num = math.ceil(lam * flat.size) if rng.random() > 0.5 else math.floor(lam * flat.size)
    flat[idx[:num]] = 1
    flat[idx[num:]] = 0
    return flat.reshape(h, w)


def official_erasing(rng: np.random.Generator, n: int, H: int, W: int, p: float = 0.5,
                     sl: float = 0.02, sh: float = 0.4, r1: float = 0.3, tries: int = 100):
    """zhunzhong07/Random-Erasing `RandomErasing.__call__` on n images of (H, W): (y, x, h, w)
    arrays, h = w = 0 where nothing was erased."""
    out = np.zeros((4, n), np.int64)
    for i in range(n):
        if rng.uniform(0, 1) > p:
            continue
        for _ in range(tries):
            target_area = rng.uniform(sl, sh) * (H * W)
            aspect_ratio = rng.uniform(r1, 1 / r1)
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < W and h < H:
                out[:, i] = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1), h, w  # randint: inclusive
                break
    return out


def official_rand_bbox_minmax(rng: np.random.Generator, H: int, W: int, minmax, count: int):
    """timm `rand_bbox_minmax((H, W), minmax, count)` as (y, x, h, w)."""
    cut_h = rng.integers(int(H * minmax[0]), int(H * minmax[1]), size=count)
    cut_w = rng.integers(int(W * minmax[0]), int(W * minmax[1]), size=count)
    yl = rng.integers(0, H - cut_h, size=count)
    xl = rng.integers(0, W - cut_w, size=count)
    return yl, xl, cut_h, cut_w


def official_cut_mixmo(rng: np.random.Generator, H: int, W: int, alpha: float = 2.0):
    """alexrame/mixmo-pytorch, one sample: kappa from `sample_lams` (Dirichlet), the box of
    `_rand_bbox_of_area_lam` for a (C, H, W) input (its "W" is the first spatial axis),
    `_cutmix_mask`: 1 in the box. Returns (y, x, h, w) of the box; kappa = its area / (H W)."""
    lam = rng.dirichlet((alpha, alpha))[0]
    cut_rat = np.sqrt(lam)
    cut_1, cut_2 = int(H * cut_rat), int(W * cut_rat)
    c1, c2 = rng.integers(H), rng.integers(W)
    a1, b1 = np.clip(c1 - cut_1 // 2, 0, H), np.clip(c1 + cut_1 // 2, 0, H)
    a2, b2 = np.clip(c2 - cut_2 // 2, 0, W), np.clip(c2 + cut_2 // 2, 0, W)
    return a1, a2, b1 - a1, b2 - a2


# ------------------------------------------------------------------------------------------------
# mask statistics
# ------------------------------------------------------------------------------------------------

def mask_statistics(masks: np.ndarray) -> dict:
    """Per mask (n, h, w) of 0/1: connected regions of either value (4-connectivity, not
    wrapping), boundary edges per pixel (4-neighbour pairs that differ / pixels) and point
    symmetry (fraction of pixels equal to m(-y, -x), indices modulo the size)."""
    m = np.asarray(masks, np.uint8)
    regions = np.array([ndimage.label(a)[1] + ndimage.label(1 - a)[1] for a in m])
    edges = ((m[:, 1:] != m[:, :-1]).sum((1, 2)) + (m[:, :, 1:] != m[:, :, :-1]).sum((1, 2)))
    mirror = np.roll(m[:, ::-1, ::-1], 1, axis=(1, 2))
    return {"regions": regions, "edges": edges / m[0].size,
            "symmetry": (m == mirror).mean((1, 2))}


# ------------------------------------------------------------------------------------------------
# FMix
# ------------------------------------------------------------------------------------------------

FM_N, FM_S = 2000, 32


def bank_masks(spectrum: str, n: int = FM_N, s: int = FM_S, seed: int = 1) -> np.ndarray:
    """n masks as the library makes them: a bank's rank images, own pixels where rank < k,
    k from `draws.fmix_thresholds`."""
    bank = FMixMaskBank((s, s), 1, bank_size=n, seed=seed, spectrum=spectrum)
    ranks = bank.make_bank(0)[..., 0]
    k = draws.fmix_thresholds(np.random.default_rng(seed), n, s * s)
    return ranks < k[:, None, None]


@pytest.fixture(scope="module")
def official_fmix_stats():
    rng = np.random.default_rng(2)
    return mask_statistics(np.stack([official_fmix_mask(rng, FM_S, FM_S) for _ in range(FM_N)]))


def test_fmix_masks_match_official(official_fmix_stats):
    ours = mask_statistics(bank_masks("official"))
    ref = official_fmix_stats
    p = {k: ks(ours[k], ref[k]) for k in ref}
    print("FMix official vs restated ecs-vlc/FMix, KS p:", p)
    assert_same(p)
    assert 5.0 < ref["regions"].mean() < 6.0 and 0.11 < ref["edges"].mean() < 0.13
    assert ref["symmetry"].mean() > 0.99


def test_fmix_paper_spectrum_is_told_apart(official_fmix_stats):
    """The first implementation's (the paper's) masks: fewer regions, fewer edges, no
    symmetry: the comparison above would fail on them."""
    ours = mask_statistics(bank_masks("paper", n=500))  # far apart: fewer draws suffice
    p = {k: ks(ours[k], official_fmix_stats[k]) for k in official_fmix_stats}
    print("FMix paper vs restated ecs-vlc/FMix, KS p:", p)
    assert max(p.values()) < P_OLD, p
    assert ours["regions"].mean() < 4.2 and ours["symmetry"].mean() < 0.8


@pytest.mark.parametrize("h,w", [(12, 20), (9, 15)])
def test_fmix_official_image_is_make_low_freq_image(h, w):
    """Fed the same Gaussian draws, `low_frequency_images(spectrum="official")` is the official
    `make_low_freq_image` (up to its normalisation), odd widths included (`fftfreqnd`'s extra
    column)."""
    ours = masks.low_frequency_images(3, h, w, rng=np.random.default_rng(5))
    F = w // 2 + 1 + w % 2
    param = np.random.default_rng(5).standard_normal((3, h, F, 2))
    for i in range(3):
        ref = official_low_freq_image(param[i:i + 1], h, w)[0]
        ref = ref - ref.mean()
        np.testing.assert_allclose(ours[i].numpy(), ref / np.abs(ref).max(), atol=2e-5)


def test_fmix_spectrum_argument():
    with pytest.raises(ValueError, match="fmix_spectrum"):
        masks.low_frequency_images(1, 8, 8, spectrum="complex")
    with pytest.raises(ValueError, match="fmix_spectrum"):
        FMixMaskBank((8, 8), 2, spectrum="complex")
    recipe = MixRecipe(methods=("fmix",), num_classes=10, fmix_size=(8, 12), fmix_spectrum="paper",
                       fmix_bank_size=3, seed=4)
    bank = FMixMaskBank.from_recipe(recipe, 2)
    assert (bank.size, bank.spectrum, bank.bank_size, bank.seed) == ((8, 12), "paper", 3, 4)
    assert FMixMaskBank((8, 8), 2).spectrum == "official"


def test_fmix_mask_mean_is_threshold():
    """The bank's masks keep k pixels exactly (the official ceil-or-floor of lam * N)."""
    masks = bank_masks("official", n=64)
    k = draws.fmix_thresholds(np.random.default_rng(1), 64, FM_S * FM_S)
    np.testing.assert_array_equal(masks.sum((1, 2)), k)


# ------------------------------------------------------------------------------------------------
# Random Erasing
# ------------------------------------------------------------------------------------------------

RE_N, RE_H, RE_W = 5000, 24, 40  # non-square: a swapped H / W would show


def erasing_summary(y, x, h, w, H, W) -> dict:
    on = h > 0
    return {"applied": on.astype(float), "h": h[on], "w": w[on], "aspect": h[on] / w[on],
            "y_rel": y[on] / np.maximum(H - h[on], 1), "x_rel": x[on] / np.maximum(W - w[on], 1),
            "y": y[on], "x": x[on]}


def test_erasing_boxes_match_official():
    ours = erasing_summary(*draws.erasing_boxes(np.random.default_rng(3), RE_N, RE_H, RE_W),
                           RE_H, RE_W)
    ref = erasing_summary(*official_erasing(np.random.default_rng(4), RE_N, RE_H, RE_W), RE_H, RE_W)
    assert ours["h"].size >= 2000 and ref["h"].size >= 2000
    p = {k: ks(ours[k], ref[k]) for k in ref}
    print("Random Erasing vs restated official loop, KS p:", p)
    assert_same(p)
    # strictly inside, as the official `h < H and w < W`; uniform aspect: P(h < w) ~ 0.23 at
    # 24x40 (square boxes are rarer than under a log-uniform aspect)
    assert (ours["h"] < RE_H).all() and (ours["w"] < RE_W).all()
    assert (ours["y"] + ours["h"] <= RE_H).all() and (ours["x"] + ours["w"] <= RE_W).all()


def test_erasing_log_aspect_is_told_apart():
    """timm / torchvision (and this library's first version) draw the aspect log-uniformly."""
    ours = erasing_summary(*draws.erasing_boxes(np.random.default_rng(3), RE_N, RE_H, RE_W,
                                                log_aspect=True), RE_H, RE_W)
    ref = erasing_summary(*official_erasing(np.random.default_rng(4), RE_N, RE_H, RE_W), RE_H, RE_W)
    p = ks(ours["aspect"], ref["aspect"])
    print("Random Erasing log aspect vs official, KS p:", p)
    assert p < P_OLD


def test_erasing_gives_up_as_official():
    """After `tries` failed attempts the image is left as it is (no clamped box): on a thin
    image most attempts fail, and the not-applied fraction matches the official loop."""
    H, W, n, tries = 6, 80, 4000, 3
    ours = erasing_summary(*draws.erasing_boxes(np.random.default_rng(5), n, H, W, p=1.0,
                                                tries=tries), H, W)
    ref = erasing_summary(*official_erasing(np.random.default_rng(6), n, H, W, p=1.0,
                                            tries=tries), H, W)
    a, b = int(ours["applied"].sum()), int(ref["applied"].sum())
    assert 0.1 * n < b < 0.9 * n  # a real share of images is left unchanged
    p = stats.fisher_exact([[a, n - a], [b, n - b]]).pvalue
    print("Random Erasing not-applied fraction vs official, Fisher p:", p, a / n, b / n)
    assert p > P_MIN
    assert ks(ours["h"], ref["h"]) > P_MIN and (ours["h"] < H).all()


# ------------------------------------------------------------------------------------------------
# timm cutmix_minmax
# ------------------------------------------------------------------------------------------------

MM_N, MM_H, MM_W, MINMAX = 4000, 24, 40, (0.2, 0.8)


def test_cutmix_minmax_matches_timm():
    y, x, h, w = draws.cutmix_boxes(np.random.default_rng(7), MM_N, MM_H, MM_W, minmax=MINMAX)
    ry, rx, rh, rw = official_rand_bbox_minmax(np.random.default_rng(8), MM_H, MM_W, MINMAX, MM_N)
    p = compare_boxes((y, x, h, w), (ry, rx, rh, rw))
    print("cutmix_minmax vs restated timm rand_bbox_minmax, KS p:", p)
    assert_same(p)
    # timm's exclusive bound: the box never touches the bottom or right edge (it does in the
    # first version, corner uniform in [0, H - h]: 1 / (H - h + 1) of the boxes touch)
    assert (y + h < MM_H).all() and (x + w < MM_W).all()
    assert (ry + rh < MM_H).all() and (rx + rw < MM_W).all()
    assert (y == 0).any() and (y + h == MM_H - 1).any()  # both ends of the range are reached


# ------------------------------------------------------------------------------------------------
# CutMix, Cutout, ResizeMix
# ------------------------------------------------------------------------------------------------

def official_rand_bbox(rng: np.random.Generator, H: int, W: int, lam: float):
    """clovaai/CutMix-PyTorch `rand_bbox` (and uoguelph-mlrg/Cutout's hole, side fixed), for an
    (H, W) image: (y, x, h, w)."""
    cut_rat = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(H * cut_rat), int(W * cut_rat)
    cy, cx = rng.integers(H), rng.integers(W)
    y1, y2 = np.clip(cy - cut_h // 2, 0, H), np.clip(cy + cut_h // 2, 0, H)
    x1, x2 = np.clip(cx - cut_w // 2, 0, W), np.clip(cx + cut_w // 2, 0, W)
    return y1, x1, y2 - y1, x2 - x1


def official_cutout(rng: np.random.Generator, H: int, W: int, length: int):
    """uoguelph-mlrg/Cutout `Cutout.__call__`, one hole: (y, x, h, w)."""
    y, x = rng.integers(H), rng.integers(W)
    y1, y2 = np.clip(y - length // 2, 0, H), np.clip(y + length // 2, 0, H)
    x1, x2 = np.clip(x - length // 2, 0, W), np.clip(x + length // 2, 0, W)
    return y1, x1, y2 - y1, x2 - x1


def official_resizemix(rng: np.random.Generator, H: int, W: int, lo: float = 0.1, hi: float = 0.8):
    """JayQine/ResizeMix: rate ~ U(lo, hi), `F.interpolate(scale_factor=rate)` (floor of the
    size), `getbox_new`: centre uniform, box shifted fully inside. (y, x, h, w)."""
    rate = rng.uniform(lo, hi)
    h, w = int(H * rate), int(W * rate)
    cy, cx = rng.integers(0, H), rng.integers(0, W)
    y2 = np.clip(np.clip(cy - h // 2, 0, H) + h, 0, H)
    x2 = np.clip(np.clip(cx - w // 2, 0, W) + w, 0, W)
    return np.clip(y2 - h, 0, H), np.clip(x2 - w, 0, W), h, w


def test_cutmix_boxes_match_clovaai():
    n, H, W = 4000, 24, 40
    ours = draws.cutmix_boxes(np.random.default_rng(30), n, H, W)
    rng = np.random.default_rng(31)
    ref = np.array([official_rand_bbox(rng, H, W, rng.beta(1.0, 1.0)) for _ in range(n)]).T
    p = compare_boxes(ours, ref)
    print("CutMix vs restated clovaai rand_bbox, KS p:", p)
    assert_same(p)


def test_cutout_boxes_match_official():
    n, H, W, length = 4000, 24, 40, 16
    y, x, h, w = draws.cutout_boxes(np.random.default_rng(32), n, H, W, holes=1, length=length)
    p = compare_boxes((y[:, 0], x[:, 0], h[:, 0], w[:, 0]),
                      reference_boxes(official_cutout, n, 33, H, W, length))
    print("Cutout vs restated uoguelph-mlrg Cutout, KS p:", p)
    assert_same(p)


def test_resizemix_patches_match_official():
    n, H, W = 4000, 24, 40
    ref = reference_boxes(official_resizemix, n, 35, H, W)
    p = compare_boxes(draws.resizemix_patches(np.random.default_rng(34), n, H, W), ref)
    print("ResizeMix vs restated JayQine getbox_new, KS p:", p)
    assert_same(p)
    # the first version's uniform corner is told apart (fewer patches on the borders)
    y, x, h, w = draws.resizemix_patches(np.random.default_rng(34), n, H, W, centred=False)
    assert min(ks(y, ref[0]), ks(x, ref[1])) < P_OLD


# ------------------------------------------------------------------------------------------------
# Cut-MixMo
# ------------------------------------------------------------------------------------------------

CM_H, CM_W = 32, 32  # CIFAR, as the official experiments


def official_cut_mixmo_boxes(n: int, seed: int, H: int = CM_H, W: int = CM_W):
    return reference_boxes(official_cut_mixmo, n, seed, H, W)


def test_cut_mixmo_boxes_match_official():
    rng = np.random.default_rng(9)
    n = 4000
    kappa = draws.mixmo_kappas(rng, n).astype(np.float32)
    ry, rx, rh, rw = official_cut_mixmo_boxes(n, 10)
    p = compare_boxes(draws.cut_mixmo_boxes(rng, n, CM_H, CM_W, kappa), (ry, rx, rh, rw))
    print("Cut-MixMo boxes vs restated _rand_bbox_of_area_lam, KS p:", p)
    assert_same(p)
    assert abs((rh * rw).mean() / (CM_H * CM_W) - 0.30) < 0.02  # kappa's mean after clipping
    # the first version's box (fully inside, area kappa) is told apart
    y, x, h, w = draws.cut_mixmo_boxes(rng, n, CM_H, CM_W, kappa, box="inside")
    assert ks(h * w, rh * rw) < P_OLD


def run_mixmo(n: int, iters: int, seed: int, **kw) -> dict:
    """mixmo_inputs on constant HWC uint8 images in a CPU pipeline: kappa, swapped, use_cut,
    mask (per sample, all iterations)."""
    images = [np.full((CM_H, CM_W, 3), i, np.uint8) for i in range(n)]

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)], batch=True)
        mm = mixmo_inputs(x, y, layout="HWC", **kw)
        return mm.kappa, mm.swapped, mm.use_cut, mm.mask

    p = pipe()
    p.build()
    names = ("kappa", "swapped", "use_cut", "mask")
    runs = [[np.stack([np.asarray(t[i]) for i in range(n)]) for t in p.run()] for _ in range(iters)]
    return {k: np.stack([r[j] for r in runs]) for j, k in enumerate(names)}  # (iters, n, ...)


def test_cut_mixmo_pipeline_matches_official():
    """mixmo_inputs' masks: box area (the mask mean, or 1 - it where the roles are swapped) and
    position as the official `_cutmix_mask`; kappa = the mask mean; one choice and one swap
    per batch."""
    out = run_mixmo(64, 32, seed=3, p_cut=1.0)
    kappa, swapped, mask = out["kappa"].ravel(), out["swapped"].ravel(), out["mask"][..., 0]
    mask = mask.reshape(-1, CM_H, CM_W)
    np.testing.assert_array_equal(kappa, mask.mean((1, 2), dtype=np.float64).astype(np.float32))
    area = np.where(swapped, 1 - kappa.astype(np.float64), kappa) * CM_H * CM_W
    box = np.where(swapped[:, None, None], 1 - mask, mask)
    rows, cols = box.any(2), box.any(1)
    y = np.where(rows.any(1), rows.argmax(1), 0)
    x = np.where(cols.any(1), cols.argmax(1), 0)
    ry, rx, rh, rw = official_cut_mixmo_boxes(kappa.size, 12)
    has, r_has = area > 0, rh * rw > 0
    p = {"area": ks(np.round(area), rh * rw), "y": ks(y[has], ry[r_has]), "x": ks(x[has], rx[r_has])}
    print("Cut-MixMo pipeline vs restated official, KS p:", p)
    assert_same(p)
    # one batch seed: the choice and the swap are shared by a batch, and vary between batches
    assert (out["swapped"] == out["swapped"][:, :1]).all()
    assert (out["use_cut"] == out["use_cut"][:, :1]).all() and out["use_cut"].all()
    assert 0 < out["swapped"][:, 0].sum() < len(out["swapped"])
    assert stats.binomtest(int(out["swapped"][:, 0].sum()), 32, 0.5).pvalue > 1e-3


def test_cut_mixmo_pipeline_first_version_is_told_apart():
    out = run_mixmo(64, 32, seed=3, p_cut=1.0, box="inside", per_sample=True)
    kappa, swapped = out["kappa"].ravel(), out["swapped"].ravel()
    area = np.round(np.where(swapped, 1 - kappa.astype(np.float64), kappa) * CM_H * CM_W)
    ry, rx, rh, rw = official_cut_mixmo_boxes(kappa.size, 12)
    assert ks(area, rh * rw) < P_OLD
    per_batch = swapped.reshape(32, 64).sum(1)  # per_sample: swaps vary within each batch
    assert ((per_batch > 0) & (per_batch < 64)).all()


# ------------------------------------------------------------------------------------------------
# end to end: dali_mix.random_mix on constant-colour HWC uint8 images
# ------------------------------------------------------------------------------------------------

E2E_N, E2E_ITERS = 64, 32  # 2,048 samples


def colours(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, all different and none with a zero channel."""
    i = np.arange(n)
    return np.stack([1 + i, 255 - i, 100 + (i * 7) % 100], 1).astype(np.uint8)


def run_random_mix(recipe, H: int, W: int, seed: int = 0):
    """random_mix over constant-colour images (label = index): (own, labels_b) per sample,
    own = (N, H, W) bool, True where the pixel still holds the sample's own colour."""
    import dali_mix as dm

    col = colours(E2E_N)
    images = [np.broadcast_to(c, (H, W, 3)).copy() for c in col]

    @pipeline_def(batch_size=E2E_N, num_threads=1, device_id=None, seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(E2E_N)],
                               batch=True)
        r = dm.random_mix(x, y, recipe, image_size=(H, W))
        return r.images, r.labels_b

    p = pipe()
    p.build()
    own, partner = [], []
    for _ in range(E2E_ITERS):
        out, lb = (np.stack([np.asarray(t[i]) for i in range(E2E_N)]) for t in p.run())
        own.append((out == col[:, None, None, :]).all(-1))
        partner.append(lb.reshape(-1))
    return np.concatenate(own), np.concatenate(partner)


def bounding_boxes(on: np.ndarray):
    """(y, x, h, w) of the bounding box of the True pixels of each (H, W) mask (zeros if none)."""
    rows, cols = on.any(2), on.any(1)
    has = rows.any(1)
    y, x = rows.argmax(1), cols.argmax(1)
    h = np.where(has, on.shape[1] - rows[:, ::-1].argmax(1) - y, 0)
    w = np.where(has, on.shape[2] - cols[:, ::-1].argmax(1) - x, 0)
    return np.where(has, y, 0), np.where(has, x, 0), h, w


def symmetry_any_flip(m: np.ndarray) -> np.ndarray:
    """Point symmetry of (n, h, w) masks up to the random flips applied at use: the largest of
    the fixed-centre symmetry of the four flipped versions."""
    return np.max([mask_statistics(m[:, ::fy, ::fx])["symmetry"]
                   for fy in (1, -1) for fx in (1, -1)], axis=0)





def test_e2e_fmix_masks_match_official(official_fmix_stats):
    recipe = MixRecipe(methods=("fmix",), num_classes=E2E_N, fmix_size=(FM_S, FM_S))
    own, _ = run_random_mix(recipe, FM_S, FM_S)
    ours = mask_statistics(own)
    ours["symmetry"] = symmetry_any_flip(own)
    rng = np.random.default_rng(21)
    ref_masks = np.stack([official_fmix_mask(rng, FM_S, FM_S) for _ in range(own.shape[0])])
    ref = dict(official_fmix_stats, symmetry=symmetry_any_flip(ref_masks))
    p = {k: ks(ours[k], ref[k]) for k in ref}
    print("random_mix FMix vs restated ecs-vlc/FMix, KS p:", p)
    assert_same(p)


def test_e2e_random_erasing_matches_official():
    recipe = MixRecipe(methods=(), num_classes=E2E_N, after=("random_erasing",), erasing_fill=0)
    own, _ = run_random_mix(recipe, RE_H, RE_W)
    ours = erasing_summary(*bounding_boxes(~own), RE_H, RE_W)
    n = own.shape[0]
    ref = erasing_summary(*official_erasing(np.random.default_rng(22), n, RE_H, RE_W), RE_H, RE_W)
    p = {k: ks(ours[k], ref[k]) for k in ref}
    print("random_mix Random Erasing vs restated official loop, KS p:", p)
    assert_same(p)


def test_e2e_cutmix_minmax_matches_timm():
    recipe = MixRecipe(methods=("cutmix",), num_classes=E2E_N, cutmix_minmax=MINMAX)
    own, _ = run_random_mix(recipe, MM_H, MM_W)
    y, x, h, w = bounding_boxes(~own)
    p = compare_boxes((y, x, h, w), official_rand_bbox_minmax(np.random.default_rng(23), MM_H,
                                                              MM_W, MINMAX, own.shape[0]))
    print("random_mix cutmix_minmax vs restated timm, KS p:", p)
    assert_same(p)
    assert (y + h < MM_H).all() and (x + w < MM_W).all()
