"""Keyword spotting: audio files -> log-mel spectrograms -> RandomMix, in one DALI graph.

    splits = dali_mix.data.audio_sources.resolve_speech_commands("/data/speech_commands")
    built = train_pipeline(splits.train, noise_files=splits.noise_files, batch_size=128,
                           recipe=dali_mix.MixRecipe(num_classes=len(splits.classes)))
    loader = dali_mix.torch.Loader(built.pipe, built.output_map, built.reader_name,
                                   num_classes=built.num_classes)

The graph, per clip (`AudioFeatures` holds every length and size):

1. `fn.decoders.audio` (WAV, FLAC, OGG; float32; `downmix=True`: a stereo or multi-channel
   file becomes the mean of its channels), resampling from the file's own rate to
   `sample_rate` (16 kHz) where it differs (`sample_rate=`: DALI's `fn.audio_resample`
   resampler inside the decoder, skipped for files already at the rate);
2. pad or crop to `clip_seconds` (1 s): in training a random window (a shorter clip lands at a
   random offset in zeros, a longer one is cut at a random start), plus a random time shift of
   up to `shift_seconds`; in validation the centre window, no shift;
3. training only, with probability `noise_prob`: add a random window of a random
   background-noise file (`noise_files`, e.g. Speech Commands' `_background_noise_`) at an SNR
   drawn uniformly from `snr_db` (signal and noise power over the whole window); the noise
   files are decoded once, when the pipeline is made, into a cached `NoiseBank` that the graph
   reads each window from (no noise file is decoded per clip);
4. `fn.spectrogram` (power, `window_length` 400 = 25 ms, `window_step` 160 = 10 ms, `nfft` 512,
   centred windows: 101 frames per second) -> `fn.mel_filter_bank` (`n_mels`, 0-8 kHz) ->
   `fn.to_decibels` (10 log10, relative to the clip's maximum, floor -80 dB) -> per-utterance
   normalisation (`fn.normalize`: zero mean and unit variance over the whole spectrogram);
5. training: `dali_mix.random_mix` on the (1, n_mels, frames) float32 CHW "image".

Mixing happens after the dB conversion and normalisation, on exactly what the network sees, as
for images (mixed after normalising): Mixup then blends two standardised log-mel images with
weights lam and 1 - lam, so that each utterance contributes by its weight, not by its loudness
(mixing powers before the log would let the louder clip dominate whatever lam says, and its
label weight would no longer describe the input); CutMix and FMix paste time-frequency regions of
the partner's normalised features, ResizeMix a shrunk (in time and frequency) partner; the
targets are the exact pasted fractions, as for images.

Outputs: train (images (N, 1, n_mels, frames) float32, then `dali_mix.output_names(recipe)`'s
targets; images, labels without a recipe); val (images, labels int32 (N, 1)). `device="gpu"`
runs every operator after the (CPU-only) decoder on the GPU; the graph is otherwise the same.
A CPU graph runs on DALI's legacy executor, a GPU graph on DALI's default (`exec_dynamic`).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import do_not_convert

import dali_mix as dm
from dali_mix import native
from dali_mix.atomic import write_atomic, write_text_atomic
from dali_mix.data.fashion_mnist import data_home
from dali_mix.schedule import BatchClock, MixOffSchedule
from pipelines.classification import BuiltPipeline, _check_common, _source
from pipelines.sources import read


@dataclass(frozen=True)
class AudioFeatures:
    """What every clip becomes: `sample_rate` Hz, `clip_seconds` long, a log-mel spectrogram of
    `n_mels` bands from windows of `window_length` samples every `window_step` samples,
    `nfft`-point FFTs. `frames` = 1 + clip samples // window_step (centred windows)."""

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    n_mels: int = 40
    window_length: int = 400
    window_step: int = 160
    nfft: int = 512

    def __post_init__(self):
        if not (self.sample_rate > 0 and self.clip_seconds > 0 and self.n_mels > 0):
            raise ValueError(f"sample_rate, clip_seconds and n_mels must be > 0, got {self}")
        if not 0 < self.window_length <= self.nfft or self.window_step < 1:
            raise ValueError(f"need 0 < window_length <= nfft and window_step >= 1, got {self}")

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def frames(self) -> int:
        return 1 + self.clip_samples // self.window_step

    @property
    def shape(self) -> tuple[int, int]:
        """(n_mels, frames): the spectrogram "image" size (H, W)."""
        return self.n_mels, self.frames

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("sample_rate", "clip_seconds", "n_mels", "window_length",
                                              "window_step", "nfft")}


