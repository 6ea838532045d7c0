"""`dali-mix data spoken-commands`: a small build (12 speakers, 1 take) in a tmp folder, checked
for the Speech Commands layout, the WAV format, the split by speaker, determinism and the cache."""
from __future__ import annotations

import hashlib
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from dali_mix.data.audio_sources import resolve_speech_commands
from dali_mix.data import spoken_commands as sc

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (scripts/install.sh)")

VARIANTS = ["m1", "m2", "m3", "f1", "f2", "f3", "klatt", "klatt2", "whisper", "croak", "Mr serious", "robert"]


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc") / "spoken"
    return sc.prepare_spoken_commands(root, seed=3, takes=1, workers=2, progress=False, variants=VARIANTS)


def test_layout_format_and_split_by_speaker(built):
    """Ten word folders of 16 kHz mono 16-bit 1 s WAVs, one per speaker and word; val and test
    speakers (10 % each, at least one) never speak in train; the lists name exactly their clips;
    every clip holds sound (peak at least -25 dBFS) and none clips."""
    root = built.root
    splits = resolve_speech_commands(root)
    assert splits.classes == tuple(sorted(sc.WORDS))
    assert sorted(Path(p).name for p in splits.noise_files) == sorted(sc.NOISE_FILES)
    speaker = lambda f: Path(f).name.split("_nohash_")[0]
    by_split = {name: {speaker(f) for f in s.files} for name, s in
                (("train", splits.train), ("validation", splits.val), ("testing", splits.test))}
    assert by_split["validation"] == set(built.speakers["validation"]) and len(by_split["validation"]) == 1
    assert by_split["testing"] == set(built.speakers["testing"]) and len(by_split["testing"]) == 1
    assert not (by_split["train"] & (by_split["validation"] | by_split["testing"]))
    assert len(by_split["train"]) == len(VARIANTS) - 2
    for s, n_speakers in ((splits.train, 10), (splits.val, 1), (splits.test, 1)):
        assert np.bincount(s.labels, minlength=10).tolist() == [n_speakers] * 10
    for f in splits.train.files[::7] + splits.val.files:
        with wave.open(f, "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 16000)
            x = np.frombuffer(w.readframes(16000), "<i2").astype(np.float64) / 32768
        assert 10 ** (-25 / 20) <= np.abs(x).max() < 0.999


def test_same_seed_same_bytes_whatever_the_workers_and_a_second_call_is_cached(built, tmp_path):
    """A rebuild with one worker gives byte-identical files; calling again on the built folder
    returns at once without touching it (the manifest is unchanged)."""
    again = sc.prepare_spoken_commands(tmp_path / "again", seed=3, takes=1, workers=1, progress=False,
                                       variants=VARIANTS)
    assert digest(again.root) == digest(built.root)
    manifest = (built.root / "manifest.json").read_bytes()
    stamp = (built.root / "manifest.json").stat().st_mtime_ns
    cached = sc.prepare_spoken_commands(built.root, seed=3, takes=1, progress=False, variants=VARIANTS)
    assert cached == built
    assert (built.root / "manifest.json").read_bytes() == manifest
    assert (built.root / "manifest.json").stat().st_mtime_ns == stamp


def test_another_seed_changes_the_clips_and_the_split(built, tmp_path):
    other = sc.prepare_spoken_commands(tmp_path / "other", seed=4, takes=1, progress=False, variants=VARIANTS)
    a, b = digest(built.root), digest(other.root)
    common = set(a) & set(b)
    assert sum(a[k] != b[k] for k in common) > 0.9 * len(common)
    assert other.speakers != built.speakers or a != b


def test_missing_espeak_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sc.shutil, "which", lambda name: None)
    with pytest.raises(sc.EspeakNotFoundError, match="apt-get install espeak-ng"):
        sc.ensure_espeak(install=False)


def test_degrade_sets_the_drawn_peak_and_adds_noise_only_when_drawn():
    """The degradation of one word: peak at the drawn level, the word inside the second, noise
    only where drawn (a clip without noise is silent outside the word and its reverb tail)."""
    word = np.sin(np.linspace(0, 300, 6000)).astype(np.float32)
    bank = [np.random.default_rng(1).standard_normal(3 * 16000).astype(np.float32)]
    for seed in range(20):
        clip, info = sc.degrade(word, bank, np.random.default_rng(seed))
        assert clip.shape == (16000,)
        np.testing.assert_allclose(20 * np.log10(np.abs(clip).max()), info["peak_dbfs"], atol=0.06)
        if "noise" not in info:
            assert np.count_nonzero(clip) <= len(word) + (6400 if "rt60_ms" in info else 0)
