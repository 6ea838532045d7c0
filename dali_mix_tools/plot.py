"""`dali-mix plot RUN_DIR [RUN_DIR ...] -o curves.png`: training curves of train.py runs side by side.

One line per run in three panels: train loss, val top-1 (%) and learning rate per epoch, read
from each run's `metrics.jsonl` (the label is the folder's name). Needs matplotlib (the `plot`
extra: `pip install 'dali-mix[plot]'`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict]:
    """The epochs of one run; SystemExit naming the file when it is missing or not JSON lines."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {run_dir} holds no metrics.jsonl (not a train.py --output folder?)")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {path} line {exc.lineno}: not JSON ({exc.msg})") from None
    if not rows:
        raise SystemExit(f"error: {path} holds no finished epoch yet")
    return rows


def plot_runs(run_dirs: list[Path], out: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("error: dali-mix plot needs matplotlib: pip install matplotlib "
                         "(or the plot extra, pip install 'dali-mix[plot]')") from None
    runs = [(d.name if d.name not in ("", ".") else str(d), read_metrics(d)) for d in run_dirs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, rows in runs:
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r["train_loss"] for r in rows], marker="o", ms=3, label=name)
        axes[1].plot(epochs, [r["val_top1"] for r in rows], marker="o", ms=3, label=name)
        axes[2].plot(epochs, [r["lr"] for r in rows], marker="o", ms=3, label=name)
    for ax, title in zip(axes, ("train loss (mixed targets where mixing)", "val top-1 (%)",
                                "learning rate (at the epoch's last step)")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("plot", help="train loss, val top-1 and lr per epoch of train.py runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="train.py --output folders")
    p.add_argument("-o", "--out", default="curves.png", help="PNG to write (default curves.png)")
    p.set_defaults(func=lambda args: _run(args))


def _run(args) -> int:
    out = plot_runs([Path(r) for r in args.runs], Path(args.out))
    print(f"wrote {out}", file=sys.stdout)
    return 0