def exec_dynamic(device: str) -> bool | None:
    """The `exec_dynamic` of the audio pipelines on `device`: False (DALI's legacy executor,
    each queue slot's buffers allocated once and reused) for a CPU graph, where DALI's default
    dynamic executor allocates every operator's outputs afresh each batch and the small audio
    tensors pay for it (benchmarks/RESULTS.md, "eleventh session"); None (DALI's default) for
    a GPU graph, which was not measured here."""
    return False if device == "cpu" else None


def decode(encoded, features: AudioFeatures, device: str):
    """Encoded file bytes -> (mono float32 (samples,) at `features.sample_rate` on `device`,
    each clip's length (1,) int32 on the CPU).

    Stereo and multi-channel files are downmixed (channel mean). The decoder resamples (DALI's
    `fn.decoders.audio(sample_rate=...)`, the resampler of `fn.audio_resample`) only the files
    whose rate differs: a file already at the rate is not filtered, which saves most of the
    graph's time on such data (an unconditional `fn.audio_resample` filters every clip; see
    benchmarks/RESULTS.md). The decoder runs on the CPU; the rest of the graph on `device`.
    The lengths come from `clip_lengths`, which stops the batch on a clip of no samples; the
    window is cut by them, so nothing downstream runs on an unchecked batch."""
    audio, _ = fn.decoders.audio(encoded, dtype=types.FLOAT, downmix=True, sample_rate=float(features.sample_rate))
    lengths = clip_lengths(audio)
    return (audio.gpu() if device == "gpu" else audio), lengths


@do_not_convert  # plain Python in pipelines with conditionals (AutoGraph)
def clip_lengths(audio):
    """Each decoded clip's length in samples, (1,) int32 CPU, after the check that no clip has
    zero samples (an empty file would otherwise train as silence: an all-zero spectrogram): a
    RuntimeError names the file (the clip's `source_info`). `audio`: CPU clips (samples,).
    The plugin's `fn.dali_mix.clip_length` (C++, no Python per batch) where it is available,
    else the same check in Python (`fn.python_function`, once per batch)."""
    if native.available()[0]:
        return native.clip_length(audio)
    return fn.python_function(audio.shape(dtype=types.INT32, device="cpu"), fn.get_property(audio, key="source_info"),
                              function=_checked_lengths, batch_processing=True, num_outputs=1)


def _checked_lengths(shapes, infos):
    """`clip_lengths` in Python: the batch's (1,) int32 lengths, or ValueError naming the first
    file of no samples."""
    for shape, info in zip(shapes, infos):
        if int(np.asarray(shape).reshape(-1)[0]) == 0:
            name = bytes(np.asarray(info, np.uint8)).decode(errors="replace") or "(unnamed)"
            raise ValueError(f"audio file {name} decodes to no samples (an empty clip); remove it, or list "
                             "such files with `dali-mix check-data`")
    return [np.asarray(shape, np.int32).reshape(1) for shape in shapes]


def window(audio, lengths, features: AudioFeatures, *, train: bool, shift_seconds: float = 0.0):
    """The clip's `clip_samples` (T) window, zero-padded where it runs off the clip (`lengths`:
    `decode`'s, L per clip): in training a start uniform over the whole samples of
    [min(0, L - T), max(0, L - T)] (`fn.roi_random_crop`: the window inside a longer clip, a
    shorter clip inside the window) plus a shift uniform over the whole samples of
    +-shift_seconds; in validation the centre, start (L - T) / 2 rounded toward zero."""
    total = features.clip_samples
    if train:
        start = fn.roi_random_crop(crop_shape=[total], roi_start=[0], roi_end=lengths)  # int64
        shift = int(round(shift_seconds * features.sample_rate))
        if shift > 0:
            start = start + fn.random.uniform(values=[float(v) for v in range(-shift, shift + 1)], shape=[1],
                                              dtype=types.INT32)
        start = fn.cast(start, dtype=types.INT32)
    else:
        start = (lengths - total) // 2
    return fn.slice(audio, start=start, shape=[total], axes=[0], out_of_bounds_policy="pad", fill_values=0.0)


