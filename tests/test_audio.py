"""Sound: the Speech Commands layout, the audio pipeline (decode, resample, window, log-mel) and
RandomMix on spectrograms, checked by values on tiny WAV files written here with numpy + wave."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

import dali_mix as dm
from dali_mix.data.audio_sources import resolve_speech_commands
from dali_mix.data.check import check_source
from dali_mix.data.sources import Source
from pipelines.audio import AudioFeatures, mix_spectrograms, train_pipeline, val_pipeline

RATE = 16000


def write_wav(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    """float in [-1, 1], (samples,) or (samples, channels) -> 16-bit PCM WAV."""
    x = np.asarray(x, np.float64)
    channels = 1 if x.ndim == 1 else x.shape[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def tone(freq: float, seconds: float, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def folder_source(files: list[Path], labels: list[int], classes=("a", "b")) -> Source:
    return Source("folder", str(files[0].parent), tuple(str(f) for f in files), tuple(labels), tuple(classes),
                  num_samples=len(files), named_classes=True)


def val_features(files, labels, features=AudioFeatures(), classes=("a", "b")) -> np.ndarray:
    """The val pipeline's spectrograms of `files`, (N, 1, mels, frames)."""
    built = val_pipeline(folder_source(files, labels, classes), batch_size=len(files), features=features,
                         num_classes=len(classes))
    assert built.pipe.exec_dynamic is False
    built.pipe.build()
    images, _ = built.pipe.run()
    return np.stack([np.asarray(images[i]) for i in range(len(files))])


def speech_commands(root: Path, per_class: dict[str, int], val: list[str] = (), test: list[str] = ()) -> Path:
    """A tiny Speech Commands folder: class c, clip k = a tone of 300 + 400 * class + 50 * k Hz."""
    for c, (name, n) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            write_wav(root / name / f"spk{k}_nohash_0.wav", tone(300 + 400 * c + 50 * k, 0.6))
    (root / "validation_list.txt").write_text("".join(f"{v}\n" for v in val))
    if test:
        (root / "testing_list.txt").write_text("".join(f"{t}\n" for t in test))
    write_wav(root / "_background_noise_" / "white_noise.wav",
              np.random.default_rng(0).uniform(-0.3, 0.3, 3 * RATE))
    return root


