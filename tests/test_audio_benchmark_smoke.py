"""Smoke test of benchmarks/audio_throughput.py: tiny settings on tone clips, checks the JSON
(every contender measured, ratios to the reference consistent), never the speed."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from benchmarks import audio_throughput
from test_audio import speech_commands

pytestmark = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="the torch peer uses timm")


def test_audio_throughput_smoke(tmp_path):
    root = speech_commands(tmp_path / "sc", {"a": 6, "b": 6}, val=["a/spk0_nohash_0.wav", "b/spk0_nohash_0.wav"])
    out = tmp_path / "audio.json"
    assert audio_throughput.main(["--data", str(root), "--batch-size", "4", "--threads", "1", "--rounds", "2",
                                  "--batches", "1", "--warmup", "1", "--in-process", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    results = report["contenders"]
    assert set(results) == set(audio_throughput.CONTENDERS)
    ref = results[audio_throughput.REFERENCE]["images_per_s"]
    for r in results.values():
        ips = r["images_per_s"]
        assert len(ips["rounds"]) == 2 and all(v > 0 for v in ips["rounds"])
        assert r["ratio_vs_reference"] == pytest.approx(ips["median"] / ref["median"])
        assert r["ratio_paired"]["median"] == pytest.approx(
            float(np.median([a / b for a, b in zip(ips["rounds"], ref["rounds"])])))


def test_torch_peer_mel_matrix_matches_dali_mel_filter_bank():
    """The peer's Slaney mel matrix applied to a power spectrum gives DALI's fn.mel_filter_bank
    output (so the peer computes the same features)."""
    from nvidia.dali import fn, pipeline_def

    spec = np.random.default_rng(0).random((257, 7)).astype(np.float32)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [spec], batch=True, layout="ft")
        return fn.mel_filter_bank(x, sample_rate=16000.0, nfilter=40, freq_low=0.0, freq_high=8000.0)

    p = pipe()
    p.build()
    dali = np.asarray(p.run()[0][0])
    np.testing.assert_allclose(audio_throughput.slaney_mel_matrix(40, 512, 16000) @ spec, dali, rtol=1e-3, atol=1e-5)


def test_audio_commits_measures_a_commit_from_its_own_tree(tmp_path):
    """benchmarks.audio_commits: the commit's contender runs that commit's dali_mix (its
    builder refuses to run another), every contender is measured against nomix, and the
    temporary worktree is gone afterwards."""
    import subprocess

    from benchmarks import audio_commits

    root_dir = audio_commits.ROOT
    if subprocess.run(["git", "-C", str(root_dir), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    before = subprocess.run(["git", "-C", str(root_dir), "worktree", "list"], capture_output=True, text=True).stdout
    root = speech_commands(tmp_path / "sc", {"a": 6, "b": 6}, val=["a/spk0_nohash_0.wav", "b/spk0_nohash_0.wav"])
    out = tmp_path / "commits.json"
    assert audio_commits.main(["HEAD", "--data", str(root), "--batch-size", "4", "--threads", "1", "--rounds", "2",
                               "--batches", "1", "--warmup", "1", "--processes", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["contenders"]
    assert list(results) == ["nomix", "randommix@HEAD", "randommix"]
    ref = results["nomix"]["images_per_s"]
    for r in results.values():
        assert r["ratio_vs_reference"] == pytest.approx(r["images_per_s"]["median"] / ref["median"])
    after = subprocess.run(["git", "-C", str(root_dir), "worktree", "list"], capture_output=True, text=True).stdout
    assert after == before
