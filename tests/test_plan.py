"""dali_mix.plan.MixPlanner: the plans themselves (geometry, exact lambdas, distributions, modes,
erasing, determinism) and the DALI executor's encoding of FMix masks as paste runs. The pixels
the executors make from a plan are checked in test_random_mix.py."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import dali_mix as dm
from dali_mix.execute import fmix_runs
from dali_mix.masks import FMixMaskBank
from dali_mix.plan import CUTOUT, RANDOM_ERASING, MixPlanner
from dali_mix.schedule import BatchClock

SIGNIFICANCE = 1e-3
H, W = 20, 28
PAIR = ["mixup", "cutmix", "resizemix", "fmix"]


def planner(methods, batch_size=64, seed=0, **kw):
    extra = {k: kw.pop(k) for k in ("enabled", "clock") if k in kw}
    recipe = dm.MixRecipe(methods=methods, num_classes=10, fmix_size=(H, W), **kw)
    bank = FMixMaskBank((H, W), batch_size, bank_size=32, seed=seed) if "fmix" in recipe.candidates else None
    return MixPlanner(recipe, batch_size, (H, W), seed=seed, fmix_bank=bank, **extra)


def plans(p, n, epoch=0):
    return [p.plan(epoch, step) for step in range(n)]


def boxes_of(plan, i):
    """Sample i's CutMix boxes: its paste rows from the partner (slot 1) at the same place,
    (R, 4) (y, x, h, w)."""
    r = plan.rows_of(i)
    same = (r[:, 0] == 1) & np.all(r[:, 1:5] == r[:, 5:9], axis=1)
    assert same.all(), "CutMix pastes the partner's pixels at the same place"
    return r[:, 5:9]


def patches(plan):
    """Each sample's ResizeMix patch (B, 4) (y, x, h, w), zeros without: its one paste row,
    the partner's (slot 1) whole image resized."""
    out = np.zeros((len(plan.perm), 4), np.int64)
    for i in range(len(plan.perm)):
        r = plan.rows_of(i)
        if len(r):
            (row,) = r
            assert row[0] == 1 and tuple(row[1:5]) == (0, 0, H, W)
            out[i] = row[5:9]
    return out


def test_permutation_is_a_derangement_for_any_batch_size():
    for b in (2, 3, 7, 64):
        for plan in plans(planner(["cutmix"], batch_size=b), 20):
            assert plan.perm.dtype == np.int32
            np.testing.assert_array_equal(np.sort(plan.perm), np.arange(b))
            assert not np.any(plan.perm == np.arange(b))
    np.testing.assert_array_equal(planner(["cutmix"], batch_size=1).plan(0, 0).perm, [0])
    with_self = np.concatenate([pl.perm == np.arange(6)
                                for pl in plans(planner(["cutmix"], batch_size=6, no_self_pairs=False), 40)])
    assert with_self.any()


def test_cutmix_box_is_clipped_and_lam_its_complement():
    for plan in plans(planner(["cutmix"]), 10):
        for i in range(64):
            if len(boxes_of(plan, i)) == 0:  # an empty box: lam 1
                assert plan.lam[i] == 1.0
                continue
            (y, x, h, w), = boxes_of(plan, i)
            assert 0 <= y and y + h <= H and 0 <= x and x + w <= W and h * w > 0
            assert plan.lam[i] == np.float32(1 - h * w / (H * W))
            assert plan.blend[i] == 1.0
            assert plan.shares[i, 1] == np.float32(1) - plan.lam[i] and plan.shares[i, 0] == plan.lam[i]


def test_resizemix_patch_inside_with_floor_of_tau_side():
    for plan in plans(planner(["resizemix"]), 10):
        y, x, h, w = patches(plan).T
        assert np.all(y >= 0) and np.all(x >= 0) and np.all(y + h <= H) and np.all(x + w <= W)
        # one tau for both sides: h = max(1, floor(tau H)), w = max(1, floor(tau W))
        tau_lo, tau_hi = np.maximum(h / H, w / W), np.minimum((h + 1) / H, (w + 1) / W)
        assert np.all(tau_lo < tau_hi + 1e-9)
        assert np.all(tau_hi > 0.1) and np.all(tau_lo <= 0.8)
        np.testing.assert_array_equal(plan.lam, (1 - h * w / (H * W)).astype(np.float32))


