"""MixRecipe.from_timm: timm's Mixup arguments give timm's distribution of lambda and method. CPU.

timm is not a dependency: its parameter draws (`Mixup._params_per_elem`, `_params_per_batch`,
`_mix_pair`'s half-batch draw, `rand_bbox`, `rand_bbox_minmax`, `cutmix_bbox_and_lam` with
correct_lam) are restated in numpy below. The other side is the public API: a CPU pipeline of
constant-colour 32x32 HWC uint8 images (sample i has colour 7 i + 3 and label i) through
`dali_mix.random_mix(images, labels, MixRecipe.from_timm(...), image_size=(32, 32),
normalize=...)`, returning `out.outputs()` plus `out.lam` and `out.method`. For each of timm's
modes (batch, pair, elem), >= 2,000 independent draws of lambda are KS-compared with timm's
(p > 0.01) and the method frequencies (unmixed, Mixup, CutMix) chi-square-compared; every draw
is checked for consistency: the targets are lam onehot(i) + (1 - lam) onehot(partner), the
image mean is lam c_i + (1 - lam) c_partner (lam is the exact pixel fraction), batch mode has
one lam per batch, pair mode partners each other with one lam.
"""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def
from scipy import stats

import dali_mix as dm

H = W = 32
TIMM = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, switch_prob=0.5, label_smoothing=0.0)


# --------------------------------------------------------------------------- timm, restated