class NoiseBank:
    """Background-noise files decoded once into one float32 array, from which `noise_windows`
    reads each clip's window in the graph (`fn.readers.numpy` with a region of interest), so
    that no noise file is read or decoded whole per clip.

    The bank is a (total,) float32 .npy: file k (decoded by `decode`: mono, resampled to
    `features.sample_rate`) at samples [starts[k], starts[k] + lengths[k]), followed by
    `features.clip_samples` zeros, so that a window of a file shorter than a clip reads the
    file and then zeros. Built by `NoiseBank.build` on first use and cached in
    `$DALI_MIX_DATA/noise-banks` (default ~/.cache/dali-mix/noise-banks; where that folder is
    not writable, as a container's read-only /data, in the temp folder), keyed by the files'
    paths, sizes and modification times and the features' rate and clip length; written
    atomically, so concurrent builders and killed runs leave no partial bank. A noise file that
    cannot be decoded, or decodes to no samples, raises naming it when the bank is built."""

    VERSION = 2  # 2: the .json holds the lengths only

    def __init__(self, path: str, files: tuple, lengths: tuple, clip_samples: int):
        self.path, self.files, self.clip_samples = str(path), tuple(files), int(clip_samples)
        self.lengths = tuple(int(v) for v in lengths)
        if not (len(self.files) == len(self.lengths) > 0):
            raise ValueError("a NoiseBank needs one length per file, and at least one file")
        ends = np.cumsum([n + self.clip_samples for n in self.lengths])
        self.starts = tuple(int(e) for e in np.concatenate([[0], ends[:-1]]))
        self.size = int(ends[-1])  # samples in the bank, the zeros after each file included
        if self.size >= 2 ** 31:
            raise ValueError(f"the noise files make {self.size} samples, more than a bank of int32 positions "
                             "holds; use fewer or shorter noise files")

    @classmethod
    def build(cls, noise_files, features: AudioFeatures, cache_dir=None) -> "NoiseBank":
        """The bank of `noise_files` (audio files, any rate, mono or not) for `features`, from
        the cache `cache_dir` (default `$DALI_MIX_NOISE_BANKS` when set, else
        `$DALI_MIX_DATA/noise-banks`) or decoded now."""
        files = tuple(os.path.abspath(str(f)) for f in noise_files)
        if not files:
            raise ValueError("NoiseBank.build needs at least one noise file")
        key = [cls.VERSION, features.sample_rate, features.clip_samples]
        for f in files:
            st = os.stat(f)  # a missing file raises FileNotFoundError naming it
            key.append([f, st.st_size, st.st_mtime_ns])
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]
        if cache_dir is None and os.environ.get("DALI_MIX_NOISE_BANKS"):
            cache_dir = os.environ["DALI_MIX_NOISE_BANKS"]
        folders = [Path(cache_dir)] if cache_dir is not None else [
            data_home() / "noise-banks", Path(tempfile.gettempdir()) / f"dali-mix-noise-banks-{os.getuid()}"]
        for folder in folders:
            bank = cls._cached(folder / digest, files, features)
            if bank is not None:
                return bank
        decoded = decode_files(files, features)
        pad = np.zeros(features.clip_samples, np.float32)
        lengths = [len(x) for x in decoded]
        samples = np.concatenate([part for x in decoded for part in (x, pad)])
        for folder in folders[:-1]:
            try:
                return cls._store(folder / digest, samples, files, lengths, features)
            except OSError:  # a read-only data folder (a container's /data): the next folder
                pass
        return cls._store(folders[-1] / digest, samples, files, lengths, features)

    @classmethod
    def _store(cls, stem: Path, samples: np.ndarray, files: tuple, lengths: list,
               features: AudioFeatures) -> "NoiseBank":
        """Write the bank's samples to `stem`.npy and the files' lengths to `stem`.json, atomically."""
        bank = cls(str(stem.with_suffix(".npy")), files, lengths, features.clip_samples)  # checks the size
        write_atomic(bank.path, lambda f: np.save(f, samples))
        write_text_atomic(stem.with_suffix(".json"), json.dumps({"lengths": lengths}))
        return bank

    @classmethod
    def _cached(cls, stem: Path, files: tuple, features: AudioFeatures) -> "NoiseBank | None":
        """The bank stored at `stem`.npy / .json, or None when there is none (or an unusable one)."""
        npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
        try:
            bank = cls(str(npy), files, json.loads(meta.read_text())["lengths"], features.clip_samples)
            if np.load(npy, mmap_mode="r").shape == (bank.size,):
                return bank
        except (OSError, ValueError, KeyError):
            pass
        return None


