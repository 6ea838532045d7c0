"""dali_mix.plan.MixPlanner: the vectorised draws of the planned path, checked on the plans
themselves (geometry, exact lambdas, distributions, determinism). The pixels the graph makes
from a plan are checked in test_random_mix.py (its "planned" runs)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import dali_mix as dm
from dali_mix.masks import FMixMaskBank
from dali_mix.plan import MixPlanner, can_plan
from dali_mix.schedule import BatchClock

SIGNIFICANCE = 1e-3
H, W = 20, 28
STD = (58.0, 57.0, 57.5)


def planner(methods, batch_size=64, seed=0, **kw):
    extra = {k: kw.pop(k) for k in ("enabled", "clock", "normalize_std") if k in kw}
    recipe = dm.MixRecipe(methods=methods, num_classes=10, layout="HWC", fmix_size=(H, W), **kw)
    bank = FMixMaskBank((H, W), batch_size, bank_size=32, seed=seed) if "fmix" in recipe.candidates else None
    return MixPlanner(recipe, batch_size, (H, W), seed=seed, fmix_bank=bank, **extra)


def plans(p, n, epoch=0):
    return [p.plan(epoch, step) for step in range(n)]


def rows_of(plan, i):
    """(ids, anchors, shapes) of sample i's paste rows."""
    return plan["paste_ids"][i], plan["paste_anchors"][i], plan["paste_shape"][i]


def test_can_plan_needs_hwc_known_size_and_pair_methods():
    hwc = dm.MixRecipe(num_classes=3, layout="HWC")
    assert can_plan(hwc, (8, 8)) and can_plan(hwc, 8)
    assert not can_plan(hwc, None)
    assert not can_plan(dm.MixRecipe(num_classes=3), (8, 8))  # CHW
    assert not can_plan(hwc.with_(methods=["cutmix", "cutout"]), (8, 8))
    assert not can_plan(hwc, (8, 8), FMixMaskBank((4, 4), 2, bank_size=2))  # bank of another size
    with pytest.raises(ValueError, match="candidates"):
        MixPlanner(hwc.with_(methods=["random_erasing"]), 4, (8, 8))


def test_permutation_is_a_derangement_for_any_batch_size():
    for b in (2, 3, 7, 64):
        p = planner(["cutmix"], batch_size=b)
        for plan in plans(p, 20):
            perm = plan["perm"]
            assert perm.dtype == np.int32
            np.testing.assert_array_equal(np.sort(perm), np.arange(b))
            assert not np.any(perm == np.arange(b))
    single = planner(["cutmix"], batch_size=1).plan(0, 0)["perm"]
    np.testing.assert_array_equal(single, [0])
    with_self = np.concatenate([pl["perm"] == np.arange(6)
                                for pl in plans(planner(["cutmix"], batch_size=6, no_self_pairs=False), 40)])
    assert with_self.any()


def test_cutmix_rows_are_the_clipped_box_and_lam_its_complement():
    p = planner(["cutmix"])
    lams = []
    for plan in plans(p, 40):
        for i in range(p.batch_size):
            ids, anchors, shapes = rows_of(plan, i)
            assert ids[0] == i and tuple(anchors[0]) == (0, 0) and tuple(shapes[0]) == (H, W)
            area = 0
            if len(ids) > 1:
                assert len(ids) == 2 and ids[1] == plan["perm"][i]
                (y, x), (h, w) = anchors[1], shapes[1]
                assert 0 <= y and y + h <= H and 0 <= x and x + w <= W and h > 0 and w > 0
                area = h * w
            assert plan["lam"][i] == np.float32(1 - area / (H * W))
            lams.append(plan["lam"][i])
        assert plan["method"].dtype == np.int32 and np.all(plan["method"] == 0)
    # clovaai rand_bbox with lam0 ~ U(0, 1): the clipped box makes E[lam] > 0.5
    assert 0.5 < np.mean(lams) < 0.75


def test_cutmix_minmax_sides_in_range_and_inside():
    p = planner(["cutmix"], cutmix_minmax=(0.2, 0.6))
    for plan in plans(p, 10):
        for i in range(p.batch_size):
            _, anchors, shapes = rows_of(plan, i)
            (y, x), (h, w) = anchors[1], shapes[1]
            assert int(0.2 * H) <= h < max(int(0.6 * H), int(0.2 * H) + 1)
            assert int(0.2 * W) <= w < max(int(0.6 * W), int(0.2 * W) + 1)
            assert y + h <= H and x + w <= W