def test_fmix_runs_rebuild_the_flipped_bank_mask_with_exact_lam():
    p = planner(["fmix"], batch_size=16)
    flips_seen = set()
    for step in range(6):
        plan = p.plan(0, step)
        runs = fmix_runs(p, plan)
        for i in range(p.batch_size):
            entry, k, flip_y, flip_x = plan.fmix[i]
            expected = (p.fmix_bank.bank(0)[entry, :, :, 0] < k)[::-1 if flip_y else 1, ::-1 if flip_x else 1]
            covered = np.zeros((H, W), int)
            for y, x, h, w in runs[i]:
                assert h > 0 and w > 0
                covered[y:y + h, x:x + w] += 1
            assert covered.max() <= 1  # runs do not overlap
            np.testing.assert_array_equal(1 - covered, expected.astype(int))
            np.testing.assert_array_equal(p.fmix_mask(plan, i), expected.astype(np.uint8))
            assert plan.lam[i] == np.float32(k / (H * W)) == np.float32(expected.mean())
            flips_seen.add((flip_y, flip_x))
    assert len(flips_seen) == 4


@pytest.mark.parametrize("method", ["mixup", "fmix"])
def test_lam_follows_beta(method):
    alpha = 0.4
    p = planner([method], **{f"{method}_alpha": alpha})
    lam = np.concatenate([pl.lam for pl in plans(p, 40)]).astype(np.float64)
    assert lam.size >= 2000
    if method == "fmix":  # k = floor(lam0 N + u): lam0 is lam up to one pixel
        lam = np.clip(lam + np.random.default_rng(0).uniform(-0.5, 0.5, lam.size) / (H * W), 0, 1)
    else:
        np.testing.assert_array_equal(np.concatenate([pl.blend for pl in plans(p, 40)]), lam.astype(np.float32))
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > SIGNIFICANCE


def test_method_frequencies_and_prob():
    weights = {"mixup": 1, "cutmix": 2, "resizemix": 1, "fmix": 4}
    methods = np.concatenate([pl.method for pl in plans(planner(weights, prob=0.75), 50)])
    expected = np.array([1, 2, 1, 4, 0], float) / 8 * 0.75
    expected[4] = 0.25
    counts = np.bincount(methods, minlength=5)
    assert stats.chisquare(counts, expected * methods.size).pvalue > SIGNIFICANCE


def test_batch_mode_one_method_one_lambda_one_box_per_batch():
    """The RandomMix paper, official CutMix and timm's "batch": one draw for the whole batch."""
    p = planner(PAIR, mode="batch")
    firsts = []
    for plan in plans(p, 200):
        assert np.all(plan.method == plan.method[0])
        np.testing.assert_array_equal(plan.lam, plan.lam[0])
        np.testing.assert_array_equal(plan.rows, plan.rows[[0]].repeat(64, 0))
        assert len({tuple(f) for f in plan.fmix}) == 1
        firsts.append(plan.method[0])
    assert stats.chisquare(np.bincount(firsts, minlength=4)).pvalue > SIGNIFICANCE


def test_pair_mode_pairs_share_their_draw():
    """timm's "pair": i and perm[i] are each other's partners and share method, lambda, box."""
    p = planner(PAIR, mode="pair", batch_size=16)
    lams = []
    for plan in plans(p, 100):
        perm = plan.perm
        np.testing.assert_array_equal(perm[perm], np.arange(16))
        assert not np.any(perm == np.arange(16))
        np.testing.assert_array_equal(plan.method, plan.method[perm])
        np.testing.assert_array_equal(plan.lam, plan.lam[perm])
        np.testing.assert_array_equal(plan.rows, plan.rows[perm])
        lams.append(plan.lam[plan.method == 0])
    assert stats.kstest(np.concatenate(lams), stats.beta(1, 1).cdf).pvalue > SIGNIFICANCE


def test_unmixed_samples_are_untouched():
    for plan in plans(planner(PAIR, prob=0.5), 10):
        none = plan.method == 4
        assert none.any()
        np.testing.assert_array_equal(plan.lam[none], 1.0)
        np.testing.assert_array_equal(plan.blend[none], 1.0)
        np.testing.assert_array_equal(plan.rows[none], 0)
        np.testing.assert_array_equal(plan.fmix[none, 0], -1)
        np.testing.assert_array_equal(plan.shares[none], [[1, 0]] * none.sum())
        assert all(len(plan.erase[i]) == 0 for i in np.flatnonzero(none))