def decode_files(files, features: AudioFeatures) -> list:
    """Each audio file decoded as the pipelines decode it (`decode`: mono float32 at
    `features.sample_rate`), as numpy arrays, in order; a file that decodes to no samples
    raises naming it (`clip_lengths`)."""
    @pipeline_def(batch_size=1, num_threads=1, device_id=None, seed=0)
    def pipe():
        encoded, _ = fn.readers.file(files=list(files), labels=[0] * len(files), name="Files")
        return decode(encoded, features, "cpu")  # the lengths: so that the check runs

    p = pipe()
    p.build()
    return [np.array(p.run()[0][0], dtype=np.float32) for _ in files]


def noise_windows(bank: NoiseBank, name: str):
    """One `bank.clip_samples` (T) window of background noise per sample, float32 (T,), CPU: a
    noise file drawn uniformly, then a start uniform over the whole samples of
    [0, max(L - T, 0)] within it (L its length; a file shorter than T gives the whole file,
    then zeros). `name`: the bank reader's name (unique in the pipeline).

    `fn.random.choice` draws the file's row of the bank's (files, 2) table of start ranges (a
    constant), `fn.random.uniform` the start in it (rounded to the nearest sample) and
    `fn.readers.numpy` reads the window (a region of interest). The table is float32, so that
    the starts are exact while the bank holds fewer than 2^24 samples (17 minutes of noise at
    16 kHz); beyond, a start is rounded to float32 (2^-24 of its position: at most 64 samples
    in a bank of 2^31), so that a window may begin or end that many samples into the zeros
    around its file, never in another file (a file is followed by T zeros)."""
    T = bank.clip_samples
    ranges = np.array([[s - 0.49, s + max(n - T, 0) + 0.49] for s, n in zip(bank.starts, bank.lengths)], np.float32)
    row = fn.random.choice(types.Constant(ranges, device="cpu"))
    start = fn.random.uniform(range=row, shape=[1], dtype=types.INT32)
    return fn.readers.numpy(files=[bank.path], roi_start=start, roi_shape=[T], name=name)


def add_noise(audio, segment, *, prob: float, snr_db: tuple[float, float]):
    """`audio` (T,) plus, with probability `prob` per clip, the noise `segment` (T,)
    (`noise_windows`, on the audio's device) scaled to an SNR ~ U(snr_db) in dB: the noise is
    scaled to the clip's RMS (`fn.normalize` with mean 0: segment / sqrt(mean(segment^2) +
    1e-12); a silent window adds nothing), times 10^(-SNR / 20)."""
    low, high = float(snr_db[0]), float(snr_db[1])
    if low < high:
        factor = dmath.pow(10.0, fn.random.uniform(range=[-high / 20.0, -low / 20.0]))
    else:
        factor = 10.0 ** (-low / 20.0)
    gain = fn.reductions.rms(audio) * factor
    if prob < 1.0:
        gain = gain * fn.random.coin_flip(probability=float(prob), dtype=types.UINT8)
    return audio + fn.normalize(segment, mean=0.0, epsilon=1e-12) * gain