# ------------------------------------------------------------------------ mixing spectrograms
@pytest.mark.parametrize("executor", ["fused", "dali"])
def test_mixed_constant_spectrograms_agree_with_their_soft_targets(executor):
    """Constant spectrograms per class (class k: value k + 1) mixed by RandomMix as the audio
    pipeline mixes them: every sample's mean is lam * v_a + (1 - lam) * v_b, its targets put lam on
    its label and 1 - lam on the partner's (no smoothing); CutMix, ResizeMix and FMix take each
    element from one of the two (no blend), CutMix an exact rectangle in (mel, frame)."""
    f = AudioFeatures(n_mels=40)
    n, (H, W) = 16, f.shape
    labels = [i % 10 for i in range(n)]
    images = [np.full((1, H, W), labels[i] + 1.0, np.float32) for i in range(n)]
    recipe = dm.MixRecipe(num_classes=10, label_smoothing=0.0)

    @pipeline_def(batch_size=n, num_threads=2, device_id=None, seed=3)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
        y = fn.external_source(source=lambda: [np.array([v], np.int32) for v in labels], batch=True)
        out = mix_spectrograms(x, y, recipe, f, executor=executor)
        return out.images, out.targets, out.lam, out.method, out.labels_b

    p = pipe()
    p.build()
    seen = set()
    for _ in range(6):
        mixed, targets, lam, method, yb = (np.stack([np.asarray(t[i]) for i in range(n)]) for t in p.run())
        lam, method, yb = lam.reshape(n), method.reshape(n), yb.reshape(n)
        for i in range(n):
            va, vb = labels[i] + 1.0, yb[i] + 1.0
            x = mixed[i, 0]
            assert x.shape == (H, W)
            np.testing.assert_allclose(x.mean(), lam[i] * va + (1 - lam[i]) * vb, rtol=1e-5)
            want = np.zeros(10)
            want[labels[i]] += lam[i]
            want[int(yb[i])] += 1 - lam[i]
            np.testing.assert_allclose(targets[i], want, atol=1e-6)
            name = recipe.candidates[method[i]]
            seen.add(name)
            if name != "mixup" and va != vb:
                assert np.all((x == va) | (x == vb))
                np.testing.assert_allclose(np.mean(x == va), lam[i], atol=1e-6)
            if name == "cutmix" and lam[i] < 1:
                rows, cols = np.nonzero(x == vb)
                box = x[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
                assert np.all(box == vb)  # the partner's elements fill exactly their bounding box
    assert seen == set(recipe.candidates)


# ------------------------------------------------------------------------ decode, resample, window
def test_a_tone_at_44k1_and_8k_gives_the_16k_peak_mel_bin(tmp_path):
    """One 1 kHz tone written at 16, 44.1 and 8 kHz: after resampling, every spectrogram peaks in
    the same mel band, in every frame that holds the tone."""
    files = [write_wav(tmp_path / f"t{r}.wav", tone(1000, 1.0, r), r) for r in (16000, 44100, 8000)]
    spec = val_features(files, [0, 0, 0])
    peaks = spec[:, 0, :, 5:-5].argmax(axis=1)  # (3, frames): the loudest band of each frame
    ref = np.bincount(peaks[0]).argmax()
    assert np.all(peaks == ref)
    low = val_features([write_wav(tmp_path / "low.wav", tone(500, 1.0))], [0])[0, 0, :, 50].argmax()
    assert low < ref  # the band does follow the frequency


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    """A stereo file (a tone on the left, silence on the right) gives the spectrogram of the mono
    file holding the channel mean (half the tone): the pipeline's documented downmix."""
    left = tone(1500, 1.0)
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1))
    mono = write_wav(tmp_path / "mono.wav", left / 2)
    a, b = val_features([stereo, mono], [0, 0])
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_long_clip_is_centre_cropped_and_short_clip_centre_padded_in_val(tmp_path):
    """3 s = 1 s of 500 Hz, 1 s of 2 kHz, 1 s of 500 Hz: the val window (centre second) holds only
    the 2 kHz tone. A 0.5 s tone is centred in zeros: its first and last frames are silence (the
    spectrogram's floor), the middle ones are not."""
    long = write_wav(tmp_path / "long.wav", np.concatenate([tone(500, 1), tone(2000, 1), tone(500, 1)]))
    ref = write_wav(tmp_path / "ref.wav", tone(2000, 1))
    short = write_wav(tmp_path / "short.wav", tone(1000, 0.5))
    a, b, c = val_features([long, ref, short], [0, 0, 0])
    assert np.all(a[0, :, 5:-5].argmax(axis=0) == b[0, :, 5:-5].argmax(axis=0))
    floor = c.min()
    assert np.all(c[0, :, :20] == floor) and np.all(c[0, :, -20:] == floor)
    assert np.all(c[0, :, 35:65].max(axis=0) > floor + 1)


def test_train_windows_are_one_second_of_the_clip_with_noise_off(tmp_path):
    """Training with no noise and no shift: a 3 s clip of one tone and a 0.4 s clip each give a
    (1, 40, 101) spectrogram peaking at the tone's band (a crop / a padding of the clip, never an
    empty window)."""
    files = [write_wav(tmp_path / "a.wav", tone(1000, 3.0)), write_wav(tmp_path / "b.wav", tone(1000, 0.4))]
    ref = val_features([write_wav(tmp_path / "r.wav", tone(1000, 1.0))], [0])[0, 0, :, 50].argmax()
    built = train_pipeline(folder_source(files, [0, 1]), batch_size=2, noise_prob=0.0, shift_seconds=0.0,
                           num_classes=2)
    assert built.pipe.exec_dynamic is False  # CPU graphs on DALI's legacy executor (pipelines.audio.exec_dynamic)
    built.pipe.build()
    for _ in range(3):
        images, labels = built.pipe.run()
        for i in range(2):
            frames = (101, 40)[int(np.asarray(labels[i]).ravel()[0])]  # frames holding the tone: all, or 0.4 s
            x = np.asarray(images[i])[0]
            assert x.shape == (40, 101)
            sounding = x.max(axis=0) > x.min() + 1
            assert abs(int(sounding.sum()) - frames) <= 3
            assert np.mean(x[:, sounding].argmax(axis=0) == ref) >= 0.9  # onset frames spread


