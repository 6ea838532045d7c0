"""How throughput and cost per image scale with batch size, output size and DALI threads.

    python -m benchmarks.scaling                    # a few minutes on 2 cores
    python -m benchmarks.scaling --batch-sizes 64,256 --sizes 224 --threads-list 2

One factor varies at a time around the base point (batch 64, 224x224, threads = cores):
batch size in --batch-sizes, output size in --sizes, DALI threads in --threads-list. At every
point the no-mix reference and RandomMix (4 equal candidates, per sample) run in their own
subprocesses, alternating round-robin (see `benchmarks.throughput`); each round delivers about
--images-per-round images. Reported: images/s (median and min-max over rounds), cost per image
(ms/image), cost per output pixel (ns/pixel), and RandomMix's overhead over the reference.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from benchmarks.throughput import REFERENCE, machine_info, measure

CONTENDERS = (REFERENCE, "dali-randommix")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "scaling.json"


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def grid(batch_sizes, sizes, threads_list, base):
    """Points (batch, size, threads): one factor varied at a time around `base`, no duplicates."""
    b0, s0, t0 = base
    points = [(b, s0, t0) for b in batch_sizes]
    points += [(b0, s, t0) for s in sizes]
    points += [(b0, s0, t) for t in threads_list]
    seen, out = set(), []
    for p in points:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def run(args) -> int:
    if args.data is None:
        from dali_mix.data.imagenet_like import build_imagenet_like

        data = str(build_imagenet_like())
    else:
        data = str(Path(args.data).expanduser().absolute())
    cores = os.cpu_count() or 1
    base = (args.base_batch, args.base_size, args.base_threads or cores)
    points = grid(_ints(args.batch_sizes), _ints(args.sizes), _ints(args.threads_list), base)
    print(f"scaling: {len(points)} points x {len(CONTENDERS)} contenders, {args.rounds} rounds of "
          f"~{args.images_per_round} images, data {data}")
    rows = []
    for batch, size, threads in points:
        batches = max(2, math.ceil(args.images_per_round / batch))
        cfg = {"data": data, "batch_size": batch, "image_size": size, "threads": threads,
               "warmup": args.warmup, "seed": 0}
        print(f"point batch={batch} size={size} threads={threads} ({batches} batches/round)")
        errors = {}
        try:
            res = measure(list(CONTENDERS), cfg, rounds=args.rounds, batches=batches)
        except RuntimeError as exc:  # e.g. one contender cannot be built at this point
            print(f"  FAILED: {exc}")
            failed = next((n for n in CONTENDERS if repr(n) in str(exc)), CONTENDERS[-1])
            errors[failed] = str(exc).splitlines()[0][:300]
            rest = [n for n in CONTENDERS if n != failed]
            res = measure(rest, cfg, rounds=args.rounds, batches=batches) if rest else {}
        for name, err in errors.items():
            rows.append({"batch_size": batch, "image_size": size, "threads": threads, "contender": name,
                         "error": err})
        ref_ms = None
        for name in [n for n in CONTENDERS if n in res]:
            ips = res[name]["images_per_s"]
            med = ips["median"]
            row = {"batch_size": batch, "image_size": size, "threads": threads, "contender": name,
                   "images_per_s": med, "min": ips["min"], "max": ips["max"], "rounds": ips["rounds"],
                   "ms_per_image": 1000.0 / med, "ns_per_pixel": 1e9 / (med * size * size),
                   "ratio_vs_reference": res[name].get("ratio_vs_reference"),
                   "peak_rss_mb": res[name]["peak_rss_mb"]}
            if name == REFERENCE:
                ref_ms = row["ms_per_image"]
            elif ref_ms is not None:
                row["mix_overhead_ms_per_image"] = row["ms_per_image"] - ref_ms
            rows.append(row)
    print()
    print(format_table(rows))
    report = {"config": {"data": data, "rounds": args.rounds, "images_per_round": args.images_per_round,
                         "warmup": args.warmup, "base": list(base), "points": [list(p) for p in points]},
              "machine": machine_info(base[2]), "rows": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0


def format_table(rows):
    head = (f"{'batch':>5} {'size':>4} {'thr':>3} {'contender':<15} {'images/s':>8} {'min-max':>11} "
            f"{'ms/img':>7} {'ns/px':>6} {'vs ref':>6} {'mix ms/img':>10} {'RSS MB':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['batch_size']:>5} {r['image_size']:>4} {r['threads']:>3} {r['contender']:<15} "
                         f"FAILED: {r['error'][:80]}")
            continue
        ratio = "-" if r["ratio_vs_reference"] is None else f"{r['ratio_vs_reference']:.3f}"
        over = f"{r['mix_overhead_ms_per_image']:.3f}" if "mix_overhead_ms_per_image" in r else ""
        rss = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"{r['batch_size']:>5} {r['image_size']:>4} {r['threads']:>3} {r['contender']:<15} "
                     f"{r['images_per_s']:>8.0f} {r['min']:>5.0f}-{r['max']:<5.0f} {r['ms_per_image']:>7.3f} "
                     f"{r['ns_per_pixel']:>6.1f} {ratio:>6} {over:>10} {rss:>7}")
    return "\n".join(lines)


def format_markdown(rows):
    out = ["| batch | size | threads | contender | images/s | min-max | ms/image | ns/pixel | vs reference | mix overhead ms/image |",
           "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['batch_size']} | {r['image_size']} | {r['threads']} | {r['contender']} | "
                       f"failed: {r['error'][:120]} | | | | | |")
            continue
        over = f"{r['mix_overhead_ms_per_image']:.3f}" if "mix_overhead_ms_per_image" in r else ""
        ratio = "-" if r["ratio_vs_reference"] is None else f"{r['ratio_vs_reference']:.3f}"
        out.append(f"| {r['batch_size']} | {r['image_size']} | {r['threads']} | {r['contender']} | "
                   f"{r['images_per_s']:.0f} | {r['min']:.0f}-{r['max']:.0f} | {r['ms_per_image']:.3f} | "
                   f"{r['ns_per_pixel']:.1f} | {ratio} | {over} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="ImageFolder root (default: build_imagenet_like())")
    p.add_argument("--batch-sizes", default="32,64,128,256")
    p.add_argument("--sizes", default="128,224,320")
    p.add_argument("--threads-list", default="1,2")
    p.add_argument("--base-batch", type=int, default=64)
    p.add_argument("--base-size", type=int, default=224)
    p.add_argument("--base-threads", type=int, default=None, help="default: number of cores")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images-per-round", type=int, default=384)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", default=str(DEFAULT_JSON))
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
