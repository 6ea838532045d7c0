"""train.py --task segmentation and --task multilabel as users run them, and the mIoU and mAP
they report, checked by value.

A short run on a small generated scenes set (the data `dali-mix data scenes` writes): the val
mIoU and pixel accuracy in metrics.jsonl equal a re-computation from the saved model on the
val pairs (a confusion matrix in numpy, read independently of the trainer's code); mIoU
against a hand-made confusion; flags the task does not take are named; a bad mask class is
named; resuming a finished run says so with its mIoU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dali_mix.data.scenes import prepare_scenes
from dali_mix.evaluation import ConfusionTally

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "8", "--no-progress", "--workers", "1", "--image-size", "32"]


def run_train(*args, check=True):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--task", "segmentation", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return prepare_scenes(tmp_path_factory.mktemp("scenes") / "set", train=24, val=9, size=32, seed=2,
                          progress=False)


def miou_restated(pred: np.ndarray, true: np.ndarray, C: int) -> tuple[float, float]:
    """(mIoU %, pixel accuracy %): IoU per class = |pred & true| / |pred | true| over the
    classes with a non-empty union, averaged."""
    ious = []
    for c in range(C):
        union = np.logical_or(pred == c, true == c).sum()
        if union:
            ious.append(np.logical_and(pred == c, true == c).sum() / union)
    return 100.0 * float(np.mean(ious)), 100.0 * float((pred == true).mean())


def test_run_reports_the_miou_of_its_model(scenes, tmp_path):
    out = tmp_path / "run"
    proc = run_train("--data", scenes.root, "--output", out, "--epochs", "2", "--mix", "cutmix", *FAST)
    assert "val mIoU" in proc.stdout + proc.stderr
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["val_samples"] == 9
    # the saved model on the val pairs, resized to 32 px as the val pipeline does (image bilinear,
    # mask nearest), normalised with ImageNet's mean and std: the same mIoU
    from dali_mix_tools.training.segmentation_models import SEGMENTATION_MODELS
    from pipelines.segmentation import val_pipeline
    from dali_mix.torch import Loader

    state = torch.load(out / "last.pt", weights_only=True)
    model = SEGMENTATION_MODELS[state["model_name"]](state["num_classes"])
    model.load_state_dict(state["model"])
    model.eval()
    built = val_pipeline(scenes.root / "val", batch_size=4, image_size=32, num_threads=1)
    preds, trues = [], []
    with torch.no_grad():
        for images, masks in Loader(built.pipe, built.output_map, built.reader_name, train=False):
            preds.append(model(images)["out"].argmax(1).numpy())
            trues.append(masks.numpy())
    # the val masks are the files' masks (scenes are 32 px: nothing resized)
    files = np.stack([np.asarray(Image.open(f)) for f in built.masks])
    np.testing.assert_array_equal(np.concatenate(trues), files)
    miou, acc = miou_restated(np.concatenate(preds), np.concatenate(trues), len(scenes.classes))
    assert records[-1]["val_miou"] == pytest.approx(miou, abs=1e-3)
    assert records[-1]["val_pixel_acc"] == pytest.approx(acc, abs=1e-3)
    again = run_train("--data", scenes.root, "--output", out, "--epochs", "2", "--mix", "cutmix", "--resume",
                      "auto", *FAST)
    assert f"final val mIoU {records[-1]['val_miou']:.2f}%" in again.stdout + again.stderr


def test_confusion_tally_against_a_hand_count():
    C = 3
    true = torch.tensor([[[0, 0, 1], [2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
    logits = torch.nn.functional.one_hot(pred, C).permute(0, 3, 1, 2).float()
    tally = ConfusionTally(C, torch.device("cpu"))
    tally.add(logits, true)
    r = tally.result()
    # kept pixels (true, pred): (0,0) (0,1) (1,1) (2,2) (1,0); IoU0 = 1/3, IoU1 = 1/3, IoU2 = 1/1
    assert r["miou"] == pytest.approx(100 * (1 / 3 + 1 / 3 + 1) / 3, abs=1e-3)
    assert r["pixel_acc"] == pytest.approx(60.0) and r["pixels"] == 5 and r["images"] == 1
    with pytest.raises(ValueError, match="holds class 7"):
        tally.add(logits, torch.full_like(true, 7))


@pytest.mark.parametrize("flags, named", [
    (["--mixmo", "cut"], "--mixmo"),
    (["--evaluate"], "--evaluate"),
    (["--model", "resnet18"], "--model must be one of fcn_resnet18"),
    (["--label-noise", "0.2"], "--label-noise"),
])
def test_flags_the_task_does_not_take_are_named(flags, named, tmp_path):
    proc = run_train("--output", tmp_path / "r", *flags, check=False)
    assert proc.returncode == 2 and named in proc.stderr


def test_a_mask_class_outside_the_classes_is_named(scenes, tmp_path):
    proc = run_train("--data", scenes.root, "--num-classes", "3", "--output", tmp_path / "r", "--epochs", "1",
                     *FAST, check=False)
    assert proc.returncode != 0
    assert "outside the run's 3 classes" in proc.stderr


def test_accuracy_harness_segmentation_experiment(scenes, tmp_path):
    """`benchmarks.accuracy --experiment segmentation` on a tiny budget: its table holds each
    arm's final val mIoU over the seeds, as the runs' metrics.jsonl recorded them."""
    work, out = tmp_path / "work", tmp_path / "out"
    extra = f"--data {scenes.root} --image-size 32 --workers 1"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.accuracy", "--experiment", "segmentation", "--arms",
                           "cutmix", "--seeds", "2", "--epochs", "1", "--batch-size", "8", "--extra", extra,
                           "--work", str(work), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = (out / "accuracy_segmentation.md").read_text()
    for arm in ("cutmix",):
        values = [json.loads((work / f"{arm}-seed{s}" / "metrics.jsonl").read_text().splitlines()[-1])["val_miou"]
                  for s in range(2)]
        mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
        assert f"| {arm} | {mean:.2f} +- {sd:.2f} |" in table


def test_multilabel_run_and_evaluate_report_the_same_map(scenes, tmp_path):
    """train.py --task multilabel (the classes each scene shows, mixed multi-hot targets, BCE):
    `dali-mix evaluate` on its last.pt, with another val batch size, gives the mAP the run
    recorded for its last epoch (the model in eval mode: nothing depends on the batch)."""
    out = tmp_path / "ml"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--task", "multilabel", "--data", scenes.root,
                           "--output", out, "--epochs", "1", "--mix", "cutmix", "--overwrite", *FAST],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < last["val_map"] <= 100 and last["val_samples"] == 9
    doc = tmp_path / "eval.json"
    ev = subprocess.run([sys.executable, "-m", "dali_mix_tools", "evaluate", str(out / "last.pt"), "--json", str(doc),
                         "--batch-size", "4", "--workers", "1", "--no-progress"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert ev.returncode == 0, ev.stdout + ev.stderr
    result = json.loads(doc.read_text())
    assert result["clean"]["map"] == pytest.approx(last["val_map"], abs=1e-3)
    assert result["clean"]["map_classes"] == len(scenes.classes) - 1 and result["samples"] == 9