def test_train_window_starts_cover_the_crop_range_plus_the_shift(tmp_path):
    """Training windows of a ramp (sample k holds k + 1, so a window tells its start exactly): a
    clip 400 samples longer than the window starts at whole samples of [0, 400] plus a shift
    of [-160, 160] (0.01 s), one 200 samples shorter at [-200, 0] plus the shift (its window
    begins with zeros): every start in that range, both ends reached, the mean the range's
    centre (the sum of two uniform draws)."""
    from pipelines.audio import decode, window

    f = AudioFeatures()
    T, S = f.clip_samples, 160
    clips = {"long": T + 400, "short": T - 200}
    files = [write_wav(tmp_path / f"{k}.wav", (np.arange(n) + 1) / 32767) for k, n in clips.items()]

    @pipeline_def(batch_size=8, num_threads=2, device_id=None, seed=4)
    def pipe():
        enc, labels = fn.readers.file(files=[str(p) for p in files] * 4, labels=[0, 1] * 4)
        return window(*decode(enc, f, "cpu"), f, train=True, shift_seconds=S / RATE), labels

    p = pipe()
    p.build()
    starts = {0: [], 1: []}
    for _ in range(64):
        windows, labels = p.run()
        for i in range(8):
            v = np.asarray(windows[i], np.float64) * 32768  # the ramp's values, k + 1 (0: padding)
            np.testing.assert_array_equal(v, np.rint(v))
            first = int(np.flatnonzero(v)[0])
            start = int(v[first]) - 1 - first  # sample index at the window's first position
            label = int(np.asarray(labels[i]).ravel()[0])
            k = np.arange(T) + start  # the clip's sample at each window position, zeros outside it
            np.testing.assert_array_equal(v, np.where((k >= 0) & (k < list(clips.values())[label]), k + 1, 0))
            starts[label].append(start)
    sd = np.sqrt(((401 ** 2 - 1) + (2 * S + 1) ** 2 - 1) / 12) / np.sqrt(256)  # of the mean of 256 starts
    for label, (low, high) in {0: (0 - S, 400 + S), 1: (-200 - S, 0 + S)}.items():
        x = np.array(starts[label])
        assert low <= x.min() < low + 60 and high - 60 < x.max() <= high
        assert abs(x.mean() - (low + high) / 2) < 4 * sd


@pytest.mark.parametrize("snr", [0.0, 12.5])
def test_background_noise_is_added_at_the_drawn_snr(tmp_path, snr):
    """add_noise with probability 1 and an SNR range of one value: the added signal (output minus
    the clean window) has exactly that SNR against the clean window; with probability 0 the
    window is unchanged."""
    from pipelines.audio import NoiseBank, add_noise, decode, noise_windows, window

    f = AudioFeatures()
    clip = write_wav(tmp_path / "t.wav", tone(1000, 1.3))
    noise = write_wav(tmp_path / "n.wav", np.random.default_rng(1).uniform(-0.5, 0.5, 2 * RATE))
    bank = NoiseBank.build([noise], f, cache_dir=tmp_path / "banks")

    @pipeline_def(batch_size=4, num_threads=2, device_id=None, seed=2)
    def pipe():
        enc, _ = fn.readers.file(files=[str(clip)] * 4)
        clean = window(*decode(enc, f, "cpu"), f, train=False)
        segment = noise_windows(bank, name="N")
        noisy = add_noise(clean, segment, prob=1.0, snr_db=(snr, snr))
        same = add_noise(clean, segment, prob=0.0, snr_db=(snr, snr))
        return clean, noisy, same

    p = pipe()
    p.build()
    for _ in range(2):
        clean, noisy, same = (np.stack([np.asarray(t[i]) for i in range(4)]) for t in p.run())
        added = noisy - clean
        measured = 10 * np.log10(np.mean(clean ** 2, axis=1) / np.mean(added ** 2, axis=1))
        np.testing.assert_allclose(measured, snr, atol=0.01)
        np.testing.assert_array_equal(same, clean)
        assert np.all(np.std(added, axis=1) > 0)


