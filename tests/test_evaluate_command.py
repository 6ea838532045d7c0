"""`dali-mix evaluate` and `train.py --evaluate` as users run them, on tiny real runs; label noise;
the CIFAR binary converter; the accuracy harness and `dali-mix plot` on a tiny budget."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dali_mix.data.sources import resolve_source
from dali_mix_tools.training.label_noise import corrupt_labels, corrupted_subset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--limit", "600", "--batch-size", "64", "--no-progress", "--workers", "1", "--epochs", "1"]


def run(args: list, module: str | None = None, check: bool = True, timeout: int = 300):
    cmd = [sys.executable, "-m", module, *map(str, args)] if module else [sys.executable, str(ROOT / "train.py"),
                                                                          *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def evaluate_cli(*args, check=True):
    return run(["evaluate", *args, "--no-progress", "--workers", "1"], module="dali_mix_tools", check=check)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fmnist_small):
    """A one-epoch RandomMix run with 30% label noise, evaluated with robustness by train.py."""
    out = tmp_path_factory.mktemp("run") / "run"
    run([*TINY, "--output", out, "--evaluate", "robustness", "--label-noise", "0.3", "--fgsm-eps", "0", "0.03"])
    return out


def test_train_evaluate_json_equals_dali_mix_evaluate(trained, tmp_path):
    doc = json.loads((trained / "evaluation.json").read_text())
    assert set(doc) == {"checkpoint", "data", "samples", "clean", "fgsm", "noise", "occlusion"}
    assert doc["samples"] == 600  # every val sample once
    assert set(doc["clean"]) == {"top1", "top5", "nll", "ece"}
    assert doc["fgsm"]["0"] == doc["clean"]["top1"]  # eps 0 is the clean image
    assert set(doc["noise"]) == {"0.04", "0.08", "0.16"} and set(doc["occlusion"]) == {"0.25", "0.5"}
    proc = evaluate_cli(trained / "last.pt", "--robustness", "--fgsm-eps", "0", "0.03", "--json", tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text()) == doc
    assert f"{doc['clean']['top1']:7.3f}%" in proc.stdout
    clean_only = json.loads(evaluate_cli(trained / "best.pt", "--json", tmp_path / "c.json").stdout and
                            (tmp_path / "c.json").read_text())
    assert "fgsm" not in clean_only and clean_only["clean"] == doc["clean"]  # one epoch: best = last


def test_label_noise_is_recorded_and_memorisation_scored(trained, fmnist_small):
    rec = json.loads((trained / "label_noise.json").read_text())
    assert rec["corrupted"] == 180 and rec["samples"] == 600
    assert all(t != n for t, n in zip(rec["true_labels"], rec["noisy_labels"]))
    mem = rec["memorisation"]
    assert 0 <= mem["noisy_label_top1"] <= 100 and 0 <= mem["true_label_top1"] <= 100
    assert mem["noisy_label_top1"] + mem["true_label_top1"] <= 100.0 + 1e-9  # one prediction per sample
    # the same samples and wrong classes from the same seed, wherever it is drawn
    source = resolve_source(str(fmnist_small.train_dir))
    _, again = corrupt_labels(source, 0.3, 0)
    assert list(again.indices) == rec["indices"] and list(again.noisy_labels) == rec["noisy_labels"]


def test_corrupt_labels_draw():
    files = tuple(f"/x/{i}.png" for i in range(1000))
    labels = tuple(i % 10 for i in range(1000))
    from dali_mix.data.sources import Source

    src = Source("folder", "/x", files, labels, tuple(str(i) for i in range(10)), num_samples=1000)
    noisy, rec = corrupt_labels(src, 0.4, seed=3)
    new = np.array(noisy.labels)
    changed = np.flatnonzero(new != np.array(labels))
    assert changed.tolist() == list(rec.indices) and len(changed) == 400  # exactly the recorded ones
    # the wrong class is uniform over the other nine classes
    offsets = (new[changed] - np.array(labels)[changed]) % 10
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 20
    assert corrupt_labels(src, 0.4, seed=3)[1] == rec and corrupt_labels(src, 0.4, seed=4)[1] != rec
    sub = corrupted_subset(noisy, rec, noisy=False)
    assert [int(f.split("/")[-1][:-4]) % 10 for f in sub.files] == list(sub.labels)  # true labels
    with pytest.raises(ValueError, match="label-noise"):
        corrupt_labels(src, 1.0, 0)


def test_mixmo_checkpoint_reports_each_head_and_the_ensemble(tmp_path, fmnist_small):
    out = tmp_path / "mixmo"
    run([*TINY, "--mixmo", "cut", "--output", out, "--evaluate"])
    doc = json.loads((out / "evaluation.json").read_text())
    assert set(doc["heads"]) == {"head0", "head1", "ensemble"}
    assert doc["heads"]["ensemble"]["clean"] == doc["clean"]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert doc["heads"]["head0"]["clean"]["top1"] == pytest.approx(metrics[-1]["val_top1_head0"], abs=1e-3)
    assert doc["clean"]["top1"] == pytest.approx(metrics[-1]["val_top1"], abs=1e-3)
    assert json.loads(evaluate_cli(out / "last.pt", "--json", tmp_path / "m.json").returncode == 0
                      and (tmp_path / "m.json").read_text()) == doc


def test_bad_checkpoints_and_data_are_one_clear_line(trained, tmp_path):
    cases = []
    cases.append(((tmp_path / "missing.pt",), "does not exist"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases.append(((tmp_path / "junk.pt",), "is unreadable"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    cases.append(((tmp_path / "other.pt",), "is not a dali-mix train.py checkpoint"))
    three = tmp_path / "three"
    for c in range(3):
        (three / f"c{c}").mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(three / f"c{c}" / "a.png")
    cases.append(((trained / "last.pt", "--data", three), "the checkpoint's model has 10 classes but the data has 3"))
    cases.append(((trained / "last.pt", "--robustness", "--fgsm-eps", "-0.1"), "--fgsm-eps: -0.1"))
    for args, fragment in cases:
        proc = evaluate_cli(*args, check=False)
        assert proc.returncode != 0, args
        assert fragment in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "weights_only=False" not in proc.stderr


# ----------------------------------------------------------------------------------------- CIFAR
def write_cifar_bin(path: Path, labels: list[int], label_bytes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    rows = []
    for label, image in zip(labels, images):
        head = [label] * label_bytes if label_bytes == 1 else [label // 5, label]  # (coarse, fine)
        rows.append(np.concatenate([np.array(head, np.uint8), image.transpose(2, 0, 1).reshape(-1)]))
    np.concatenate(rows).tofile(path)
    return images


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_binary_converts_pixel_exact_with_official_labels(tmp_path, kind):
    bin_dir = tmp_path / "dl" / ("cifar-10-batches-bin" if kind == "cifar10" else "cifar-100-binary")
    bin_dir.mkdir(parents=True)
    k = 10 if kind == "cifar10" else 100
    written = {}
    if kind == "cifar10":
        for i in range(1, 6):
            written[f"data_batch_{i}.bin"] = ([(i * 3 + j) % k for j in range(3)], 1)
        written["test_batch.bin"] = (list(range(k)), 1)  # every class folder needs an image
        (bin_dir / "batches.meta.txt").write_text("\n".join(f"name{i}" for i in range(k)) + "\n\n")
    else:
        written["train.bin"] = ([*range(k), 57], 2)
        written["test.bin"] = (list(range(k))[::-1], 2)
        (bin_dir / "fine_label_names.txt").write_text("\n".join(f"n {i}" for i in range(k)) + "\n")
    images = {f: write_cifar_bin(bin_dir / f, lab, lb, seed=n) for n, (f, (lab, lb)) in enumerate(written.items())}
    proc = run(["data", "cifar", "--bin-dir", tmp_path / "dl", "--root", tmp_path / "out", "--no-progress"],
               module="dali_mix_tools")
    assert str(tmp_path / "out") in proc.stdout
    train, val = resolve_source(str(tmp_path / "out" / "train")), resolve_source(str(tmp_path / "out" / "val"))
    assert train.num_classes == k and val.num_classes == k
    train_files = [f for f in written if f not in ("test_batch.bin", "test.bin")]
    want = [(lab, img) for f in train_files for lab, img in zip(written[f][0], images[f])]
    got = sorted(zip(train.files, train.labels))  # file names are the record index
    got.sort(key=lambda fl: int(Path(fl[0]).stem))
    assert [lab for _, lab in got] == [lab for lab, _ in want]
    for (path, _), (_, img) in zip(got, want):
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), img)
    assert len(val.files) == k
    # cut short: one byte missing names the file
    test = "test_batch.bin" if kind == "cifar10" else "test.bin"
    data = (bin_dir / test).read_bytes()
    (bin_dir / test).write_bytes(data[:-1])
    bad = run(["data", "cifar", "--bin-dir", bin_dir, "--root", tmp_path / "out2", "--no-progress"],
              module="dali_mix_tools", check=False)
    assert bad.returncode == 2 and test in bad.stderr and "records" in bad.stderr


# ------------------------------------------------------------------------------ harness and plot
def test_accuracy_harness_and_plot_on_a_tiny_budget(tmp_path, fmnist_small):
    pytest.importorskip("matplotlib")
    work, out = tmp_path / "work", tmp_path / "out"
    proc = run(["--seeds", "2", "--limit", "200", "--batch-size", "32", "--epochs", "1", "--arms", "none,mixup",
                "--work", work,
                "--out", out, "--extra", "--workers 1 --fgsm-eps 0.01 --noise-sigma 0.1 --occlusion 0.3"],
               module="benchmarks.accuracy", timeout=600)
    text = (out / "accuracy.md").read_text()
    runs = json.loads((out / "accuracy_runs.json").read_text())
    assert len(runs) == 4 and {(r["arm"], r["seed"]) for r in runs} == {(a, s) for a in ("none", "mixup") for s in (0, 1)}
    mixup = [r["evaluation"]["clean"]["top1"] for r in runs if r["arm"] == "mixup"]
    mean, sd = float(np.mean(mixup)), float(np.std(mixup, ddof=1))
    assert f"| mixup | {mean:.2f} +- {sd:.2f} |" in text
    assert (out / "accuracy.png").stat().st_size > 10_000
    assert "mixup" in proc.stdout
    plot = run(["plot", work / "none-seed0", work / "mixup-seed0", "-o", tmp_path / "curves.png"], module="dali_mix_tools")
    assert (tmp_path / "curves.png").stat().st_size > 10_000, plot.stdout
    missing = run(["plot", tmp_path / "nothing", "-o", tmp_path / "x.png"], module="dali_mix_tools", check=False)
    assert missing.returncode != 0 and "metrics.jsonl" in missing.stderr


def test_welch_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    from benchmarks.accuracy import welch

    a, b = [88.1, 87.5, 88.9, 88.0, 87.2], [87.9, 88.4, 86.8, 87.7]
    w = welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert w["t"] == pytest.approx(ref.statistic) and w["p"] == pytest.approx(ref.pvalue)
    assert w["diff"] == pytest.approx(np.mean(a) - np.mean(b))