def test_erasing_as_candidates_and_after_mixing():
    p = planner({"cutmix": 1, "cutout": 1, "random_erasing": 1}, cutout_holes=2, cutout_length=6,
                erasing_prob=1.0)
    for plan in plans(p, 10):
        for i, rows in enumerate(plan.erase):
            name = p.recipe.candidates[plan.method[i]]
            kinds = set(rows[:, 4].tolist())
            assert kinds == ({CUTOUT} if name == "cutout" else {RANDOM_ERASING} if name == "random_erasing" else set())
            if name == "cutout":
                assert 1 <= len(rows) <= 2 and np.all(rows[:, 2:4] <= 6)
            if name != "cutmix":
                assert plan.lam[i] == 1.0
    after = planner(["cutmix"], after=["random_erasing"], erasing_prob=1.0, mode="batch")
    for plan in plans(after, 5):
        assert len({e.tobytes() for e in plan.erase}) > 1  # per sample, even in batch mode
        # every sample (mixed or not) gets one rectangle strictly inside the image
        for rows in plan.erase:
            (y, x, h, w, kind), = rows
            assert kind == RANDOM_ERASING and 0 < h < H and 0 < w < W and y + h <= H and x + w <= W


def test_enabled_switches_mixing_and_erasing_off():
    clock = BatchClock(runs_per_epoch=5)
    p = planner(PAIR, enabled=dm.MixOffSchedule(64, 1, clock), clock=clock, after=["cutout"])
    on, off = p(3), p(7)  # epoch 0, epoch 1 (off)
    assert np.any(on.method < 4) and all(len(e) for e in on.erase)
    np.testing.assert_array_equal(off.method, 4)
    np.testing.assert_array_equal(off.lam, 1.0)
    assert all(len(e) == 0 for e in off.erase)


def test_fmix_masks_differ_between_shards_sharing_a_bank():
    a, b = planner(["fmix"], seed=1), planner(["fmix"], seed=2)
    b.fmix_bank = a.fmix_bank  # one bank (the same seed on every shard), two shard seeds
    ma, mb = a.plan(0, 0), b.plan(0, 0)
    masks_a = {a.fmix_mask(ma, i).tobytes() for i in range(a.batch_size)}
    masks_b = {b.fmix_mask(mb, i).tobytes() for i in range(b.batch_size)}
    assert len(masks_a & masks_b) < a.batch_size // 4


def test_plans_are_a_pure_function_of_seed_epoch_step():
    a, b, other = planner(PAIR), planner(PAIR), planner(PAIR, seed=1)

    def same(x, y):
        return all(np.array_equal(getattr(x, k), getattr(y, k)) for k in FIELDS)

    assert same(a.plan(2, 5), b.plan(2, 5))
    assert not same(a.plan(2, 5), a.plan(2, 6))
    assert not same(a.plan(2, 5), a.plan(3, 5))
    assert not same(a.plan(2, 5), other.plan(2, 5))


FIELDS = ("method", "perm", "sources", "lam", "shares", "blend", "rows", "fmix")


def assert_same_plan(x, y):
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(x, k), getattr(y, k), err_msg=k)
    assert [e.tolist() for e in x.erase] == [e.tolist() for e in y.erase]


def test_plans_drawn_in_chunks_do_not_depend_on_the_order_they_are_asked_for():
    """A chunk's plans come from one stream: any step asked first, of any chunk, gets the same
    plan (a resumed run, a skipped step), and the steps of a chunk get different plans."""
    kw = dict(after=["cutout"], cutout_length=6)
    a, b = planner(PAIR + ["ricap"], batch_size=8, **kw), planner(PAIR + ["ricap"], batch_size=8, **kw)
    assert a.chunk == 8
    steps = list(range(20))
    in_order = {s: a.plan(1, s) for s in steps}
    for s in np.random.default_rng(0).permutation(steps):
        assert_same_plan(b.plan(1, int(s)), in_order[int(s)])
    assert len({in_order[s].lam.tobytes() for s in steps}) == len(steps)
    p = a.plan(1, 3)
    p.lam[:] = 0  # a plan is a copy: changing it changes no later plan
    assert_same_plan(a.plan(1, 3), in_order[3])
    with pytest.raises(ValueError, match="read-only"):  # its erase rows are shared, read-only
        p.erase[0][:] = 0


