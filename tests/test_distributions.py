"""Distributions of the random parameters: Mixup / FMix lam ~ Beta(a, a), CutMix and ResizeMix
lam from the pixel geometry, the FMix spectrum and the FMix mask bank."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def
from scipy import stats

import dali_mix as dm
from dali_mix.schedule import BatchClock
from dali_mix import masks

ROOT = Path(__file__).resolve().parents[1]

SIGNIFICANCE = 1e-3


def to_np(tl):
    return np.stack([np.asarray(tl[i]) for i in range(len(tl))])


def constant_batch(n, h, w):
    """(1, h, w) images, sample i has the constant value i + 1."""
    return [np.full((1, h, w), i + 1, np.float32) for i in range(n)]


def run_pairs(mixer, *, n, h, w, iters, seed):
    """Mix a batch of constant one-channel CHW images (labels = index) with `mixer`, one of the
    single-method wrappers of `random_mix` (e.g. `lambda **kw: dm.mixup(alpha=0.4, **kw)`), on
    DALI's operators; returns (mixed, lam, partner) of all iterations concatenated."""
    images = constant_batch(n, h, w)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
        idx = fn.external_source(source=lambda: [np.array(i, np.int64) for i in range(n)], batch=True)
        out = mixer(images=x, labels=idx, num_classes=n, image_size=(h, w), layout="CHW", channels=1,
                    executor="dali")
        return out.images, out.lam, out.labels_b

    p = pipe()
    p.build()
    outs = [[to_np(o) for o in p.run()] for _ in range(iters)]
    return [np.concatenate([o[k] for o in outs]) for k in range(3)]


def own_fraction(mixed, n):
    """Fraction of pixels of every sample that still hold its own value (sample index % n + 1)."""
    own = np.arange(len(mixed)) % n + 1
    return (mixed[:, 0] == own[:, None, None]).mean(axis=(1, 2))


def ks_band_statistic(sample, cdf, width):
    """KS distance between the empirical CDF of `sample` and the band [cdf(x - width), cdf(x + width)].

    If every sample value lies within `width` of a draw from `cdf`, the statistic is at most the
    ordinary KS statistic of those draws (so it is compared with the KS critical value)."""
    x = np.sort(sample)
    n = len(x)
    above = np.arange(1, n + 1) / n - cdf(x + width)   # ecdf(x) above the band
    below = cdf(x - width) - np.arange(0, n) / n       # ecdf(x-) below the band
    return max(above.max(), below.max(), 0.0)


# ------------------------------------------------------------------------------------------------
# Mixup
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_mixup_lam_is_beta(alpha):
    mixed, lam, partner = run_pairs(lambda **kw: dm.mixup(alpha=alpha, **kw), n=256, h=2, w=2,
                                    iters=9, seed=31)
    assert lam.size >= 2000
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > SIGNIFICANCE
    # and lam is the weight actually used for the pixels
    n = 256
    own = np.arange(len(mixed)) % n + 1
    np.testing.assert_allclose(mixed[:, 0, 0, 0], lam * own + (1 - lam) * (partner + 1), rtol=1e-5)


def test_mixup_lam_other_alpha_is_rejected():
    """The KS test above has power: Beta(0.4) draws are not Beta(1, 1)."""
    _, lam, _ = run_pairs(lambda **kw: dm.mixup(alpha=0.4, **kw), n=256, h=2, w=2, iters=9, seed=31)
    assert stats.kstest(lam, stats.beta(1.0, 1.0).cdf).pvalue < SIGNIFICANCE


# ------------------------------------------------------------------------------------------------
# CutMix
# ------------------------------------------------------------------------------------------------

CM_H, CM_W = 20, 28


