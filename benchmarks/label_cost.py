"""CPU cost of the targets per label format: one class id ("index", the reference), a multi-hot
vector ("multi_hot") or a list of class ids ("ids"), mixed by the same plan.

    python -m benchmarks.label_cost               # batch 256, 80 and 1000 classes, 2 threads

Each variant is one pipeline: external sources of a fixed batch of 8x8 uint8 images (small, so
that the pixels cost little next to the targets) and of its labels (each sample 3 random
classes: as 3 ids, or their multi-hot vector; "index": one of them), then `random_mix` with
Mixup + CutMix (2 label slots) or RICAP (4 label slots), the fused executor, dense targets,
label smoothing 0.1. Reported per batch: the median over rounds of the process CPU time (all
threads) and of the wall time, and the extra CPU time over "index" with the same method and
classes: the multi-label targets' own cost (`dali_mix.labels`).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from benchmarks.operator_cost import time_pipelines

FORMATS = ("index", "multi_hot", "ids")
METHODS = {"mixup+cutmix": ("mixup", "cutmix"), "ricap": ("ricap",)}
SIDE = 8


def _labels(label_format: str, classes: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    sets = [rng.choice(classes, 3, replace=False) for _ in range(batch)]
    if label_format == "index":
        return [np.array([s[0]], np.int32) for s in sets]
    if label_format == "ids":
        return [s.astype(np.int32) for s in sets]
    out = []
    for s in sets:
        v = np.zeros(classes, np.float32)
        v[s] = 1
        out.append(v)
    return out


def _pipeline(label_format: str, methods, classes: int, batch: int, threads: int):
    from nvidia.dali import fn, pipeline_def

    import dali_mix as dm

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(batch)]
    labels = _labels(label_format, classes, batch, rng)
    recipe = dm.MixRecipe(methods=list(methods), num_classes=classes, label_format=label_format,
                          label_smoothing=0.1)

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, seed=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC", no_copy=True)
        y = fn.external_source(source=lambda: labels, batch=True, no_copy=True)
        return dm.random_mix(x, y, recipe, image_size=SIDE, executor="fused").outputs()

    p = pipe()
    p.build()
    return p


def measure(batch: int = 256, classes=(80, 1000), threads: int = 2, rounds: int = 7, runs: int = 15) -> dict:
    """{variant: {"cpu_ms", "wall_ms"}} per batch, variant "<method>, C=<classes>, <format>"."""
    pipes = {f"{m}, C={c}, {f}": _pipeline(f, methods, c, batch, threads)
             for m, methods in METHODS.items() for c in classes for f in FORMATS}
    return time_pipelines(pipes, rounds, runs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--classes", type=int, nargs="+", default=[80, 1000])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "label_cost.json"))
    args = ap.parse_args(argv)
    res = measure(args.batch_size, tuple(args.classes), args.threads, args.rounds)
    print(f"batch {args.batch_size}, {SIDE}x{SIDE} images, {args.threads} threads; per batch, medians of "
          f"{args.rounds} rounds")
    print(f"{'variant':<32} {'CPU ms':>8} {'wall ms':>8} {'CPU ms over index':>18}")
    for name, r in res.items():
        ref = res[name.rsplit(", ", 1)[0] + ", index"]["cpu_ms"]
        print(f"{name:<32} {r['cpu_ms']:8.2f} {r['wall_ms']:8.2f} {r['cpu_ms'] - ref:18.2f}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": vars(args), "results": res}, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
