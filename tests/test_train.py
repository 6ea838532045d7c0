"""train.py as users run it: flags, resume, checkpoints, torchrun, MixMo, mix-off epochs.

Runs are short (a 600-image Fashion-MNIST subset, batch 32) and in subprocesses, the way users
launch the trainer.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--limit", "600", "--batch-size", "32", "--no-progress", "--workers", "1"]


def run_train(*args, env=None, check=True, timeout=300):
    e = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def steps(path):
    return [json.loads(line) for line in open(path)]


# --------------------------------------------------------------------------- bad flags
@pytest.mark.parametrize("flags, named", [
    (["--model", "not_a_model"], "--model"),
    (["--mix-weights", "1,2"], "--mix-weights"),
    (["--mix-weights", "mixup=1,warp=2"], "--mix-weights"),
    (["--lr", "-0.1"], "--lr"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "1"], "--batch-size"),  # would pair each sample with itself, then fail in BatchNorm
    (["--mixup-prob", "1.5"], "prob"),
    (["--mixmo", "cut", "--model", "vit_b_16"], "--mixmo"),
    (["--recipe", "/nonexistent.yaml"], "--recipe"),
    (["--data", "/nonexistent/imagenet"], "--data"),
])
def test_bad_flags_stop_before_any_data_is_read(flags, named, tmp_path):
    # DALI_MIX_DATA points at an empty folder: had the trainer reached the data step, it would
    # have started converting Fashion-MNIST there
    proc = run_train(*flags, "--output", tmp_path / "run", env={"DALI_MIX_DATA": str(tmp_path / "data")},
                     check=False, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert named in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- resume
def test_resume_mid_epoch_gives_the_same_batches_and_losses(tmp_path, fmnist_small):
    common = [*SMALL, "--epochs", "2", "--mix-off-epochs", "1"]
    run_train(*common, "--output", tmp_path / "a", "--step-log", tmp_path / "a.steps")
    stopped = run_train(*common, "--output", tmp_path / "b", "--step-log", tmp_path / "b.steps",
                        "--stop-after-steps", 7)
    assert "stopped after 7 steps" in stopped.stdout
    resumed = run_train(*common, "--output", tmp_path / "b", "--step-log", tmp_path / "b.steps", "--resume", "auto")
    assert "resumed from" in resumed.stdout and "step 7" in resumed.stdout
    a, b = steps(tmp_path / "a.steps.rank0"), steps(tmp_path / "b.steps.rank0")
    assert [s["global_step"] for s in a] == [s["global_step"] for s in b]
    assert len(a) == 2 * (600 // 32)
    for x, y in zip(a, b):  # RandomMix with FMix in epoch 1, unmixed epoch 2, across the resume
        assert x["targets"] == y["targets"], x["global_step"]
        assert x["loss"] == y["loss"], x["global_step"]
    # mixing is really on in epoch 1 and off in epoch 2: mixed targets are not all one-hot
    ma = [json.loads(line) for line in open(tmp_path / "a" / "metrics.jsonl")]
    assert [m["mixing"] for m in ma] == [True, False]
    # the resumed epoch's train loss covers all its steps, not only those after the resume
    mb = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert [m["epoch"] for m in mb] == [1, 2]
    assert [m["train_loss"] for m in mb] == [m["train_loss"] for m in ma]


def test_mix_off_epoch_trains_on_one_hot_targets(tmp_path):
    """Within the same run (no rebuild), the last epoch's targets are smoothed one-hot rows."""
    import dali_mix as dm
    from dali_mix.data.fashion_mnist import prepare_fashion_mnist
    from dali_mix.torch import Loader
    from pipelines.classification import train_pipeline

    data = prepare_fashion_mnist(limit=600)
    recipe = dm.MixRecipe(num_classes=10, label_smoothing=0.1)
    built = train_pipeline(data.train_dir, batch_size=64, image_size=28, crop="pad", recipe=recipe,
                           mix_off_from_epoch=1, explain=True)
    loader = Loader(built.pipe, built.output_map, built.reader_name, num_classes=10)
    built.clock.runs_per_epoch = loader.runs_per_epoch
    lams = []
    for epoch in range(3):
        lams.append(torch.cat([batch[built.output_map.index("lam")] for batch in loader]))
    assert (lams[0] < 1).float().mean() > 0.9  # RandomMix: almost every sample mixed
    assert torch.all(lams[1] == 1) and torch.all(lams[2] == 1)


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_is_complete_even_when_the_writer_is_killed(tmp_path):
    """SIGKILL a process that keeps rewriting a large checkpoint: what is on disk always loads
    completely (old or new version), never truncated."""
    target = tmp_path / "last.pt"
    script = f"""
import torch, sys
sys.path.insert(0, {str(ROOT)!r})
from dali_mix.checkpoint import save_atomic
i = 0
while True:
    save_atomic({{"step": i, "w": torch.full((4_000_000,), float(i))}}, {str(target)!r})
    i += 1
    print(i, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # wait for a few complete writes
            proc.stdout.readline()
        time.sleep(0.37)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    from dali_mix.checkpoint import load

    state = load(target)
    assert state["w"].numel() == 4_000_000 and torch.all(state["w"] == float(state["step"]))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(name.startswith(".last.pt.") for name in leftovers)  # temp files never take the name


def test_truncated_checkpoint_is_rejected_with_a_clear_error(tmp_path):
    from dali_mix.checkpoint import load, save_atomic

    path = save_atomic({"w": torch.ones(1000)}, tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="unreadable"):
        load(path)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from dali_mix import checkpoint

    path = checkpoint.save_atomic({"v": torch.tensor(1)}, tmp_path / "c.pt")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save_atomic({"v": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# --------------------------------------------------------------------------- torchrun
def test_two_process_torchrun_on_cpu(tmp_path, fmnist_small):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "train.py"), *SMALL, "--epochs", "1", "--output", out, "--step-log", tmp_path / "s"]
    proc = subprocess.run(list(map(str, cmd)), cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # each rank reads its own half: 300 samples -> 9 full batches of 32 per rank
    assert "x2" in proc.stdout and "9 steps/epoch/process" in proc.stdout
    r0, r1 = steps(tmp_path / "s.rank0"), steps(tmp_path / "s.rank1")
    assert len(r0) == len(r1) == 9
    assert [s["targets"] for s in r0] != [s["targets"] for s in r1]  # different data per rank
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert metrics[-1]["val_samples"] == 600  # every val sample counted once across ranks
    # the same weights evaluated by one process give the same top-1
    single = run_train("--evaluate", "--resume", out / "last.pt", *SMALL, "--output", tmp_path / "eval")
    top1 = float(single.stdout.split("val top-1 ")[1].split("%")[0])
    # printed with 2 decimals; one sample of 600 is 0.167 points
    assert top1 == pytest.approx(metrics[-1]["val_top1"], abs=0.006)


# --------------------------------------------------------------------------- MixMo
def test_mixmo_cut_run_learns_and_reports_heads(tmp_path, fmnist_small):
    proc = run_train("--mixmo", "cut", *SMALL, "--epochs", "2", "--output", tmp_path / "m")
    metrics = [json.loads(line) for line in open(tmp_path / "m" / "metrics.jsonl")]
    last = metrics[-1]
    assert {"val_top1", "val_top1_head0", "val_top1_head1"} <= set(last)
    assert last["val_top1"] > 25.0  # chance is 10%
    assert "head0" in proc.stdout and "head1" in proc.stdout


# --------------------------------------------------------------------------- corrupt data
@pytest.fixture
def tree_with_a_bad_file(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(20):
                Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(
                    tmp_path / split / c / f"{i}.png")
    bad = tmp_path / "train" / "b" / "7.png"
    bad.write_text("this is not an image")
    return tmp_path, bad


def test_corrupt_file_stops_training_with_its_name(tree_with_a_bad_file, tmp_path):
    root, bad = tree_with_a_bad_file
    proc = run_train("--data", root, "--epochs", "1", "--batch-size", "8", "--no-progress",
                     "--output", tmp_path / "run", check=False)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "--check-data" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_data_flag_trains_on_the_clean_list(tree_with_a_bad_file, tmp_path):
    root, bad = tree_with_a_bad_file
    proc = run_train("--data", root, "--epochs", "1", "--batch-size", "8", "--no-progress", "--check-data",
                     "--output", tmp_path / "run")
    assert f"leaving out {bad}" in proc.stdout
    assert "train 39 imgs" in proc.stdout and "2 classes" in proc.stdout
    listed = (tmp_path / "run" / "clean-list.rank0.txt").read_text()
    assert str(bad) not in listed and len(listed.splitlines()) == 39