def test_noise_bank_holds_every_file_decoded_and_windows_are_its_slices(tmp_path, monkeypatch):
    """The bank: each noise file as the pipelines decode it (an 8 kHz file resampled to 16 kHz),
    then a clip of zeros; cached (a second build decodes nothing, a changed file is decoded
    again). The graph's windows: each one a clip-long slice of one file starting in
    [0, L - T] (a file shorter than a clip: the whole file, then zeros), both files drawn, the
    starts spread over the file."""
    import os

    import pipelines.audio as audio
    from pipelines.audio import NoiseBank, decode_files, noise_windows

    f = AudioFeatures()
    rng = np.random.default_rng(3)
    short = write_wav(tmp_path / "short.wav", rng.uniform(-0.5, 0.5, 2400), 8000)  # 0.3 s at 8 kHz
    long_ = write_wav(tmp_path / "long.wav", rng.uniform(-0.5, 0.5, int(2.5 * RATE)))
    bank = NoiseBank.build([short, long_], f, cache_dir=tmp_path / "banks")
    a, b = decode_files([str(short), str(long_)], f)
    assert len(a) == 4800 and len(b) == 40000
    assert bank.lengths == (4800, 40000) and bank.starts == (0, 4800 + RATE)
    T = f.clip_samples
    np.testing.assert_array_equal(np.load(bank.path), np.concatenate([a, np.zeros(T), b, np.zeros(T)]))

    def no_decoding(*_a, **_k):
        raise AssertionError("decoded although cached")
    monkeypatch.setattr(audio, "decode_files", no_decoding)
    assert NoiseBank.build([short, long_], f, cache_dir=tmp_path / "banks").path == bank.path
    monkeypatch.undo()
    os.utime(long_, ns=(1, 1))
    assert NoiseBank.build([short, long_], f, cache_dir=tmp_path / "banks").path != bank.path

    @pipeline_def(batch_size=32, num_threads=2, device_id=None, seed=5)
    def pipe():
        return noise_windows(bank, name="N")

    p = pipe()
    p.build()
    starts, shorts = [], 0
    for _ in range(8):
        (out,) = p.run()
        for i in range(32):
            w = np.asarray(out[i])
            assert w.shape == (T,)
            if np.array_equal(w, np.concatenate([a, np.zeros(T - len(a), np.float32)])):
                shorts += 1
                continue
            candidates = [s for s in np.flatnonzero(b[:40000 - T + 1] == w[0]) if np.array_equal(b[s:s + T], w)]
            assert candidates, "a window that is no slice of a noise file"
            starts.append(candidates[0])
    assert 256 * 0.35 < shorts < 256 * 0.65 and len(starts) + shorts == 256
    assert min(starts) < 0.1 * (40000 - T) and max(starts) > 0.9 * (40000 - T)


def test_an_empty_noise_file_is_refused_naming_it(tmp_path):
    from pipelines.audio import NoiseBank

    empty = write_wav(tmp_path / "silence.wav", np.zeros(0))
    with pytest.raises(RuntimeError, match=r"silence\.wav decodes to no samples"):
        NoiseBank.build([empty], AudioFeatures(), cache_dir=tmp_path / "banks")


# ------------------------------------------------------------------------ bad input
def test_unreadable_audio_stops_the_pipeline_and_check_data_names_it(tmp_path):
    """A .wav of garbage bytes and an empty (0-sample) WAV: the pipeline raises on the garbage;
    check-data reports both by path, and notes stereo, other rates and long clips."""
    root = speech_commands(tmp_path / "sc", {"a": 3, "b": 3}, val=["a/spk0_nohash_0.wav", "b/spk0_nohash_0.wav"])
    (root / "a" / "broken.wav").write_bytes(b"RIFF not really a wave file" * 10)
    write_wav(root / "b" / "empty.wav", np.zeros(0))
    (root / "b" / "zero.wav").write_bytes(b"")
    write_wav(root / "a" / "stereo.wav", np.stack([tone(700, 0.5), tone(700, 0.5)], axis=1))
    write_wav(root / "b" / "slow.wav", tone(700, 2.0, 8000), 8000)
    report = check_source(str(root), progress=False, workers=2)
    bad = {Path(p).name: why for p, why in report.bad}
    assert set(bad) == {"broken.wav", "empty.wav", "zero.wav"}
    assert "not a readable WAV" in bad["broken.wav"] and "0 samples" in bad["empty.wav"]
    assert "zero-byte" in bad["zero.wav"]
    notes = {k: sorted(Path(p).name for p in v) for k, v in report.notes.items()}
    assert notes["multichannel_audio"] == ["stereo.wav"]
    assert notes["other_sample_rate"] == ["slow.wav"] and notes["longer_than_clip"] == ["slow.wav"]
    assert report.class_counts == {"a": 4, "b": 4} and not report.ok
    splits = resolve_speech_commands(root)
    built = val_pipeline(Source("folder", str(root), (str(root / "a" / "broken.wav"),), (0,), ("a", "b"),
                                num_samples=1, named_classes=True), batch_size=1, num_classes=2)
    built.pipe.build()
    with pytest.raises(RuntimeError, match="(?i)decod|audio"):
        built.pipe.run()
    assert splits.train.num_samples == len(splits.train.files)


