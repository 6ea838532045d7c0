"""CPU cost of the mixing step alone: DALI's crop_mirror_normalize against the fused operator
(`dali_mix.native.mix_normalize`) with no mixing, each single method and RandomMix, on a fixed
in-memory batch (no decoding), so that only this step is timed.

    python -m benchmarks.operator_cost            # batch 64, 224x224, 2 threads, 7 rounds

Each variant is one pipeline: an external source of the same random uint8 HWC batch, the
MixPlanner's outputs (computed once and replayed, so that the planner is not timed; it is
timed separately in `benchmarks.throughput`) and the operator. Reported per batch: the median
over rounds of the process CPU time (all threads; what competes with decoding on a CPU-bound
machine) and of the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from dali_mix.execute import IMAGENET_MEAN as MEAN
from dali_mix.execute import IMAGENET_STD as STD

METHODS = ("mixup", "cutmix", "resizemix", "fmix")


def _pipeline(kind: str, methods, images, size: int, threads: int):
    from nvidia.dali import fn, pipeline_def

    import dali_mix as dm
    from dali_mix import native
    from dali_mix.execute import FusedExecutor, Geometry
    from dali_mix.plan import MixPlanner

    batch = len(images)

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, seed=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC", no_copy=True)
        mirror = fn.random.coin_flip()
        if kind == "crop_mirror_normalize":
            return fn.crop_mirror_normalize(x, mean=list(MEAN), std=list(STD), mirror=mirror,
                                            output_layout="CHW")
        recipe = dm.MixRecipe(methods=list(methods or METHODS), num_classes=1,
                              prob=1.0 if methods else 0.0, fmix_size=(size, size))
        bank = dm.FMixMaskBank((size, size), batch, seed=0, refresh=False)
        planner = MixPlanner(recipe, batch, (size, size), seed=1, fmix_bank=bank)
        fixed = FusedExecutor(planner, Geometry("HWC", size, size, 3), None).encode(planner.plan(0, 0))["plan"]
        plan = fn.external_source(source=lambda: fixed, batch=True)
        return native.mix_normalize(x, plan, mean=MEAN, std=STD, mirror=mirror)

    p = pipe()
    p.build()
    return p


def measure(batch: int = 64, size: int = 224, threads: int = 2, rounds: int = 7,
            runs: int = 15) -> dict:
    """{variant: {"cpu_ms": median, "wall_ms": median}} per batch; see the module docstring."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    variants = {"crop_mirror_normalize": ("crop_mirror_normalize", None),
                "fused, no mixing": ("fused", ())}
    variants.update({f"fused, {m}": ("fused", (m,)) for m in METHODS})
    variants["fused, RandomMix (4 equal)"] = ("fused", METHODS)
    pipes = {name: _pipeline(kind, methods, images, size, threads)
             for name, (kind, methods) in variants.items()}
    return time_pipelines(pipes, rounds, runs)


def time_pipelines(pipes: dict, rounds: int, runs: int, warmup: int = 3) -> dict:
    """{name: {"cpu_ms": median, "wall_ms": median}} per run of each built pipeline of `pipes`:
    `warmup` untimed runs each, then `rounds` rounds in which every pipeline in turn makes
    `runs` timed runs (process CPU time of all threads, and wall time)."""
    for p in pipes.values():
        for _ in range(warmup):
            p.run()
    cpu, wall = {n: [] for n in pipes}, {n: [] for n in pipes}
    for _ in range(rounds):
        for name, p in pipes.items():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(runs):
                p.run()
            wall[name].append(1000 * (time.perf_counter() - t) / runs)
            cpu[name].append(1000 * (time.process_time() - c) / runs)
    return {n: {"cpu_ms": statistics.median(cpu[n]), "wall_ms": statistics.median(wall[n])}
            for n in pipes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results"
                                          / "operator_cost.json"))
    args = ap.parse_args(argv)
    res = measure(args.batch_size, args.image_size, args.threads, args.rounds)
    ref = res["crop_mirror_normalize"]["cpu_ms"]
    print(f"batch {args.batch_size}, {args.image_size}x{args.image_size}, {args.threads} threads; "
          f"per batch, medians of {args.rounds} rounds")
    print(f"{'variant':<30} {'CPU ms':>8} {'wall ms':>8} {'CPU vs crop_mirror_normalize':>30}")
    for name, r in res.items():
        print(f"{name:<30} {r['cpu_ms']:8.2f} {r['wall_ms']:8.2f} {r['cpu_ms'] / ref:30.2f}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": vars(args), "results": res}, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
