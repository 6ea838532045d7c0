"""What the mixing is for: the methods side by side over seeds, and parity with timm's Mixup.

    python -m benchmarks.accuracy                       # the ablation and parity runs, then the report
    python -m benchmarks.accuracy --experiment noise    # the Mixup paper's label-noise experiment
    python -m benchmarks.accuracy --report-only         # tables and figure from the runs already made
    python -m benchmarks.accuracy --experiment segmentation   # masks mixed with the images: val mIoU

Every run is `train.py` in its own process on a balanced subset of the embedded Fashion-MNIST
(`--limit`: that many train and val samples), with the same model, budget and seed list for
every arm, followed by `--evaluate robustness` (the numbers of `dali-mix evaluate --robustness`
on the final model). A finished run (its `evaluation.json` exists) is never run again, so the
harness can be stopped and restarted; runs go seed-major, so a partial sweep stays balanced.

Arms: no mixing; dali-mix Mixup, CutMix, ResizeMix, FMix and RandomMix (4 equal), all in batch
mode (one lambda and box per batch: the papers' and timm's default protocol) with label smoothing
0.1 and mixing probability 1; and the peer, timm's own `Mixup` on the torch side
(`train.py --timm-peer`) with the same alphas, probability, mode and smoothing. The noise
experiment trains no mixing, Mixup and RandomMix with 20% and 40% of the train labels replaced
(`train.py --label-noise`) and reports val top-1 and the share of corrupted samples the model
gives their wrong label (memorisation). The segmentation experiment trains `train.py --task
segmentation` on the generated scenes (`dali-mix data scenes`) with no mixing, Mixup, CutMix,
RandomMix and RICAP (batch mode), images and masks mixed by one plan, and reports the final val
mIoU and pixel accuracy (`--limit` does not apply: the scenes set's 800 / 200 pairs).

Writes `OUT/accuracy.md` (tables: mean +- sd over seeds; parity: difference of means, its
standard error, Welch's t and p), `OUT/accuracy_runs.json` (every run's metrics) and, with
matplotlib, `OUT/accuracy.png`. Speed is not measured here.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "none": ["--mix", "none"],
    "mixup": ["--mix", "mixup", "--mixup-mode", "batch"],
    "cutmix": ["--mix", "cutmix", "--mixup-mode", "batch"],
    "resizemix": ["--mix", "resizemix", "--mix-mode", "batch"],
    "fmix": ["--mix", "fmix", "--mix-mode", "batch"],
    "randommix": ["--mix", "randommix", "--mix-mode", "batch"],
    "timm-mixup": ["--mix", "mixup", "--mixup-mode", "batch", "--timm-peer"],
    "timm-cutmix": ["--mix", "cutmix", "--mixup-mode", "batch", "--timm-peer"],
}
PARITY = (("mixup", "timm-mixup"), ("cutmix", "timm-cutmix"))
NOISE_ARMS = ("none", "mixup", "randommix")
SEGMENTATION_ARMS = {arm: ["--task", "segmentation", "--mix", arm, "--mix-mode", "batch"]
                     for arm in ("none", "mixup", "cutmix", "randommix", "ricap")}
NOISE_LEVELS = (0.2, 0.4)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", choices=("methods", "noise", "segmentation"), default="methods")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: all of the experiment)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--limit", type=int, default=2000, help="train and val samples (balanced; default 2000)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--smoothing", type=float, default=0.1)
    p.add_argument("--work", default=str(ROOT / "runs" / "accuracy"), help="run directories (default runs/accuracy)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="report folder")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--extra", default="", help="more train.py flags for every run (quoted)")


def runs_of(args) -> list[tuple[str, float, int]]:
    """(arm, label noise, seed), seed-major."""
    if args.experiment == "noise":
        arms = args.arms.split(",") if args.arms else list(NOISE_ARMS)
        return [(a, p, s) for s in range(args.seeds) for p in NOISE_LEVELS for a in arms]
    known = SEGMENTATION_ARMS if args.experiment == "segmentation" else ARMS
    arms = args.arms.split(",") if args.arms else list(known)
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise SystemExit(f"error: unknown arm(s) {unknown}; choose from {list(known)}")
    return [(a, 0.0, s) for s in range(args.seeds) for a in arms]


def run_dir(args, arm: str, noise: float, seed: int) -> Path:
    tag = f"{arm}-noise{noise:g}" if noise else arm
    return Path(args.work) / f"{tag}-seed{seed}"


def finished(args, d: Path) -> bool:
    """Whether the run in `d` is done: its evaluation.json (classification), or its last epoch
    in metrics.jsonl (segmentation, which reports its metrics every epoch)."""
    if args.experiment != "segmentation":
        return (d / "evaluation.json").is_file()
    history = d / "metrics.jsonl"
    lines = [x for x in history.read_text().splitlines() if x.strip()] if history.is_file() else []
    return bool(lines) and json.loads(lines[-1])["epoch"] == args.epochs


def train_command(args, arm: str, noise: float, seed: int) -> list[str]:
    if args.experiment == "segmentation":
        return [sys.executable, str(ROOT / "train.py"), *SEGMENTATION_ARMS[arm], "--epochs", str(args.epochs),
                "--batch-size", str(args.batch_size), "--smoothing", str(args.smoothing), "--warmup-epochs", "1",
                "--seed", str(seed), "--output", str(run_dir(args, arm, noise, seed)), "--overwrite",
                "--no-progress", *args.extra.split()]
    cmd = [sys.executable, str(ROOT / "train.py"), *ARMS[arm], "--limit", str(args.limit), "--epochs",
           str(args.epochs), "--batch-size", str(args.batch_size), "--model", args.model, "--smoothing",
           str(args.smoothing), "--mix-off-epochs", "0", "--warmup-epochs", "1", "--seed", str(seed),
           "--evaluate", "robustness", "--output", str(run_dir(args, arm, noise, seed)), "--overwrite",
           "--no-progress", *args.extra.split()]
    if noise:
        cmd += ["--label-noise", str(noise)]
    return cmd


def run_all(args) -> None:
    todo = [r for r in runs_of(args) if not finished(args, run_dir(args, *r))]
    for k, (arm, noise, seed) in enumerate(todo, 1):
        cmd = train_command(args, arm, noise, seed)
        print(f"[{k}/{len(todo)}] {arm} noise {noise:g} seed {seed}: {' '.join(cmd[1:])}", flush=True)
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = "\n".join(done.stdout.strip().splitlines()[-3:])
        if done.returncode:
            raise SystemExit(f"error: the run {arm} seed {seed} failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
        print(tail, flush=True)


def collect(args) -> list[dict]:
    """Every finished run of the experiment: arm, noise, seed, evaluation, memorisation, history."""
    out = []
    for arm, noise, seed in runs_of(args):
        d = run_dir(args, arm, noise, seed)
        if not finished(args, d):
            continue
        history = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
        evaluation = (json.loads((d / "evaluation.json").read_text()) if args.experiment != "segmentation"
                      else {"clean": {k: history[-1][f"val_{k}"] for k in ("miou", "pixel_acc")}})
        rec = {"arm": arm, "noise": noise, "seed": seed, "evaluation": evaluation, "history": history}
        if noise:
            rec["memorisation"] = json.loads((d / "label_noise.json").read_text())["memorisation"]
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------ statistics
def mean_sd(values: list[float]) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return m, sd


def welch(a: list[float], b: list[float]) -> dict:
    """Difference of means (a - b), its standard error, Welch's t, dof and two-sided p."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    se = math.sqrt(va + vb)
    t = (ma - mb) / se if se > 0 else float("nan")
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else float("nan")
    try:
        from scipy import stats

        p = float(2 * stats.t.sf(abs(t), dof))
    except ImportError:
        p = float("nan")
    return {"diff": ma - mb, "se": se, "t": t, "dof": dof, "p": p, "n": (len(a), len(b))}