@pytest.mark.parametrize("check", ["plugin", "python"])
def test_an_empty_clip_stops_the_pipeline_naming_the_file(tmp_path, monkeypatch, check):
    """A valid WAV with no samples would be an all-zero spectrogram: the pipeline refuses it,
    naming the file, in validation and in training; by the plugin's operator, and by the
    Python check that replaces it where the plugin cannot be built."""
    import types

    import pipelines.audio as audio

    if check == "python":
        monkeypatch.setattr(audio, "native", types.SimpleNamespace(available=lambda: (False, "no plugin")))
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0))
    good = write_wav(tmp_path / "good.wav", tone(1000, 1.0))
    with pytest.raises(RuntimeError, match=r"empty\.wav decodes to no samples"):
        val_features([good, empty], [0, 1])
    built = train_pipeline(folder_source([good, empty], [0, 1]), batch_size=2, num_classes=2,
                           recipe=dm.MixRecipe(num_classes=2))
    built.pipe.build()
    with pytest.raises(RuntimeError, match=r"empty\.wav decodes to no samples"):
        built.pipe.run()


def test_check_data_decodes_with_dali_what_wave_cannot_judge(tmp_path):
    """A .flac file of garbage bytes is not judged by `wave`: DALI's audio decoder rejects it and
    check-data names it."""
    root = speech_commands(tmp_path / "sc", {"a": 2, "b": 2}, val=["a/spk0_nohash_0.wav"])
    (root / "b" / "junk.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    report = check_source(str(root), progress=False, workers=2)
    assert [(Path(p).name, "DALI" in why) for p, why in report.bad] == [("junk.flac", True)]


def test_empty_class_folder_and_bad_lists_are_errors(tmp_path):
    """A class folder without audio, a list naming a file that is not a clip, no
    validation_list.txt: each a ValueError naming the cause."""
    root = speech_commands(tmp_path / "sc", {"a": 2, "b": 2}, val=["a/spk0_nohash_0.wav"])
    (root / "c").mkdir()
    (root / "c" / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match=r"class folder .*/c' holds no audio files"):
        resolve_speech_commands(root)
    (root / "c" / "notes.txt").unlink()
    (root / "c").rmdir()
    (root / "validation_list.txt").write_text("a/spk0_nohash_0.wav\na/missing.wav\n")
    with pytest.raises(ValueError, match=r"validation_list.txt:2: 'a/missing.wav' is not an audio file"):
        resolve_speech_commands(root)
    (root / "validation_list.txt").unlink()
    with pytest.raises(ValueError, match="no validation_list.txt"):
        resolve_speech_commands(root)


def test_splits_follow_the_lists_and_skip_noise_and_hidden(tmp_path):
    """Train = every clip not in a list; the noise folder and hidden files are not classes or
    clips; labels are the sorted class folders."""
    root = speech_commands(tmp_path / "sc", {"go": 3, "no": 3}, val=["go/spk1_nohash_0.wav"],
                           test=["no/spk2_nohash_0.wav"])
    (root / "go" / ".hidden.wav").write_bytes(b"x")
    s = resolve_speech_commands(root)
    assert s.classes == ("go", "no")
    names = lambda src: sorted((Path(f).parent.name, Path(f).name, lab) for f, lab in zip(src.files, src.labels))
    assert names(s.val) == [("go", "spk1_nohash_0.wav", 0)]
    assert names(s.test) == [("no", "spk2_nohash_0.wav", 1)]
    assert len(s.train.files) == 4 and ("go", "spk1_nohash_0.wav", 0) not in names(s.train)
    assert [Path(p).name for p in s.noise_files] == ["white_noise.wav"]
