"""Where RandomMix's time goes per batch on small images (log-mel spectrograms by default): the
parts of `random_mix` timed one by one on a fixed in-memory batch, so that no decoding is timed.

    python -m benchmarks.mix_parts                         # batch 64, 1 x 40 x 101 float CHW, 2 threads
    python -m benchmarks.mix_parts --size 32 32 --channels 3 --rounds 11

Variants, all one pipeline each in this process, run interleaved (round-robin, `--rounds`
rounds of `--batches` batches), each fed the same fixed batch by an external source:

    no mixing                the batch and its labels as they are (the reference)
    fused operator           + the fused C++ operator on a replayed plan (fixed plan inputs)
    targets                  + the dense targets (labels -> soft targets) of a replayed plan
    random_mix, plan replayed
                             the whole `random_mix` graph with the plan feed's outputs replayed
                             (the graph's operators and the external source, not the draw)
    random_mix               the whole `random_mix`, each batch's plan drawn (ahead, in the
                             plan feed's background thread)
    random_mix, plan drawn inline
                             the same with each plan drawn in the external source's callback
                             (no background thread)

Reported per variant: process CPU time (all threads) and wall time per batch, median (min-max)
over rounds, and the extra over "no mixing". Also, alone in Python, mean microseconds per batch
of the planner's draw (`MixPlanner.chunk_plan`), the units' encoding (`PlanFeed.encode`) and
the plan feed's outputs (`PlanFeed.outputs`: both, and the slicing of the chunk's outputs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from dali_mix import feed as _feed
from dali_mix.methods import DEFAULT_CANDIDATES

VARIANTS = ("no mixing", "fused operator", "targets", "random_mix, plan replayed", "random_mix",
            "random_mix, plan drawn inline")


class _FeedsMade:
    """Collects the `PlanFeed`s made while active (`.feeds`)."""

    def __enter__(self):
        self.feeds, self._init = [], _feed.PlanFeed.__init__
        feeds, init = self.feeds, self._init

        def collecting_init(feed, *a, **kw):
            init(feed, *a, **kw)
            feeds.append(feed)
        _feed.PlanFeed.__init__ = collecting_init
        return self

    def __exit__(self, *exc):
        _feed.PlanFeed.__init__ = self._init


def _replay(feed, cycle: int = 4) -> None:
    """Make `feed` draw the plans of its first `cycle` steps once and replay them: its graph
    and external source run as usual, its planner does not."""
    outputs, cache = feed.outputs, {}

    def replayed(inputs):
        key = inputs[1] % cycle
        if key not in cache:
            cache[key] = outputs(inputs)
        return cache[key]
    feed.outputs = replayed


def _pipelines(batch: int, shape: tuple, classes: int, threads: int) -> dict:
    from nvidia.dali import fn, pipeline_def

    import dali_mix as dm
    from dali_mix import native
    from dali_mix.execute import FusedExecutor, Geometry
    from dali_mix.labels import TargetInputs, scalar_labels
    from dali_mix.plan import MixPlanner

    c, h, w = shape
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    labels = rng.integers(0, classes, (batch, 1)).astype(np.int32)
    recipe = dm.MixRecipe(methods=list(DEFAULT_CANDIDATES), num_classes=classes, layout="CHW", channels=c,
                          fmix_size=(h, w))
    bank = dm.FMixMaskBank.from_recipe(recipe, batch, seed=0)
    planner = MixPlanner(recipe, batch, (h, w), seed=1, fmix_bank=bank)
    fused, targets = FusedExecutor(planner, Geometry("CHW", h, w, c), None), TargetInputs(recipe, planner.slots)
    plans = [planner.plan(0, i) for i in range(4)]
    fixed = [(p.perm, *(fused.encode(p)[n] for n in fused.names), *(targets.encode(p)[n] for n in targets.names))
             for p in plans]
    names = ["perm", *fused.names, *targets.names]

    def build(kind):
        step = [0]

        def plan_inputs():
            step[0] += 1
            return fixed[step[0] % len(fixed)]

        @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, seed=1)
        def pipe():
            x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
            y = fn.external_source(source=lambda: labels, batch=True)
            if kind == "no mixing":
                return x, y
            if kind.startswith("random_mix"):
                return dm.random_mix(x, y, recipe, image_size=(h, w), fmix_bank=bank, executor="fused").outputs()
            ins = dict(zip(names, fn.external_source(source=plan_inputs, num_outputs=len(names), batch=True)))
            if kind == "fused operator":
                return native.mix(x, ins["plan"], layout="CHW", image_size=(h, w), channels=c), y
            t, *_ = targets.build(scalar_labels(y), ins["perm"], ins)
            return x, t

        p = pipe()
        p.build()
        return p

    pipes = {}
    for kind in VARIANTS:
        with _FeedsMade() as made:
            pipes[kind] = build(kind)
        for f in made.feeds:
            if kind == "random_mix, plan replayed":
                _replay(f)
            elif kind == "random_mix, plan drawn inline":
                f.planner.predictable = lambda: False  # no draw ahead: each plan in DALI's callback
    return pipes, planner, fused, targets


def python_costs(planner, units, runs: int = 400) -> dict:
    """Mean microseconds per batch, over `runs` consecutive steps: the planner's draw of the
    steps' chunks (`MixPlanner.chunk_plan`), the units' encoding of them, and the plan feed's
    whole `outputs` (both, and each step's share of them), each on chunks not drawn before."""
    chunks = max(runs // planner.chunk, 1)
    steps = chunks * planner.chunk
    feed = _feed.PlanFeed(planner, units)
    t = time.perf_counter()
    plans = [planner.chunk_plan(0, i) for i in range(chunks)]  # epoch 0: the bank already made
    draw = time.perf_counter() - t
    t = time.perf_counter()
    for plan in plans:
        feed.encode(plan)
    encode = time.perf_counter() - t
    t = time.perf_counter()
    for step in range(steps):
        feed.outputs((0, steps + step, None))
    outputs = time.perf_counter() - t
    return {"plan_us": 1e6 * draw / steps, "encode_us": 1e6 * encode / steps,
            "outputs_us": 1e6 * outputs / steps, "chunk": planner.chunk}


def measure(batch=64, shape=(1, 40, 101), classes=10, threads=2, rounds=9, batches=100) -> dict:
    """{variant: {"cpu_ms": [per round], "wall_ms": [...]}} and the Python costs; see the docstring."""
    pipes, planner, fused, targets = _pipelines(batch, shape, classes, threads)
    for p in pipes.values():
        for _ in range(5):
            p.run()
    out = {k: {"cpu_ms": [], "wall_ms": []} for k in pipes}
    names = list(pipes)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            p = pipes[k]
            t, c = time.perf_counter(), time.process_time()
            for _ in range(batches):
                p.run()
            out[k]["wall_ms"].append(1000 * (time.perf_counter() - t) / batches)
            out[k]["cpu_ms"].append(1000 * (time.process_time() - c) / batches)
    return {"variants": out, "python": python_costs(planner, [targets, fused])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, nargs=2, default=(40, 101), metavar=("H", "W"))
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--batches", type=int, default=100)
    a = p.parse_args(argv)
    res = measure(a.batch_size, (a.channels, *a.size), a.classes, a.threads, a.rounds, a.batches)
    ref = statistics.median(res["variants"]["no mixing"]["cpu_ms"])
    print(f"batch {a.batch_size}, {a.channels}x{a.size[0]}x{a.size[1]} float CHW, {a.threads} threads, "
          f"{a.rounds} rounds x {a.batches} batches; ms per batch, median (min-max)")
    for k, v in res["variants"].items():
        cpu, wall = v["cpu_ms"], v["wall_ms"]
        print(f"{k:<30} cpu {statistics.median(cpu):5.2f} ({min(cpu):.2f}-{max(cpu):.2f})  "
              f"wall {statistics.median(wall):5.2f} ({min(wall):.2f}-{max(wall):.2f})  "
              f"cpu over no mixing {statistics.median(cpu) - ref:+.2f}")
    py = res["python"]
    print(f"per batch (Python, one thread, chunks of {py['chunk']}): planner draw {py['plan_us']:.0f} us, "
          f"units' encode {py['encode_us']:.0f} us, plan feed outputs {py['outputs_us']:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