def timm_rand_bbox(rng, lam: float) -> tuple[int, int, int, int]:
    """timm `rand_bbox` (margin 0): side int(S sqrt(1 - lam)), centre uniform, clipped."""
    ratio = np.sqrt(1 - lam)
    cut_h, cut_w = int(H * ratio), int(W * ratio)
    cy, cx = rng.integers(0, H), rng.integers(0, W)
    yl, yh = np.clip(cy - cut_h // 2, 0, H), np.clip(cy + cut_h // 2, 0, H)
    xl, xh = np.clip(cx - cut_w // 2, 0, W), np.clip(cx + cut_w // 2, 0, W)
    return yl, yh, xl, xh


def timm_rand_bbox_minmax(rng, minmax) -> tuple[int, int, int, int]:
    """timm `rand_bbox_minmax`: side uniform in [int(S lo), int(S hi)), corner in [0, S - side)."""
    cut_h = rng.integers(int(H * minmax[0]), int(H * minmax[1]))
    cut_w = rng.integers(int(W * minmax[0]), int(W * minmax[1]))
    yl, xl = rng.integers(0, H - cut_h), rng.integers(0, W - cut_w)
    return yl, yl + cut_h, xl, xl + cut_w


def timm_cutmix_lam(rng, lam: float, minmax=None) -> float:
    """timm `cutmix_bbox_and_lam(correct_lam=True)`: lam = 1 - clipped box area / image area."""
    yl, yh, xl, xh = timm_rand_bbox_minmax(rng, minmax) if minmax else timm_rand_bbox(rng, lam)
    return 1.0 - (yh - yl) * (xh - xl) / float(H * W)


def timm_draw(rng, mixup_alpha, cutmix_alpha, prob, switch_prob, cutmix_minmax=None, **_):
    """One timm draw (`_params_per_batch`, or one element of `_params_per_elem`) followed by the
    box of `_mix_batch` / `_mix_elem`: (lam, method) with method 0 Mixup, 1 CutMix, 2 none."""
    if cutmix_minmax is not None:
        cutmix_alpha = 1.0  # timm forces it
    if rng.random() >= prob:
        return 1.0, 2
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = rng.random() < switch_prob
    else:
        use_cutmix = cutmix_alpha > 0
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(np.float32(rng.beta(alpha, alpha)))
    if use_cutmix and lam != 1.0:
        lam = timm_cutmix_lam(rng, lam, cutmix_minmax)
    return lam, int(use_cutmix)


def timm_draws(n: int, seed: int = 0, **timm) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lam, method = zip(*(timm_draw(rng, **timm) for _ in range(n)))
    return np.asarray(lam), np.asarray(method)


# --------------------------------------------------------------------------- dali-mix, public API


def colour(i) -> np.ndarray:
    return (7 * np.asarray(i) + 3) % 256


def mixed_batches(recipe: dm.MixRecipe, batch: int, runs: int, seed: int = 11) -> list[dict]:
    """`runs` batches of the recipe on constant-colour images: lam, method, targets, image means."""
    images = [np.full((H, W, 3), colour(i), np.uint8) for i in range(batch)]
    labels = [np.array([i], np.int32) for i in range(batch)]

    @pipeline_def(batch_size=batch, num_threads=1, device_id=None, seed=seed)
    def pipe():
        imgs = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        labs = fn.external_source(source=lambda: labels, batch=True)
        out = dm.random_mix(imgs, labs, recipe, image_size=(H, W),
                            normalize=dm.Normalization((0.0,) * 3, (1.0,) * 3))
        return (*out.outputs(), out.lam, out.method)

    p = pipe()
    p.build()
    batches = []
    for _ in range(runs):
        im, targets, lam, method = (np.stack([np.asarray(t[i]) for i in range(batch)]) for t in p.run())
        batches.append({"mean": im.mean(axis=(1, 2, 3)), "targets": targets,
                        "lam": lam.reshape(-1).astype(np.float64), "method": method.reshape(-1)})
    return batches


def partners(b: dict) -> np.ndarray:
    """Partner of each sample from its target row (sample i has label i); -1 when unmixed."""
    t = b["targets"].copy()
    n = len(t)
    t[np.arange(n), np.arange(n)] = 0
    return np.where(t.max(axis=1) > 0, t.argmax(axis=1), -1)


def check_consistent(b: dict) -> np.ndarray:
    """Targets and pixels agree with lam; returns the partners."""
    n, lam = len(b["lam"]), b["lam"]
    part = partners(b)
    np.testing.assert_allclose(b["targets"][np.arange(n), np.arange(n)], lam, atol=1e-6)
    other = np.where(part < 0, np.arange(n), part)
    want = lam * colour(np.arange(n)) + (1 - lam) * colour(other)
    np.testing.assert_allclose(b["mean"], want, atol=0.6)  # lam: the exact pixel fraction
    return part


def compare(lam: np.ndarray, method: np.ndarray, timm: dict) -> None:
    """KS on lam and chi-square on the method counts against timm's draws."""
    t_lam, t_method = timm_draws(len(lam), **timm)
    ks = stats.ks_2samp(lam, t_lam)
    assert ks.pvalue > 0.01, f"lam distribution differs from timm's: {ks}"
    counts = np.stack([np.bincount(method, minlength=3), np.bincount(t_method, minlength=3)])
    chi = stats.chi2_contingency(counts[:, counts.sum(axis=0) > 0])
    assert chi.pvalue > 0.01, f"method frequencies differ from timm's: {counts}"




# --------------------------------------------------------------------------- the three modes


def test_elem_mode_matches_timm():
    recipe = dm.MixRecipe.from_timm(mode="elem", num_classes=32, **TIMM)
    assert recipe.mode == "sample"
    batches = mixed_batches(recipe, batch=32, runs=64)  # 2,048 draws
    for b in batches:
        check_consistent(b)
    compare(np.concatenate([b["lam"] for b in batches]),
            np.concatenate([b["method"] for b in batches]), TIMM)


def test_elem_mode_with_cutmix_minmax_matches_timm():
    timm = dict(TIMM, mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8))
    recipe = dm.MixRecipe.from_timm(mode="elem", num_classes=32, **timm)
    assert recipe.candidates == ("cutmix",)
    batches = mixed_batches(recipe, batch=32, runs=64)
    for b in batches:
        check_consistent(b)
    method = np.concatenate([b["method"] for b in batches])
    compare(np.concatenate([b["lam"] for b in batches]), np.where(method == 1, 2, method + 1), timm)


def test_pair_mode_matches_timm():
    recipe = dm.MixRecipe.from_timm(mode="pair", num_classes=32, **TIMM)
    assert recipe.mode == "pair"
    lam, method = [], []
    for b in mixed_batches(recipe, batch=32, runs=128):  # 16 pairs a batch: 2,048 draws
        part = check_consistent(b)
        mixed = np.flatnonzero(part >= 0)
        assert (part[part[mixed]] == mixed).all(), "partners are not pairs"
        np.testing.assert_array_equal(b["lam"][mixed], b["lam"][part[mixed]])
        np.testing.assert_array_equal(b["method"][mixed], b["method"][part[mixed]])
        first = mixed[mixed < part[mixed]]  # one draw per pair; unmixed pairs (and empty
        alone = np.flatnonzero(part < 0)    # CutMix boxes) show no partner: lam 1, by method
        lone = np.repeat(np.arange(3), np.bincount(b["method"][alone], minlength=3) // 2)
        assert len(first) + len(lone) == 16
        lam.append(np.concatenate([b["lam"][first], np.ones(len(lone))]))
        method.append(np.concatenate([b["method"][first], lone]))
    compare(np.concatenate(lam), np.concatenate(method), TIMM)


def test_batch_mode_matches_timm():
    recipe = dm.MixRecipe.from_timm(mode="batch", num_classes=4, **TIMM)
    assert recipe.mode == "batch"
    lam, method = [], []
    for b in mixed_batches(recipe, batch=4, runs=2000):  # one draw a batch
        check_consistent(b)
        assert (b["lam"] == b["lam"][0]).all(), f"lam differs inside a batch: {b['lam']}"
        assert (b["method"] == b["method"][0]).all()
        lam.append(b["lam"][0])
        method.append(b["method"][0])
    compare(np.asarray(lam), np.asarray(method), TIMM)


# --------------------------------------------------------------------------- the mapping


def test_from_timm_maps_timms_arguments():
    r = dm.MixRecipe.from_timm(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.3, prob=0.6,
                               mode="pair", label_smoothing=0.1, num_classes=10)
    assert dict(r.methods) == {"mixup": 0.7, "cutmix": 0.3}
    assert (r.prob, r.mode, r.label_smoothing, r.num_classes) == (0.6, "pair", 0.1, 10)
    assert (r.mixup_alpha, r.cutmix_alpha) == (0.8, 1.0)
    assert dm.MixRecipe.from_timm().candidates == ("mixup",)  # timm's defaults: Mixup only
    assert dm.MixRecipe.from_timm().label_smoothing == 0.1
    assert dm.MixRecipe.from_timm(mixup_alpha=0.0, cutmix_alpha=1.0).candidates == ("cutmix",)
    minmax = dm.MixRecipe.from_timm(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8))
    assert minmax.candidates == ("cutmix",) and minmax.cutmix_minmax == (0.2, 0.8)
    assert not dm.MixRecipe.from_timm(mixup_alpha=0.0).mixes  # smoothing only, as timm
    assert dm.MixRecipe.from_timm(mode="elem", layout="CHW").layout == "CHW"  # overrides
    assert dm.MixRecipe.from_timm(correct_lam=False).candidates == ("mixup",)  # no box: no effect


def test_from_timm_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="correct_lam=False"):
        dm.MixRecipe.from_timm(cutmix_alpha=1.0, correct_lam=False)
    with pytest.raises(ValueError, match="'half'"):
        dm.MixRecipe.from_timm(mode="half")
    with pytest.raises(ValueError, match="prob"):
        dm.MixRecipe.from_timm(prob=1.5)


def test_train_py_timm_flags_go_through_from_timm():
    """train.py's timm-named flags (--mixup, --cutmix, --mixup-prob, --mixup-switch-prob,
    --mixup-mode, --smoothing, --reprob) give the recipe MixRecipe.from_timm gives."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_script", Path(__file__).resolve().parents[1] / "train.py")
    train = importlib.util.module_from_spec(spec)
    sys.modules["train_script"] = train  # its dataclasses look their module up
    spec.loader.exec_module(train)
    args = train.parse_args(["--mixup", "0.8", "--cutmix", "1.0", "--mixup-prob", "0.9",
                             "--mixup-switch-prob", "0.3", "--mixup-mode", "pair", "--smoothing", "0.1",
                             "--reprob", "0.25"])
    recipe = train.recipe_from_args(args, 10)
    want = dm.MixRecipe.from_timm(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.9, switch_prob=0.3,
                                  mode="pair", label_smoothing=0.1, num_classes=10, seed=args.seed)
    assert recipe == want.with_(after=("random_erasing",), erasing_prob=0.25)
    assert recipe.mode == "pair" and recipe.methods == {"mixup": pytest.approx(0.7), "cutmix": pytest.approx(0.3)}