def log_mel(audio, features: AudioFeatures):
    """Mono window (samples,) -> normalised log-mel spectrogram, float32 CHW (1, n_mels, frames)."""
    # time-major ("tf"): DALI then writes each window contiguously, which costs less than the
    # default frequency-major layout's strided writes; one transpose of the small mel image
    # gives (n_mels, frames)
    spec = fn.spectrogram(audio, nfft=features.nfft, window_length=features.window_length,
                          window_step=features.window_step, center_windows=True, power=2, layout="tf")
    mel = fn.mel_filter_bank(spec, sample_rate=float(features.sample_rate), nfilter=features.n_mels,
                             freq_low=0.0, freq_high=features.sample_rate / 2.0)
    db = fn.to_decibels(fn.transpose(mel, perm=[1, 0]), multiplier=10.0, cutoff_db=-80.0)
    norm = fn.normalize(db, epsilon=1e-6)
    return fn.reshape(norm, shape=[1, features.n_mels, features.frames], layout="CHW")


def spectrogram_recipe(recipe: "dm.MixRecipe", features: AudioFeatures) -> "dm.MixRecipe":
    """`recipe` for spectrogram "images": layout CHW, one channel, FMix masks of
    `features.shape`; a recipe whose `fmix_size` is another size is refused."""
    shape = features.shape
    if recipe.fmix_size is not None and tuple(recipe.fmix_size) != shape:
        raise ValueError(f"recipe.fmix_size={tuple(recipe.fmix_size)} but the spectrograms are {shape} "
                         "(n_mels, frames); leave fmix_size unset")
    return recipe.with_(layout="CHW", channels=1, fmix_size=shape)


def mix_spectrograms(images, labels, recipe: "dm.MixRecipe", features: AudioFeatures, **kw) -> "dm.MixResult":
    """Step 5: `dali_mix.random_mix` on (1, n_mels, frames) float32 CHW spectrograms (any
    device) with `spectrogram_recipe(recipe, features)`; `kw`: random_mix's keywords (executor,
    enabled, clock, fmix_bank)."""
    return dm.random_mix(images, labels, spectrogram_recipe(recipe, features), image_size=features.shape, **kw)


def _check_audio(features, noise_prob, snr_db, shift_seconds):
    if not isinstance(features, AudioFeatures):
        raise ValueError(f"features must be an AudioFeatures, got {features!r}")
    if not 0.0 <= noise_prob <= 1.0:
        raise ValueError(f"noise_prob must be in [0, 1], got {noise_prob}")
    if not snr_db[0] <= snr_db[1]:
        raise ValueError(f"snr_db must be (low, high) with low <= high, got {snr_db}")
    if shift_seconds < 0:
        raise ValueError(f"shift_seconds must be >= 0, got {shift_seconds}")