def metric_rows(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """arm -> metric name -> values over seeds (clean top-1/NLL/ECE and every robustness key)."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        ev, row = r["evaluation"], table.setdefault(r["arm"] if not r["noise"] else f"{r['arm']} @{r['noise']:g}", {})
        for k in ev["clean"]:  # top1, top5, nll, ece; segmentation: miou, pixel_acc
            row.setdefault(k, []).append(ev["clean"][k])
        for kind in ("fgsm", "noise", "occlusion"):
            for key, v in ev.get(kind, {}).items():
                row.setdefault(f"{kind} {key}", []).append(v)
        if "memorisation" in r:
            for k, v in r["memorisation"].items():
                row.setdefault(k, []).append(v)
    return table


def markdown(args, runs: list[dict]) -> str:
    table = metric_rows(runs)
    if not table:
        return "no finished runs\n"
    cols = list(next(iter(table.values())).keys())
    if args.experiment == "segmentation":
        lines = [f"Budget: fcn_resnet18 on the generated scenes (800 train / 200 val pairs, 64 px, 6 classes), "
                 f"{args.epochs} epochs, batch {args.batch_size}, SGD (1 warm-up epoch, cosine), label smoothing "
                 f"{args.smoothing}, batch mode; images and masks mixed by one plan. Final val mIoU and pixel "
                 "accuracy in %, mean +- sd over seeds (n in the last column).", "",
                 "| arm | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
        for arm, row in table.items():
            cells = [f"{m:.2f} +- {sd:.2f}" for m, sd in (mean_sd(row[c]) for c in cols)]
            lines.append(f"| {arm} | " + " | ".join(cells) + f" | {len(row[cols[0]])} |")
        return "\n".join(lines) + "\n"
    lines = [f"Budget: {args.model}, {args.limit} train / {args.limit} val Fashion-MNIST samples (balanced), "
             f"28 px, {args.epochs} epochs, batch {args.batch_size}, SGD lr 0.1 (1 warm-up epoch, cosine), "
             f"label smoothing {args.smoothing}; robustness: `dali-mix evaluate --robustness` defaults. "
             "Mean +- sd over seeds (n in the last column); top-1, top-5, ECE and robustness in %, NLL in nats.", "",
             "| arm | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
    for arm, row in table.items():
        cells = []
        for c in cols:
            m, sd = mean_sd(row[c])
            cells.append(f"{m:.3f} +- {sd:.3f}" if c == "nll" else f"{m:.2f} +- {sd:.2f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {len(row['top1'])} |")
    if args.experiment == "methods":
        lines += ["", "Parity (dali-mix minus timm, val top-1, percentage points):", "",
                  "| pair | difference | standard error | Welch t | dof | p | n | verdict |", "|---" * 8 + "|"]
        for ours, peer in PARITY:
            if ours in table and peer in table and len(table[ours]["top1"]) > 1 and len(table[peer]["top1"]) > 1:
                w = welch(table[ours]["top1"], table[peer]["top1"])
                verdict = "not distinguishable" if abs(w["diff"]) < 2 * w["se"] else "DIFFERENT"
                lines.append(f"| {ours} vs {peer} | {w['diff']:+.2f} | {w['se']:.2f} | {w['t']:+.2f} | {w['dof']:.1f} "
                             f"| {w['p']:.3f} | {w['n'][0]}+{w['n'][1]} | {verdict} (|diff| vs 2 SE) |")
    return "\n".join(lines) + "\n"


def figure(args, runs: list[dict], path: Path) -> Path | None:
    """Clean top-1 and each robustness curve per arm, error bars over seeds (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no figure", file=sys.stderr)
        return None
    table = metric_rows(runs)
    arms = list(table)
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.2))
    stats = [mean_sd(table[a]["top1"]) for a in arms]
    axes[0].bar(range(len(arms)), [m for m, _ in stats], yerr=[s for _, s in stats], capsize=3, color="C0")
    axes[0].set_xticks(range(len(arms)), arms, rotation=45, ha="right")
    lo = min(m - (s if s == s else 0) for m, s in stats)
    axes[0].set_ylim(max(0, lo - 3), min(100, max(m for m, _ in stats) + 2))
    axes[0].set_title("clean val top-1 (%)")
    stats = [mean_sd(table[a]["ece"]) for a in arms]
    axes[1].bar(range(len(arms)), [m for m, _ in stats], yerr=[s for _, s in stats], capsize=3, color="C1")
    axes[1].set_xticks(range(len(arms)), arms, rotation=45, ha="right")
    axes[1].set_title("ECE (%, lower is better)")
    for ax, kind, label in ((axes[2], "fgsm", "FGSM eps ([0,1] scale)"), (axes[3], "noise", "Gaussian sigma"),
                            (axes[4], "occlusion", "occluded side fraction")):
        for i, a in enumerate(arms):
            keys = [k for k in table[a] if k.startswith(kind + " ")]
            xs = [0.0] + [float(k.split()[1]) for k in keys]
            ms = [mean_sd(table[a]["top1"])] + [mean_sd(table[a][k]) for k in keys]
            ax.errorbar(xs, [m for m, _ in ms], yerr=[s for _, s in ms], label=a, marker="o", ms=3, capsize=2,
                        color=f"C{i % 10}")
        ax.set_xlabel(label)
        ax.set_title(f"top-1 under {kind} (%)")
    axes[4].legend(fontsize=7)
    fig.suptitle(f"{args.model} on {args.limit} Fashion-MNIST samples, {args.epochs} epochs: mean +- sd over seeds "
                 "(benchmarks/accuracy.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def report(args) -> int:
    runs = collect(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = {"methods": "accuracy", "noise": "accuracy_noise", "segmentation": "accuracy_segmentation"}[args.experiment]
    text = markdown(args, runs)
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}_runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    fig = figure(args, runs, out / f"{stem}.png") if runs and args.experiment != "segmentation" else None
    print(text)
    print(f"wrote {out / (stem + '.md')}" + (f" and {fig}" if fig else ""))
    return 0


def run(args) -> int:
    if not args.report_only:
        run_all(args)
    return report(args)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
