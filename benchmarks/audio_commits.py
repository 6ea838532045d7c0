"""The audio pipeline with RandomMix at other commits of this repository against this tree, in
one run: what a change did to the mixing's cost, measured side by side (`benchmarks.throughput`'s
round-robin harness, so machine drift hits every contender alike).

    python -m benchmarks.audio_commits de4b648               # nomix, RandomMix at de4b648, RandomMix here
    python -m benchmarks.audio_commits de4b648 f90ec6e --rounds 15 --processes 3

Contenders: "nomix" (this tree's `dali-audio-nomix`, the reference), "randommix@<commit>" for
each commit (`benchmarks.audio_throughput`'s `dali-audio-randommix` as that commit builds it:
its dali_mix, pipelines and fused operator), and "randommix" (this tree's). Each commit is
checked out with `git worktree add --detach` into a temporary folder (removed afterwards) and
its fused operator built there (cached under a name keyed on its source, like this tree's). A
contender of a commit runs in its own process with that commit's `dali_mix` and `pipelines`
(imported in place of this tree's, before anything else of them) and this tree's benchmark
code, so the commit's `pipelines.audio.train_pipeline` and `dali_mix.torch.Loader` must take
what `benchmarks.audio_throughput.build_contender` gives them (the tenth session on). The torch
peer is not run here (`benchmarks.audio_throughput`). Reported: as `benchmarks.audio_throughput`,
without the peer.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import audio_throughput, throughput

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "nomix"


def build_contender(name, cfg):
    """"nomix" / "randommix" of this tree, or "randommix@<commit>" from cfg["trees"][commit]."""
    base, _, commit = name.partition("@")
    if commit:  # that commit's code in this process, in place of this tree's
        tree = cfg["trees"][commit]
        for m in [m for m in sys.modules if m.split(".")[0] in ("dali_mix", "pipelines")]:
            del sys.modules[m]
        sys.path.insert(0, tree)
        importlib.invalidate_caches()
    import dali_mix

    if commit and not dali_mix.__file__.startswith(cfg["trees"][commit]):
        raise RuntimeError(f"{name}: imported dali_mix from {dali_mix.__file__}, not from the commit's tree")
    if base not in ("nomix", "randommix"):
        raise ValueError(f"unknown contender {name!r}")
    return audio_throughput.build_contender(f"dali-audio-{base}", cfg)


def _checkout(commit: str, where: Path) -> str:
    """A worktree of `commit` in `where`, its fused operator built; returns its path."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(where), commit],
                   check=True, capture_output=True, text=True)
    env = dict(os.environ, PYTHONPATH=str(where))
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import dali_mix.native as n; "
                    "n.load()", str(where)], check=True, env=env, cwd=str(where))
    return str(where)


def run(args) -> int:
    data = audio_throughput.data_root(args)
    tmp = Path(tempfile.mkdtemp(prefix="dali-mix-commits-"))
    trees = {}
    try:
        for commit in args.commits:
            trees[commit] = _checkout(commit, tmp / commit)
        cfg = {"data": data, "batch_size": args.batch_size, "threads": args.threads, "seed": 0,
               "warmup": args.warmup, "builder": "benchmarks.audio_commits:build_contender", "trees": trees}
        names = [REFERENCE] + [f"randommix@{c}" for c in args.commits] + ["randommix"]
        print(f"audio pipeline at {', '.join(args.commits)} and this tree: {data}, batch {args.batch_size}, "
              f"{args.threads} threads, {args.rounds} rounds x {args.batches} batches, {args.processes} process(es) "
              f"per contender")
        results = throughput.measure(names, cfg, rounds=args.rounds, batches=args.batches, reference=REFERENCE,
                                     processes=args.processes)
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tree], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
    audio_throughput.report(results, args.json, {k: v for k, v in cfg.items() if k not in ("builder", "trees")} |
           {"commits": list(args.commits)}, args, reference=REFERENCE)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("commits", nargs="+", help="commits (any git revision) to measure against this tree")
    audio_throughput.add_arguments(p, rounds=11, batches=40, processes=2)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
