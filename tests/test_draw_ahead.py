"""dali_mix.feed.PlanFeed draws the next runs' plans in a background thread: whatever order
the runs come in, and whatever happens to the clock in between, every run gets the outputs of
its own plan, and an arbitrary `enabled` callable is never called ahead."""
from __future__ import annotations

import numpy as np
from nvidia.dali.types import BatchInfo

import dali_mix as dm
from dali_mix.execute import DaliExecutor, Eraser, FusedExecutor, Geometry
from dali_mix.feed import PlanFeed
from dali_mix.labels import TargetInputs
from dali_mix.masks import FMixMaskBank
from dali_mix.plan import MixPlanner
from dali_mix.schedule import BatchClock, MixOffSchedule

H, W, B = 24, 20, 8
METHODS = {"mixup": 1.0, "cutmix": 1.0, "resizemix": 1.0, "fmix": 1.0}


def Info(iteration):
    """DALI's batch_info of the pipeline's run `iteration`."""
    return BatchInfo(iteration, 0)


def encoder(executor, *, enabled=None, clock=None, min_refresh_batches=0):
    recipe = dm.MixRecipe(methods=METHODS, num_classes=10, fmix_size=(H, W),
                          after=("random_erasing",))
    clock = clock or BatchClock(runs_per_epoch=5)
    bank = FMixMaskBank((H, W), B, bank_size=16, seed=3, clock=clock,
                        min_refresh_batches=min_refresh_batches)
    planner = MixPlanner(recipe, B, (H, W), seed=7, clock=clock, fmix_bank=bank, enabled=enabled)
    return feed_of(planner, executor)


def feed_of(planner, executor):
    """The plan feed of `random_mix` for `planner` on `executor` ("fused" or "dali")."""
    geo = Geometry("HWC", H, W, 3)
    pixels = (FusedExecutor if executor == "fused" else DaliExecutor)(planner, geo, None)
    return PlanFeed(planner, [TargetInputs(planner.recipe, planner.slots), pixels,
                              Eraser(planner.recipe, geo)])


def expected(enc, info):
    """The outputs of run `info` drawn on their own, by a fresh feed of the same pipeline."""
    fresh = feed_of(enc.planner, enc.units[1].kind)
    return fresh.outputs(enc.planner.inputs(info))


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, list):
            assert len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
        else:
            np.testing.assert_array_equal(x, y)


def test_every_run_gets_its_own_plan_in_order_skipped_repeated_and_after_a_clock_change():
    for executor in ("fused", "dali"):
        enc = encoder(executor)
        for it in (0, 1, 2, 3, 9, 10, 10, 4, 5):  # in order (drawn ahead), skips, repeats
            same(enc(Info(it)), expected(enc, Info(it)))
        enc.planner.clock.run_offset = 12  # a resume: the run drawn ahead is another batch now
        same(enc(Info(6)), expected(enc, Info(6)))
        enc.planner.clock.runs_per_epoch = 3  # another epoch length: other epochs, other banks
        same(enc(Info(7)), expected(enc, Info(7)))
        # and the outputs differ from run to run (the comparisons above are not vacuous)
        assert not np.array_equal(enc(Info(20))[1], enc(Info(21))[1])


def test_runs_in_order_are_all_drawn_ahead_in_chunks():
    """Runs asked in order: only the first is drawn while DALI waits; the others come from the
    background thread, `AHEAD` runs per task, each the outputs of its own plan."""
    import threading

    from dali_mix import feed

    enc = encoder("fused")
    drawn, tasks = [], []
    outputs, draw = enc.outputs, enc._draw
    enc.outputs = lambda inputs: drawn.append((threading.current_thread().name, inputs[:2])) or outputs(inputs)
    enc._draw = lambda queued: tasks.append(len(queued)) or draw(queued)
    runs = 3 * feed.AHEAD
    for it in range(runs):
        same(enc(Info(it)), expected(enc, Info(it)))
    here = [steps for name, steps in drawn if name == threading.current_thread().name]
    assert here == [enc.planner.inputs(Info(0))[:2]]  # run 0 only
    assert set(tasks) == {feed.AHEAD} and len(tasks) * feed.AHEAD >= runs - 1
    assert len(drawn) == len(set(drawn))  # no run drawn twice


