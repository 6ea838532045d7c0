"""train.py on sound, as users run it: a folder in the Speech Commands layout (tiny tone clips
written here) trains kws_cnn on mixed log-mel spectrograms, resumes mid-epoch with the same
batches, and names an unreadable clip (or leaves it out with --check-data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dali_mix_tools.training.support import build_model
from test_audio import speech_commands
from test_train import run_train, steps

COMMON = ["--batch-size", "8", "--no-progress", "--workers", "1"]


@pytest.fixture()
def tones(tmp_path):
    """3 classes x 12 clips (tones of distinct frequencies); 2 clips per class in validation."""
    val = [f"{c}/spk{k}_nohash_0.wav" for c in ("a", "b", "c") for k in (0, 1)]
    return speech_commands(tmp_path / "sc", {"a": 12, "b": 12, "c": 12}, val=val)


def test_sound_run_resumes_mid_epoch_with_the_same_batches_and_losses(tones, tmp_path):
    common = ["--data", tones, *COMMON, "--epochs", "2", "--mix-off-epochs", "1"]
    a = run_train(*common, "--output", tmp_path / "a", "--step-log", tmp_path / "a.steps")
    assert "kws_cnn" in a.stdout and "log-mel 40x101" in a.stdout and "3 classes" in a.stdout
    run_train(*common, "--output", tmp_path / "b", "--step-log", tmp_path / "b.steps", "--stop-after-steps", 3)
    resumed = run_train(*common, "--output", tmp_path / "b", "--step-log", tmp_path / "b.steps", "--resume", "auto")
    assert "resumed from" in resumed.stdout and "step 3" in resumed.stdout
    sa, sb = steps(tmp_path / "a.steps.rank0"), steps(tmp_path / "b.steps.rank0")
    assert len(sa) == 2 * (30 // 8) and [s["global_step"] for s in sa] == [s["global_step"] for s in sb]
    for x, y in zip(sa, sb):  # noise, windows and mixing replayed across the resume
        assert x["targets"] == y["targets"] and x["loss"] == y["loss"], x["global_step"]
    metrics = [json.loads(line) for line in open(tmp_path / "a" / "metrics.jsonl")]
    assert [(m["epoch"], m["mixing"], m["val_samples"]) for m in metrics] == [(1, True, 6), (2, False, 6)]


def test_unreadable_clip_stops_training_with_its_name_and_check_data_leaves_it_out(tones, tmp_path):
    bad = tones / "b" / "spk9_nohash_0.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage" * 20)
    proc = run_train("--data", tones, *COMMON, "--epochs", "1", "--output", tmp_path / "r1", check=False)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "--check-data" in proc.stderr and "Traceback" not in proc.stderr
    ok = run_train("--data", tones, *COMMON, "--epochs", "1", "--check-data", "--output", tmp_path / "r2")
    assert f"leaving out {bad}" in ok.stdout and "train 29 imgs" in ok.stdout


def test_one_channel_models():
    """kws_cnn and a ResNet with a one-channel stem take (N, 1, 40, 101); other models refuse
    one channel by name."""
    import torch

    x = torch.zeros(2, 1, 40, 101)
    for name in ("kws_cnn", "resnet18"):
        assert build_model(name, 10, small_images=True, in_channels=1)(x).shape == (2, 10)
    assert build_model("resnet18", 10, in_channels=1).conv1.in_channels == 1
    with pytest.raises(ValueError, match="efficientnet_b0"):
        build_model("efficientnet_b0", 10, in_channels=1)


def test_preview_of_a_sound_folder_shows_spectrogram_tiles(tones, tmp_path):
    """dali-mix preview on a Speech Commands folder: 40x101 spectrograms upscaled 3x, tiles'
    targets put lam on the own label and 1 - lam on the partner's (no smoothing in previews)."""
    from dali_mix_tools.preview import make_preview, save_preview, read_preview_metadata

    image, tiles = make_preview(str(tones), num=8, seed=1)
    path = save_preview(image, tiles, tmp_path / "p.png")
    meta = read_preview_metadata(path)
    assert meta["image_size"] == [40, 101] and meta["crop"] == "spectrogram" and meta["upscale"] == 3
    for t in tiles:
        x0, y0, x1, y1 = t["box"]
        assert (x1 - x0, y1 - y0) == (303, 120)
        target = np.asarray(t["target"])
        want = np.zeros(3)
        want[t["label_a"]] += t["lam"]
        want[t["label_b"]] += 1 - t["lam"]
        np.testing.assert_allclose(target, want, atol=1e-5)


@pytest.mark.parametrize("flags, named", [(["--mixmo", "cut"], "--mixmo"), (["--n-mels", "0"], "--n-mels")])
def test_bad_sound_flags_stop_before_any_data_is_read(tones, tmp_path, flags, named):
    proc = run_train("--data", tones, *flags, "--output", tmp_path / "run", check=False)
    assert proc.returncode == 2 and named in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_sound_run_is_evaluated_by_train_py_and_refused_by_dali_mix_evaluate(tones, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ev"
    run_train("--data", tones, *COMMON, "--epochs", "1", "--output", out, "--evaluate")
    doc = json.loads((out / "evaluation.json").read_text())
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert doc["samples"] == 6 and doc["clean"]["top1"] == pytest.approx(metrics[-1]["val_top1"], abs=1e-3)
    again = run_train("--data", tones, *COMMON, "--evaluate", "--resume", out / "last.pt")
    assert f"val top-1 {doc['clean']['top1']:.2f}%" in again.stdout and "(6 imgs)" in again.stdout
    refused = run_train("--data", tones, *COMMON, "--evaluate", "robustness", "--output", tmp_path / "x", check=False)
    assert refused.returncode == 2 and "--evaluate robustness" in refused.stderr
    cli = subprocess.run([sys.executable, "-m", "dali_mix_tools", "evaluate", str(out / "last.pt")], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1])
    assert cli.returncode != 0 and "sound checkpoint" in cli.stderr and "Traceback" not in cli.stderr
