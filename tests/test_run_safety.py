"""Runs that cannot go silently wrong (train.py as a user on a bad day runs it): one run per
--output, no fresh run over an earlier run's files, no resume with other step bookkeeping, one
metrics line per epoch across crashes, a train loss over all steps of a resumed epoch, train/val
classes compared, and clear errors naming the file for bad inputs.

train.py runs in subprocesses on a 600-image Fashion-MNIST subset (batch 32, 18 steps/epoch);
refusals happen before any training step, so those runs take seconds.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--limit", "600", "--batch-size", "32", "--no-progress", "--workers", "1", "--epochs", "1"]


def run_train(*args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def refused(proc, *named):
    """The run stopped with an error message (no traceback) naming each of `named`."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for text in named:
        assert text in proc.stderr, (text, proc.stderr)


def epochs_in(path) -> list[int]:
    return [json.loads(line)["epoch"] for line in open(path)]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, fmnist_small):
    """--output of a run stopped (as if killed) after 3 of its 18 steps: holds last.pt."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    run_train(*SMALL, "--output", out, "--stop-after-steps", 3)
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- the output directory
def test_second_run_on_the_same_output_is_refused_while_the_first_lives(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom dali_mix_tools.training.run_dir import RunDir\n"
         f"RunDir.claim({str(out)!r}, resuming=False)\nprint('ready', flush=True)\ntime.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        refused(run_train(*SMALL, "--output", out, check=False), "in use", f"pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing: its lock is taken over
    from dali_mix_tools.training.run_dir import RunDir

    with RunDir.claim(out, resuming=False) as run:
        assert f"pid {holder.pid}" in run.took_over


def test_fresh_run_does_not_overwrite_an_earlier_runs_checkpoints(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"the earlier run's best model")
    (out / "last.pt").write_bytes(b"the earlier run's last checkpoint")
    refused(run_train(*SMALL, "--output", out, check=False), "--resume", "--overwrite", "best.pt")
    assert (out / "best.pt").read_bytes() == b"the earlier run's best model"
    from dali_mix_tools.training.run_dir import RunDir

    with RunDir.claim(out, resuming=False, overwrite=True):
        assert not (out / "best.pt").exists() and not (out / "last.pt").exists()


def test_default_output_moves_an_earlier_run_aside(tmp_path):
    """train.py without --output (the README command, run twice) keeps the earlier run."""
    from dali_mix_tools.training.run_dir import RunDir, archive_earlier_run

    out = tmp_path / "latest"
    out.mkdir()
    (out / "best.pt").write_bytes(b"earlier best")
    moved = archive_earlier_run(out)
    assert not out.exists() and moved.name.startswith("latest-")
    assert (moved / "best.pt").read_bytes() == b"earlier best"
    with RunDir.claim(out, resuming=False):
        assert archive_earlier_run(out) is None


def test_resume_with_another_batch_size_is_refused(stopped_run, tmp_path):
    out = copy_run(stopped_run, tmp_path / "run")
    small = [a if a != "32" else "64" for a in SMALL]
    refused(run_train(*small, "--output", out, "--resume", "auto", check=False),
            "--batch-size: saved 32, now 64")
    refused(run_train(*SMALL, "--model", "resnet34", "--output", out, "--resume", "auto", check=False),
            "--model: saved resnet18, now resnet34")


def test_crash_after_the_metrics_line_never_duplicates_an_epoch(stopped_run, tmp_path):
    """Killed after writing an epoch's metrics but before its end-of-epoch checkpoint: the
    resumed run redoes the epoch's tail; metrics.jsonl still has that epoch once. Killed before
    best.pt was updated: the resumed run restores it. Temporary files of a writer killed
    mid-write are removed at start."""
    out = copy_run(stopped_run, tmp_path / "run")
    shutil.copyfile(out / "last.pt", tmp_path / "mid-epoch.pt")
    run_train(*SMALL, "--output", out, "--resume", "auto")
    assert epochs_in(out / "metrics.jsonl") == [1]
    # killed between the epoch-end last.pt and its copy to best.pt: best.pt is an older model
    shutil.copyfile(tmp_path / "mid-epoch.pt", out / "best.pt")
    run_train(*SMALL, "--output", out, "--resume", "auto")  # the run is complete: nothing to train
    from dali_mix.checkpoint import load

    assert load(out / "best.pt")["epoch"] == 1
    shutil.copyfile(tmp_path / "mid-epoch.pt", out / "last.pt")  # the epoch-end save never happened
    (out / ".last.pt.k2j4x9.tmp").write_bytes(b"half a checkpoint")
    proc = run_train(*SMALL, "--output", out, "--resume", "auto")
    assert epochs_in(out / "metrics.jsonl") == [1]
    assert not (out / ".last.pt.k2j4x9.tmp").exists() and ".last.pt.k2j4x9.tmp" in proc.stdout


# --------------------------------------------------------------------------- data
def _tree(root: Path, classes, n=4):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_train_val_class_mismatch_stops_the_run_naming_the_class(tmp_path):
    _tree(tmp_path / "d" / "train", ["ant", "bee", "cat"])
    _tree(tmp_path / "d" / "val", ["ant", "cat"])
    refused(run_train("--data", tmp_path / "d", "--epochs", "1", "--batch-size", "4", "--no-progress",
                      "--output", tmp_path / "run", check=False), "only in train: bee")


def test_file_list_with_a_missing_file_is_named(tmp_path):
    _tree(tmp_path, ["a"])
    lst = tmp_path / "list.txt"
    lst.write_text("a/0.png 0\na/1.png 1\na/gone.png 1\na/2.png 0\na/3.png 1\n")
    refused(run_train("--data", lst, "--val-data", lst, "--epochs", "1", "--batch-size", "2", "--no-progress",
                      "--output", tmp_path / "run", check=False), f"list.txt:3: {tmp_path}/a/gone.png")


@pytest.mark.parametrize("name, text, line", [
    ("bad.yaml", "methods:\n  mixup: 1\n  cutmix: [1\nprob: 0.5\n", 4),
    ("bad.json", '{\n  "methods": {"mixup": 1},\n  "prob": 0.5,\n}\n', 4),
])
def test_malformed_recipe_file_is_named_with_its_line(tmp_path, name, text, line):
    import dali_mix as dm

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}:{line}: not valid"):
        dm.MixRecipe.from_file(path)
    if name.endswith(".yaml"):  # the trainer refuses it as a bad flag, naming file and line
        proc = run_train("--recipe", path, "--output", tmp_path / "run", check=False, timeout=120)
        assert proc.returncode == 2 and f"{path}:{line}" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_check_names_the_recipe_field_that_changed():
    import dali_mix as dm
    from dali_mix_tools.training.resume import incompatibilities

    saved = {"world_size": 2, "recipe": dm.MixRecipe(num_classes=10).to_dict()}
    now = {"world_size": 1, "recipe": dm.MixRecipe(num_classes=10, prob=0.5).to_dict()}
    lines = incompatibilities(saved, now)
    assert any(line.startswith("the number of processes") and "saved 2, now 1" in line for line in lines)
    assert any("prob: saved 1.0, now 0.5" in line for line in lines)
    assert incompatibilities(saved, saved) == []