@pytest.mark.parametrize("mode", ["sample", "pair", "batch"])
def test_chunks_draw_partners_sources_and_batch_draws_per_batch(mode):
    """Partners and many-source sources are samples of the sample's own batch; in batch mode
    each batch of a chunk has its own draw."""
    B = 6
    p = planner({"cutmix": 1, "ricap": 1, "mixup": 1}, batch_size=B, mode=mode)
    chunk = plans(p, p.chunk)
    for plan in chunk:
        assert plan.sources.min() >= 0 and plan.sources.max() < B
        assert not np.any(plan.perm == np.arange(B))
        ricap = plan.method == p.ids["ricap"]
        if mode == "pair":
            np.testing.assert_array_equal(plan.perm[plan.perm][~ricap], np.arange(B)[~ricap])
        if mode == "batch":
            assert len(set(plan.method.tolist())) == 1 and len(set(plan.lam.tolist())) == 1
    if mode == "batch":
        assert len({(pl.method[0], pl.lam[0]) for pl in chunk}) > 1


def test_disabled_samples_are_the_enabled_plan_left_untouched():
    """`enabled` switches samples off after the chunk is drawn: enabled samples keep the plan
    drawn with everything on, disabled ones are untouched and keep their drawn partner."""
    p = planner(PAIR + ["ricap"], batch_size=16, after=["random_erasing"], erasing_prob=1.0)
    on = np.arange(16) % 3 != 0
    for step in range(10):
        full, part = p.plan(0, step), p.plan(0, step, enabled=on)
        for k in FIELDS:
            np.testing.assert_array_equal(getattr(part, k)[on], getattr(full, k)[on], err_msg=k)
        assert [e.tolist() for e in np.array(part.erase, object)[on]] == \
            [e.tolist() for e in np.array(full.erase, object)[on]]
        off = np.flatnonzero(~on)
        np.testing.assert_array_equal(part.method[off], p.none_id)
        np.testing.assert_array_equal(part.shares[off], np.eye(1, part.shares.shape[1])[[0] * off.size])
        np.testing.assert_array_equal(part.rows[off], 0)
        np.testing.assert_array_equal(part.fmix[off, 0], -1)
        assert all(len(part.erase[i]) == 0 for i in off)
        np.testing.assert_array_equal(part.sources[off][:, [0, 2, 3]], np.repeat(off[:, None], 3, 1))
        np.testing.assert_array_equal(part.sources[off, 1], part.perm[off])
        assert not np.any(part.perm == np.arange(16))
        pairwise = off[full.method[off] != p.ids["ricap"]]
        np.testing.assert_array_equal(part.perm[pairwise], full.perm[pairwise])


def test_a_bank_of_another_size_is_refused():
    recipe = dm.MixRecipe(methods=["fmix"], num_classes=3)
    with pytest.raises(ValueError, match=r"FMix bank makes \(4, 4\) masks but image_size is \(8, 8\)"):
        MixPlanner(recipe, 4, 8, fmix_bank=FMixMaskBank((4, 4), 4, bank_size=2))


def test_stacked_runs_merge_only_the_same_run_in_consecutive_rows():
    from dali_mix.execute import _stack_runs

    H, W = 5, 8
    # sample, y, x, w: a run repeated in rows 0-1, the last row's run next to a wider run of
    # row 0 in the same column, and the same run in another sample
    runs = np.array([[0, 0, 2, 3], [0, 1, 2, 3], [0, H - 1, 2, 3], [0, 0, 2, 4], [1, 2, 2, 3]])
    got = np.stack(_stack_runs(*runs.T, H, W), 1)
    expected = {(0, 0, 2, 2, 3), (0, H - 1, 2, 1, 3), (0, 0, 2, 1, 4), (1, 2, 2, 1, 3)}
    assert {tuple(r) for r in got.tolist()} == expected
    assert list(got[:, 0]) == sorted(got[:, 0])