def test_the_same_batch_under_another_epoch_length_takes_its_own_fmix_bank():
    # banks serve ceil(10 / runs_per_epoch) epochs: epoch 2 is in bank 1 with 5 runs per epoch
    # and in bank 0 with 4; the run drawn ahead (epoch 2, step 0 with 5 runs per epoch) is the
    # same (epoch, step) as the run asked for after the clock changed
    enc = encoder("fused", clock=BatchClock(runs_per_epoch=5, run_offset=2), min_refresh_batches=10)
    enc(Info(7))  # run 9; draws run 10 = (2, 0) ahead
    enc._ahead[0][2].result()  # drawn under the old clock
    enc.planner.clock.run_offset, enc.planner.clock.runs_per_epoch = 0, 4
    assert enc.planner.inputs(Info(8))[:2] == (2, 0)
    got = enc(Info(8))
    same(got, expected(enc, Info(8)))
    stale = feed_of(enc.planner, "fused")
    enc.planner.clock.runs_per_epoch = 5
    plans = stale.names.index("1.plan")  # the packed plans: the same but for the FMix ranks
    assert any(not np.array_equal(a, b) for a, b in zip(got[plans], stale.outputs((2, 0, None))[plans]))


def test_mix_off_schedule_is_drawn_ahead_but_an_arbitrary_callable_is_not_called_ahead():
    clock = BatchClock(runs_per_epoch=5)
    enc = encoder("fused", enabled=MixOffSchedule(B, 1, clock), clock=clock)
    for it in range(8):  # crosses the epoch where mixing stops
        out = enc(Info(it))
        same(out, expected(enc, Info(it)))
        lam = out[2]
        assert np.all(lam == 1.0) == (it >= 5)
    assert enc._ahead  # drawn ahead

    seen = []

    def enabled(info):
        seen.append(info.iteration)
        return np.ones(B, bool)

    enc = encoder("dali", enabled=enabled)
    for it in range(4):
        enc(Info(it))
    assert seen == [0, 1, 2, 3] and not enc._ahead


def test_random_mix_without_masks_encodes_each_chunk_once(monkeypatch):
    """The plan feed of a random_mix without masks or a source map has no map units: each
    chunk's plan is encoded by the executor once (the maps' copy of the executor would encode
    it again, for outputs nothing reads). Nothing is drawn ahead here, so two runs of one
    chunk are one encoding."""
    from nvidia.dali import fn, pipeline_def

    from dali_mix import plan as plan_module

    monkeypatch.setattr(PlanFeed, "_draw_ahead", lambda self, last: None)
    calls = []
    for executor in ("fused", "dali"):
        cls = FusedExecutor if executor == "fused" else DaliExecutor
        encode = cls.encode

        def counted(self, plan, encode=encode):
            calls.append((executor, len(plan.perm)))
            return encode(self, plan)

        cls.encode = counted
        try:
            @pipeline_def(batch_size=B, num_threads=1, device_id=None, seed=1)
            def pipe():
                images = fn.external_source(lambda: [np.full((H, W, 3), i, np.uint8) for i in range(B)],
                                            batch=True, layout="HWC")
                labels = fn.external_source(lambda: [np.array([i % 10], np.int32) for i in range(B)], batch=True)
                recipe = dm.MixRecipe(methods=METHODS, num_classes=10)
                return dm.random_mix(images, labels, recipe, image_size=(H, W), executor=executor).outputs()

            p = pipe(prefetch_queue_depth=1)
            p.build()
            p.run()
            p.run()
        finally:
            cls.encode = encode
        chunk = plan_module.CHUNK
        drawn = [n for e, n in calls if e == executor]
        assert drawn and set(drawn) == {chunk * B}, drawn  # whole chunks, none twice
        assert len(drawn) == 1, drawn