def test_resizemix_patch_inside_with_floor_of_tau_side():
    p = planner(["resizemix"], resizemix_scale=(0.1, 0.8))
    for plan in plans(p, 20):
        size, out, shape = plan["patch_size"], plan["patch_out"], plan["patch_shape"]
        np.testing.assert_array_equal(shape[:, 0], np.tile([H, W], (p.batch_size, 1)))
        h, w = shape[:, 1, 0], shape[:, 1, 1]
        np.testing.assert_array_equal(size, np.stack([h, w], 1).astype(np.float32))
        assert np.all(out[:, 1, 0] + h <= H) and np.all(out[:, 1, 1] + w <= W)
        # one tau for both sides: h = max(1, floor(tau H)), w = max(1, floor(tau W))
        tau_lo = np.maximum(h / H, w / W)
        tau_hi = np.minimum((h + 1) / H, (w + 1) / W)
        assert np.all(tau_lo < tau_hi + 1e-9)
        assert np.all(tau_hi > 0.1) and np.all(tau_lo <= 0.8)
        np.testing.assert_array_equal(plan["lam"], (1 - h * w / (H * W)).astype(np.float32))


def test_fmix_runs_rebuild_the_flipped_bank_mask_with_exact_lam():
    p = planner(["fmix"], batch_size=16)
    flips_seen = set()
    for step in range(6):
        plan = p.plan(0, step)
        rng = p.rng(0, step)
        rng.choice(len(p.method_p), size=p.batch_size, p=p.method_p)  # the method draw
        p.permutation(rng)
        k, entries, flips = p.fmix_draws(rng, np.ones(p.batch_size, bool))
        ranks = p.fmix_bank.bank(0)[entries, :, :, 0]
        for i in range(p.batch_size):
            ids, anchors, shapes = rows_of(plan, i)
            assert np.all(ids[1:] == plan["perm"][i]) and np.all(shapes[1:] > 0)
            mask = p.fmix_mask(plan, i)
            covered = np.zeros((H, W), int)
            for (y, x), (h, w) in zip(anchors[1:], shapes[1:]):
                covered[y:y + h, x:x + w] += 1
            assert covered.max() <= 1  # runs do not overlap
            expected = ranks[i] < k[i]
            if flips[i, 0]:
                expected = expected[::-1]
            if flips[i, 1]:
                expected = expected[:, ::-1]
            np.testing.assert_array_equal(mask, expected.astype(np.uint8))
            assert mask.sum() == k[i]
            assert plan["lam"][i] == np.float32(k[i] / (H * W))
            flips_seen.add(tuple(flips[i]))
    assert len(flips_seen) == 4


@pytest.mark.parametrize("method", ["mixup", "fmix"])
def test_lam_follows_beta(method):
    alpha = 0.4
    p = planner([method], **{f"{method}_alpha": alpha})
    lam = np.concatenate([pl["lam"] for pl in plans(p, 40)]).astype(np.float64)
    assert lam.size >= 2000
    if method == "fmix":  # k = floor(lam0 N + u): lam0 is lam up to one pixel
        lam = np.clip(lam + np.random.default_rng(0).uniform(-0.5, 0.5, lam.size) / (H * W), 0, 1)
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > SIGNIFICANCE


def test_method_frequencies_prob_and_batch_mode():
    weights = {"mixup": 1, "cutmix": 2, "resizemix": 1, "fmix": 4}
    p = planner(weights, prob=0.75)
    methods = np.concatenate([pl["method"] for pl in plans(p, 50)])
    expected = np.array([1, 2, 1, 4, 0], float) / 8 * 0.75
    expected[4] = 0.25
    counts = np.bincount(methods, minlength=5)
    assert stats.chisquare(counts, expected * methods.size).pvalue > SIGNIFICANCE
    for pl in plans(planner(weights, mode="batch"), 20):
        assert np.all(pl["method"] == pl["method"][0])


def test_unmixed_samples_copy_themselves_with_lam_one_and_one_hot_weights():
    p = planner(["mixup", "cutmix", "resizemix", "fmix"], prob=0.5, label_smoothing=0.1,
                normalize_std=STD)
    for plan in plans(p, 10):
        none = plan["method"] == 4
        assert none.any()
        for i in np.flatnonzero(none):
            assert len(plan["paste_ids"][i]) == 1
            assert tuple(plan["patch_shape"][i, 1]) == (0, 0)
        np.testing.assert_array_equal(plan["lam"][none], 1.0)
        np.testing.assert_allclose(plan["w_a"][none], 0.9)
        np.testing.assert_allclose(plan["w_b"][none], 0.0)
        np.testing.assert_allclose(plan["w_a"] + plan["w_b"], 0.9, rtol=1e-6)
        mix = plan["is_mixup"]
        np.testing.assert_array_equal(mix, plan["method"] == 0)
        lam = plan["lam"][mix].astype(np.float64)
        np.testing.assert_allclose(plan["std_a"][mix], np.array(STD) / lam[:, None], rtol=1e-5)
        np.testing.assert_allclose(plan["std_b"][mix], np.array(STD) / (1 - lam[:, None]), rtol=1e-5)