def clovaai_cutmix_lams(n, rng, alpha=1.0):
    """lam of the official CutMix code (clovaai rand_bbox): int() truncation, centre uniform, clip."""
    lam0 = rng.beta(alpha, alpha, n)
    cut = np.sqrt(1.0 - lam0)
    ch, cw = (CM_H * cut).astype(int), (CM_W * cut).astype(int)
    cy, cx = rng.integers(0, CM_H, n), rng.integers(0, CM_W, n)
    y1, y2 = np.clip(cy - ch // 2, 0, CM_H), np.clip(cy + ch // 2, 0, CM_H)
    x1, x2 = np.clip(cx - cw // 2, 0, CM_W), np.clip(cx + cw // 2, 0, CM_W)
    return 1.0 - (y2 - y1) * (x2 - x1) / (CM_H * CM_W)


@pytest.fixture(scope="module")
def cutmix_run():
    return run_pairs(lambda **kw: dm.cutmix(alpha=1.0, **kw), n=250, h=CM_H, w=CM_W,
                     iters=16, seed=41)


def test_cutmix_lam_is_one_minus_box_area(cutmix_run):
    mixed, lam, partner = cutmix_run
    n = 250
    frac = own_fraction(mixed, n)
    # exactly the counted fraction (lam * H * W is the integer number of kept pixels)
    np.testing.assert_allclose(lam * CM_H * CM_W, np.round(frac * CM_H * CM_W), atol=1e-3)
    np.testing.assert_allclose(lam, frac, atol=1e-6)
    partner_px = mixed[:, 0] == (partner + 1)[:, None, None]
    assert np.all(partner_px | (mixed[:, 0] == (np.arange(len(mixed)) % n + 1)[:, None, None]))
    # mean plausible: near the official algorithm's (which is not 0.5: boxes get clipped)
    ref = clovaai_cutmix_lams(400_000, np.random.default_rng(0))
    assert abs(lam.mean() - ref.mean()) < 0.04
    assert lam.min() < 0.2 and lam.max() == 1.0 or lam.max() > 0.98


def test_cutmix_lam_distribution_matches_official(cutmix_run):
    _, lam, _ = cutmix_run
    ref = clovaai_cutmix_lams(400_000, np.random.default_rng(0))
    se = ref.std() / np.sqrt(lam.size)
    assert abs(lam.mean() - ref.mean()) < 3.5 * se
    # compare box areas in whole pixels (float32 vs float64 lam would misalign the KS steps)
    area = np.round((1.0 - lam.astype(np.float64)) * CM_H * CM_W)
    ref_area = np.round((1.0 - ref) * CM_H * CM_W)
    assert stats.ks_2samp(area, ref_area).pvalue > SIGNIFICANCE


# ------------------------------------------------------------------------------------------------
# ResizeMix
# ------------------------------------------------------------------------------------------------

RM_S = 40
RM_SCALE = (0.1, 0.8)


@pytest.fixture(scope="module")
def resizemix_sides():
    mixed, lam, _ = run_pairs(lambda **kw: dm.resizemix(scale=RM_SCALE, **kw),
                              n=256, h=RM_S, w=RM_S, iters=8, seed=43)
    np.testing.assert_allclose(lam, own_fraction(mixed, 256), atol=1e-6)
    side = np.sqrt((1.0 - lam.astype(np.float64)) * RM_S * RM_S)
    h = np.round(side).astype(int)
    np.testing.assert_allclose(side, h, atol=1e-3)  # a square patch of a whole number of pixels
    return h


def test_resizemix_tau_within_range(resizemix_sides):
    h = resizemix_sides
    tau = h / RM_S
    # tau in the scale range, up to one pixel of rounding the side
    assert np.all(tau >= RM_SCALE[0] - 1.0 / RM_S) and np.all(tau <= RM_SCALE[1] + 1.0 / RM_S)
    # the whole range is used, roughly uniformly
    assert tau.min() < RM_SCALE[0] + 0.05 and tau.max() > RM_SCALE[1] - 0.05
    assert abs(tau.mean() - np.mean(RM_SCALE)) < 0.03


def test_resizemix_side_is_floor_of_uniform_tau(resizemix_sides):
    h = resizemix_sides
    lo, hi = RM_SCALE
    support = np.arange(int(np.floor(lo * RM_S)), int(np.ceil(hi * RM_S)))
    assert set(np.unique(h)) <= set(support.tolist())
    # P(h = k) = |[k/S, (k+1)/S) & [lo, hi)| / (hi - lo)
    p = np.clip(np.minimum((support + 1) / RM_S, hi) - np.maximum(support / RM_S, lo), 0, None) / (hi - lo)
    observed = np.array([(h == k).sum() for k in support])
    assert stats.chisquare(observed, p / p.sum() * h.size).pvalue > SIGNIFICANCE


# ------------------------------------------------------------------------------------------------
# FMix
# ------------------------------------------------------------------------------------------------

FM_S = 32


def fmix_run(alpha, seed):
    def mixer(**kw):
        return dm.fmix(alpha=alpha, fmix_bank=dm.FMixMaskBank((FM_S, FM_S), 256, bank_size=16, seed=5), **kw)
    return run_pairs(mixer, n=256, h=FM_S, w=FM_S, iters=8, seed=seed)


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_fmix_lam_is_mask_mean_and_beta(alpha):
    mixed, lam, partner = fmix_run(alpha, seed=47)
    npx = FM_S * FM_S
    frac = own_fraction(mixed, 256)
    # lam is the true mask mean: a whole number of pixels, equal to the counted fraction
    np.testing.assert_allclose(lam * npx, np.round(frac * npx), atol=1e-3)
    np.testing.assert_allclose(lam, frac, atol=1e-6)
    # the rest of the pixels hold the partner
    own = (np.arange(len(mixed)) % 256 + 1)[:, None, None]
    assert np.all((mixed[:, 0] == own) | (mixed[:, 0] == (partner + 1)[:, None, None]))
    # lam ~ Beta(alpha, alpha) up to the one-pixel quantisation of the mask
    d = ks_band_statistic(lam, stats.beta(alpha, alpha).cdf, 1.0 / npx)
    assert d < stats.kstwo.ppf(1 - SIGNIFICANCE, lam.size), d


def radial_power(decay, n=48, s=64, seed=0, spectrum="official"):
    imgs = masks.low_frequency_images(n, s, s, decay, rng=np.random.default_rng(seed), spectrum=spectrum).double()
    assert imgs.shape == (n, s, s) and imgs.dtype == torch.float64
    power = (torch.fft.fft2(imgs).abs() ** 2).mean(dim=0).numpy()
    fy = np.fft.fftfreq(s)[:, None]
    fx = np.fft.fftfreq(s)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    return f, power


@pytest.mark.parametrize("spectrum", ["official", "paper"])
@pytest.mark.parametrize("decay", [1.0, 2.0, 3.0])
def test_fmix_spectrum_slope_follows_decay_power(decay, spectrum):
    f, power = radial_power(decay, spectrum=spectrum)
    sel = (f > 0) & (f <= 0.5)
    slope = np.polyfit(np.log(f[sel]), np.log(power[sel]), 1)[0]
    assert abs(slope - (-2.0 * decay)) < 0.3, slope


@pytest.mark.parametrize("spectrum", ["official", "paper"])
def test_fmix_power_concentrated_at_low_frequencies(spectrum):
    r = 0.05
    fractions = []
    for decay in (1.0, 3.0):
        f, power = radial_power(decay, spectrum=spectrum)
        ac = f > 0
        fractions.append(power[ac & (f <= r)].sum() / power[ac].sum())
    low1, low3 = fractions
    assert low3 > 0.9 and low3 > low1 + 0.3, fractions


def test_low_frequency_images_normalised():
    imgs = masks.low_frequency_images(8, 12, 20, 3.0, rng=np.random.default_rng(1))
    assert imgs.shape == (8, 12, 20) and imgs.dtype == torch.float32
    np.testing.assert_allclose(imgs.mean(dim=(1, 2)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(imgs.abs().amax(dim=(1, 2)).numpy(), 1, atol=1e-6)


@pytest.mark.parametrize("hw", [(7, 9), (300, 260)])
def test_pixel_ranks_is_a_permutation_per_image(hw):
    h, w = hw
    g = torch.Generator().manual_seed(3)
    imgs = torch.randn(3, h, w, generator=g)
    ranks = masks.pixel_ranks(imgs)
    assert ranks.shape == (3, h, w, 1)
    assert ranks.dtype == (np.uint16 if h * w <= 65536 else np.int32)
    for img, rk in zip(imgs.numpy(), ranks):
        flat = rk.reshape(-1).astype(np.int64)
        np.testing.assert_array_equal(np.sort(flat), np.arange(h * w))
        order = np.argsort(flat)                       # pixels from rank 0 upwards
        values = img.reshape(-1)[order]
        assert np.all(np.diff(values) <= 0)            # rank 0 = brightest
        assert flat[np.argmax(img)] == 0
        k = round(0.3 * h * w)
        mask = masks.binary_mask(rk, 0.3)
        assert mask.sum() == k
        # the mask is the top-k pixels
        assert np.all(img.reshape(-1)[mask.reshape(-1) == 1].min() >= np.sort(img.reshape(-1))[::-1][k - 1])


RUNS_PER_EPOCH = 10


def info(epoch, step):
    """DALI's batch_info: `iteration` counts runs over the pipeline's life, epoch_idx stays 0."""
    return SimpleNamespace(epoch_idx=0, iteration=epoch * RUNS_PER_EPOCH + step)


def test_fmix_bank_deterministic_and_refreshed():
    kw = dict(bank_size=5, decay_power=3.0, min_refresh_batches=0)  # a bank per epoch
    a = dm.FMixMaskBank((12, 16), 4, seed=9, clock=BatchClock(RUNS_PER_EPOCH), **kw)
    b = dm.FMixMaskBank((12, 16), 4, seed=9, clock=BatchClock(RUNS_PER_EPOCH), **kw)
    batch_a = a.bank(a.clock.epoch_step(info(0, 3))[0])
    batch_b = b.bank(0)
    assert len(batch_a) == 5 and all(m.shape == (12, 16, 1) for m in batch_a)
    for x, y in zip(batch_a, batch_b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.make_bank(2), b.make_bank(2))
    # every mask is a rank image
    for m in batch_a:
        np.testing.assert_array_equal(np.sort(m.reshape(-1)), np.arange(12 * 16))
    # refreshed: another epoch, another bank
    assert not np.array_equal(a.make_bank(0), a.make_bank(1))
    assert not np.array_equal(a.bank(0), a.bank(1))
    # another seed, another bank
    c = dm.FMixMaskBank((12, 16), 4, seed=10, clock=BatchClock(RUNS_PER_EPOCH), **kw)
    assert not np.array_equal(a.make_bank(0), c.make_bank(0))
    # without refresh the bank is the same for every epoch
    d = dm.FMixMaskBank((12, 16), 4, seed=9, refresh=False, **kw)
    np.testing.assert_array_equal(d.make_bank(0), d.make_bank(5))
    np.testing.assert_array_equal(d.bank(0), d.bank(3))
    np.testing.assert_array_equal(d.make_bank(0), a.make_bank(0))


_BANK_DIGEST = """
import hashlib
from dali_mix.masks import FMixMaskBank
for size, spectrum in [((40, 101), "official"), ((24, 20), "official"), ((33, 32), "paper")]:
    bank = FMixMaskBank(size, 2, bank_size=40, seed=3, spectrum=spectrum).make_bank(1)
    print(hashlib.sha256(bank.tobytes()).hexdigest())
"""


def test_fmix_bank_is_the_same_on_every_cpu_dispatch():
    """One seed, one bank, whatever vector unit torch dispatches to: the bank made here (the
    machine's best kernels) equals the one made with torch's plain kernels
    (`ATEN_CPU_CAPABILITY=default`). torch's seeded random normals differ between the two,
    which made the banks of one seed differ between machines before the noise came from numpy."""
    def digests(**env):
        run = subprocess.run([sys.executable, "-c", _BANK_DIGEST], capture_output=True, text=True, timeout=300,
                             cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **env})
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.split()
    plain = digests(ATEN_CPU_CAPABILITY="default")
    assert len(plain) == 3 and plain == digests()


def test_pixel_ranks_ties_in_raster_order():
    """Equal values (the official spectrum's point-symmetric pixel pairs) are ranked in raster
    order, so the ranks depend on the values alone."""
    img = torch.tensor([[[0.5, 1.0, 0.5], [1.0, 0.25, 0.5]]])
    ranks = masks.pixel_ranks(img)[0, ..., 0]
    np.testing.assert_array_equal(ranks, [[2, 0, 3], [1, 5, 4]])
    # the official masks' pairs are exact ties now: m(y, x) == m(-y, -x)
    imgs = masks.low_frequency_images(4, 9, 12, rng=np.random.default_rng(0)).numpy()
    np.testing.assert_array_equal(imgs, np.roll(imgs[:, ::-1, ::-1], (1, 1), axis=(1, 2)))


def test_fmix_bank_refresh_waits_for_min_refresh_batches():
    """Short epochs share a bank until it served `min_refresh_batches` batches, so making banks
    costs at most make_bank / min_refresh_batches per batch; long epochs get one each."""
    kw = dict(bank_size=3, seed=4)
    short = dm.FMixMaskBank((8, 8), 2, clock=BatchClock(10), min_refresh_batches=25, **kw)
    assert short.refresh_period() == 3  # 30 batches >= 25
    assert [short.bank_index(e) for e in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    np.testing.assert_array_equal(short.bank(0), short.bank(2))
    assert not np.array_equal(short.bank(2), short.bank(3))
    np.testing.assert_array_equal(short.bank(3), short.make_bank(1))
    long = dm.FMixMaskBank((8, 8), 2, clock=BatchClock(40), min_refresh_batches=25, **kw)
    every = dm.FMixMaskBank((8, 8), 2, clock=BatchClock(10), min_refresh_batches=0, **kw)
    assert long.refresh_period() == every.refresh_period() == 1
    assert [every.bank_index(e) for e in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="min_refresh_batches"):
        dm.FMixMaskBank((8, 8), 2, min_refresh_batches=-1)