def train_pipeline(data, *, batch_size: int, features: AudioFeatures = AudioFeatures(),
                   noise_files=(), noise_prob: float = 0.8, snr_db=(0.0, 20.0), shift_seconds: float = 0.1,
                   device: str = "cpu", device_id=None, shard_id: int = 0, num_shards: int = 1, seed: int = 0,
                   num_threads: int = 2, recipe: "dm.MixRecipe | None" = None, num_classes: int | None = None,
                   enable_checkpointing: bool = False, checkpoint=None, prefetch_queue_depth: int = 2,
                   reader_name: str = "Reader", mix_off_from_epoch: int | None = None, explain: bool = False,
                   executor: str = "auto", **_image_args) -> BuiltPipeline:
    """The training graph of the module docstring (steps 1-5).

    Args:
        data: a `dali_mix.data.sources.Source` of audio files (a split of
            `dali_mix.data.audio_sources.resolve_speech_commands`).
        features: lengths and sizes of the log-mel spectrogram.
        noise_files: background-noise audio files (any rate, mono or not); none: no noise step.
        noise_prob, snr_db: chance a clip gets noise, and the SNR range in dB.
        shift_seconds: the random time shift range (+-).
        recipe: a MixRecipe or None (no mixing); it is given layout CHW, one channel and the
            spectrogram's FMix size here; a recipe with another `fmix_size` is refused.
        explain: also output "labels_a", "labels_b", "lam", "method" (for `dali-mix preview`).
        The rest: as `pipelines.classification.train_pipeline` (image-only keywords such as
        `image_size` and `crop` are accepted and ignored, so the trainer calls both alike).
    Returns: a BuiltPipeline (pipe unbuilt) whose `clock` the Loader's `runs_per_epoch` must
    be given when FMix or `mix_off_from_epoch` is used.
    """
    _check_common(batch_size, 1, device, shard_id, num_shards, num_threads)
    _check_audio(features, noise_prob, snr_db, shift_seconds)
    source, n_classes = _source(data, num_classes)
    if recipe is not None:
        if recipe.num_classes != n_classes:
            raise ValueError(f"recipe.num_classes={recipe.num_classes} but the data has {n_classes} classes")
        recipe = spectrogram_recipe(recipe, features)
    if explain and recipe is None:
        raise ValueError("explain=True needs a recipe")
    dev_id = (0 if device_id is None else device_id) if device == "gpu" else None
    clock = BatchClock()
    fmix_bank = None
    if recipe is not None and "fmix" in recipe.candidates:
        fmix_bank = dm.FMixMaskBank.from_recipe(recipe, batch_size, seed=recipe.seed + seed, clock=clock)
    bank = NoiseBank.build(noise_files, features) if len(noise_files) and noise_prob > 0 else None

    @pipeline_def(batch_size=int(batch_size), num_threads=num_threads, device_id=dev_id,
                  seed=seed * 1000 + shard_id + 1, enable_checkpointing=enable_checkpointing,
                  prefetch_queue_depth=prefetch_queue_depth, exec_dynamic=exec_dynamic(device))
    def pipe():
        encoded, labels = read(source, train=True, shard_id=shard_id, num_shards=num_shards, seed=seed,
                               name=reader_name)
        audio = window(*decode(encoded, features, device), features, train=True, shift_seconds=shift_seconds)
        if bank is not None:
            segment = noise_windows(bank, name=f"{reader_name}Noise")
            segment = segment.gpu() if device == "gpu" else segment
            audio = add_noise(audio, segment, prob=noise_prob, snr_db=snr_db)
        images = log_mel(audio, features)
        if recipe is None:
            return images, labels
        enabled = MixOffSchedule(batch_size, mix_off_from_epoch, clock) if mix_off_from_epoch is not None else None
        out = mix_spectrograms(images, labels, recipe, features, fmix_bank=fmix_bank, enabled=enabled,
                               clock=clock, executor=executor)
        if explain:
            extra = [n for n in ("labels_a", "labels_b", "lam", "method") if n not in dm.output_names(recipe)]
            return out.outputs() + tuple(getattr(out, n) for n in extra)
        return out.outputs()

    output_map = ["images", "labels"] if recipe is None else dm.output_names(recipe)
    if explain:
        output_map = output_map + [n for n in ("labels_a", "labels_b", "lam", "method") if n not in output_map]
    kw = {} if checkpoint is None else {"checkpoint": checkpoint}
    return BuiltPipeline(pipe(**kw), output_map, reader_name, source, n_classes, recipe, fmix_bank, clock)


def val_pipeline(data, *, batch_size: int, features: AudioFeatures = AudioFeatures(), device: str = "cpu",
                 device_id=None, shard_id: int = 0, num_shards: int = 1, num_threads: int = 2,
                 num_classes: int | None = None, reader_name: str = "Reader", **_image_args) -> BuiltPipeline:
    """The validation graph: decode, resample, centre window, log-mel, normalise; no noise, no
    mixing, no randomness; every clip once per epoch. Outputs (images (N, 1, n_mels, frames)
    float32, labels int32 (N, 1))."""
    _check_common(batch_size, 1, device, shard_id, num_shards, num_threads)
    _check_audio(features, 0.0, (0.0, 0.0), 0.0)
    source, n_classes = _source(data, num_classes)
    dev_id = (0 if device_id is None else device_id) if device == "gpu" else None

    @pipeline_def(batch_size=int(batch_size), num_threads=num_threads, device_id=dev_id, seed=0,
                  exec_dynamic=exec_dynamic(device))
    def pipe():
        encoded, labels = read(source, train=False, shard_id=shard_id, num_shards=num_shards, name=reader_name)
        audio = window(*decode(encoded, features, device), features, train=False)
        return log_mel(audio, features), labels

    return BuiltPipeline(pipe(), ["images", "labels"], reader_name, source, n_classes)