def test_enabled_switches_mixing_off():
    clock = BatchClock(runs_per_epoch=5)
    schedule = dm.MixOffSchedule(64, 1, clock)
    p = planner(["mixup", "cutmix", "fmix"], enabled=schedule, clock=clock)
    on = p(3)  # epoch 0
    off = p(7)  # epoch 1: off
    names = p.output_names
    assert np.any(dict(zip(names, on))["method"] < 3)
    off = dict(zip(names, off))
    np.testing.assert_array_equal(off["method"], 3)
    np.testing.assert_array_equal(off["lam"], 1.0)
    assert all(len(ids) == 1 for ids in off["paste_ids"])


def test_fmix_masks_differ_between_shards_sharing_a_bank():
    a, b = planner(["fmix"], seed=1), planner(["fmix"], seed=2)
    b.fmix_bank = a.fmix_bank  # one bank (the same seed on every shard), two shard seeds
    ma, mb = a.plan(0, 0), b.plan(0, 0)
    masks_a = {a.fmix_mask(ma, i).tobytes() for i in range(a.batch_size)}
    masks_b = {b.fmix_mask(mb, i).tobytes() for i in range(b.batch_size)}
    assert len(masks_a & masks_b) < a.batch_size // 4


def test_plans_are_a_pure_function_of_seed_epoch_step():
    a, b = planner(["mixup", "cutmix", "resizemix", "fmix"]), planner(["mixup", "cutmix", "resizemix", "fmix"])
    other = planner(["mixup", "cutmix", "resizemix", "fmix"], seed=1)

    def same(x, y):
        for k in x:
            xs, ys = (x[k], y[k]) if isinstance(x[k], list) else ([x[k]], [y[k]])
            if not all(np.array_equal(u, v) for u, v in zip(xs, ys)):
                return False
        return True

    assert same(a.plan(2, 5), b.plan(2, 5))
    assert not same(a.plan(2, 5), a.plan(2, 6))
    assert not same(a.plan(2, 5), a.plan(3, 5))
    assert not same(a.plan(2, 5), other.plan(2, 5))


def test_fused_plan_draws_the_same_batch_as_the_paste_plan():
    """`fused=True` only changes how a plan is handed over (blend, boxes, patch, mask): same
    methods, partners, lambdas and targets; CutMix boxes, ResizeMix patches and FMix masks equal
    the paste plan's rows."""
    methods = ["mixup", "cutmix", "resizemix", "fmix"]
    recipe = dm.MixRecipe(methods=methods, num_classes=10, layout="HWC", fmix_size=(H, W),
                          prob=0.8, label_smoothing=0.1)
    bank = FMixMaskBank((H, W), 32, bank_size=8, seed=1)
    paste = MixPlanner(recipe, 32, (H, W), seed=4, fmix_bank=bank)
    fused = MixPlanner(recipe, 32, (H, W), seed=4, fmix_bank=bank, fused=True)
    ids = {m: recipe.candidates.index(m) for m in methods}
    seen = set()
    for step in range(5):
        a, b = paste.plan(1, step), fused.plan(1, step)
        for key in ("method", "perm", "lam", "w_a", "w_b"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        for i, m in enumerate(b["method"]):
            seen.add(int(m))
            mixup = m == ids["mixup"]
            assert b["blend"][i] == (a["lam"][i] if mixup else 1.0)
            if m == ids["cutmix"] and len(b["boxes"][i]):
                y, x, h, w = b["boxes"][i][0]
                assert len(b["boxes"][i]) == 1 and h * w > 0
                np.testing.assert_array_equal(rows_of(a, i)[1][1:], [[y, x]])
                np.testing.assert_array_equal(rows_of(a, i)[2][1:], [[h, w]])
                assert a["lam"][i] == np.float32(1 - h * w / (H * W))
            else:
                assert b["boxes"][i].shape == (0, 4)
            if m == ids["resizemix"]:
                np.testing.assert_array_equal(b["patch"][i], [*a["patch_out"][i, 1], *a["patch_shape"][i, 1]])
            else:
                np.testing.assert_array_equal(b["patch"][i], 0)
            if m == ids["fmix"]:
                mask = fused.fmix_mask(b, i)
                np.testing.assert_array_equal(mask, paste.fmix_mask(a, i))
                assert abs(mask.mean() - a["lam"][i]) < 1e-6  # lam = k / N exactly
            else:
                assert b["mask"][i].size == 0
    assert seen == set(range(len(methods) + 1))
