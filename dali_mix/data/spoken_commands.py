"""Spoken Commands: a keyword-spotting data set synthesised here, in the Speech Commands layout.

No speech data set installs from the package registries, so :func:`prepare_spoken_commands`
makes one with Debian's ``espeak-ng`` (installed on first use when missing and root, as
Fashion-MNIST is): the ten core words of Google Speech Commands v2 (:data:`WORDS`), spoken by
every espeak-ng voice *variant* (the speakers: ``m1``, ``f3``, ``klatt2``, ``whisper``, ...),
each take in one of espeak-ng's English accents (:func:`english_accents`: en-gb, en-us,
en-gb-scotland, en-029, ...), at a random speed (words per minute), pitch and amplitude, then
degraded as a recording would be:

* room reverberation (probability :data:`REVERB_PROB`): convolution with a short random impulse
  response, a direct path plus exponentially decaying noise with RT60 in :data:`RT60_RANGE`;
* background noise (probability :data:`NOISE_PROB`): a random segment of one of the generated
  ``_background_noise_`` files at an SNR drawn from :data:`SNR_RANGE_DB`;
* random gain: the clip's peak set to a level drawn from :data:`PEAK_RANGE_DBFS`.

Output, under one cache folder ``ROOT`` (the Speech Commands v2 layout)::

    ROOT/<word>/<speaker>_nohash_<take>.wav   16-bit PCM mono, 16 kHz, exactly 1 s (16000 frames)
    ROOT/validation_list.txt                  "<word>/<file>" per line: the val speakers' clips
    ROOT/testing_list.txt                     the test speakers' clips (every other clip: train)
    ROOT/_background_noise_/*.wav             16 kHz noise files (white, pink, brown, hum, babble)
    ROOT/manifest.json                        the completion marker, written last

The split is **by speaker** (voice variant): a val or test speaker is never heard in training,
so val accuracy measures generalisation to new voices. The word is placed at a random offset
inside the second (a word longer than :data:`MAX_WORD_SECONDS` is cut there, with a fade).

Deterministic: every clip's parameters come from its own generator seeded by ``(seed, clip
index)``, and espeak-ng's output is deterministic, so the same seed and espeak-ng version give the
same bytes whatever the number of workers. Cached and atomic (built in a temporary folder beside
``ROOT``, renamed into place; see :func:`dali_mix.data.fashion_mnist.build_atomically`).
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from dali_mix.data.fashion_mnist import (_can_install, _install_debian_package, build_atomically,
                                         data_home, read_manifest)
from dali_mix.progress import Progress

__all__ = [
    "WORDS", "NOISE_FILES", "SAMPLE_RATE", "SpokenCommandsData", "EspeakNotFoundError",
    "prepare_spoken_commands", "english_accents", "voice_variants", "speaker_split",
]

ESPEAK_PACKAGE = "espeak-ng"
#: The ten core words of Speech Commands v2; sorted, they are the class folders (labels 0..9).
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: Words of Speech Commands' auxiliary set, spoken only in the babble noise (never a core word).
BABBLE_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
                "nine", "seven", "sheila", "six", "tree", "wow", "zero", "one", "three", "two")
NOISE_FILES = ("white_noise.wav", "pink_noise.wav", "brown_noise.wav", "hum.wav", "babble.wav")
SAMPLE_RATE = 16000  # Hz, of every written file
CLIP_FRAMES = SAMPLE_RATE  # 1 s
NOISE_SECONDS = 10.0
MAX_WORD_SECONDS = 0.95
SPEED_RANGE_WPM = (120, 230)  # espeak-ng -s
PITCH_RANGE = (20, 80)  # espeak-ng -p (0..99)
AMPLITUDE_RANGE = (60, 160)  # espeak-ng -a (0..200)
REVERB_PROB, RT60_RANGE = 0.5, (0.08, 0.4)  # s
NOISE_PROB, SNR_RANGE_DB = 0.8, (5.0, 30.0)
PEAK_RANGE_DBFS = (-24.0, -1.0)
VAL_FRACTION = TEST_FRACTION = 0.1  # of the speakers
MANIFEST_FORMAT = "dali-mix/spoken-commands/1"


class EspeakNotFoundError(FileNotFoundError):
    """espeak-ng is not installed (and could not be installed)."""


@dataclass(frozen=True)
class SpokenCommandsData:
    """Where a built Spoken Commands set lives (absolute paths) and what it holds.

    `root` is the Speech Commands folder (`dali_mix.data.audio_sources.resolve_speech_commands` reads
    it); `classes` the sorted words (index = label); `speakers` the split's speaker names.
    """

    root: Path
    classes: list[str]
    num_train: int
    num_val: int
    num_test: int
    speakers: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- espeak-ng


def _espeak() -> str | None:
    return shutil.which("espeak-ng")


def ensure_espeak(install: bool = True) -> str:
    """The espeak-ng executable; installs the Debian package first when missing, `install`,
    root and apt-get is there. Raises EspeakNotFoundError saying how to get it otherwise."""
    exe = _espeak()
    if exe is None and install and _can_install():
        print(f"dali-mix: espeak-ng not found; installing {ESPEAK_PACKAGE}", file=sys.stderr, flush=True)
        try:
            _install_debian_package(ESPEAK_PACKAGE)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise EspeakNotFoundError(f"installing {ESPEAK_PACKAGE} failed ({exc})") from exc
        exe = _espeak()
    if exe is None:
        raise EspeakNotFoundError(
            "espeak-ng is not installed; the spoken-commands data set is synthesised with it. "
            f"Install it with:  sudo apt-get install {ESPEAK_PACKAGE}  (or run as root: dali-mix "
            "installs it itself)")
    return exe


def _espeak_version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"eSpeak NG text-to-speech: (\S+)\s+Data at: (.+)", out)
    if not m:
        raise EspeakNotFoundError(f"{exe} --version printed {out.strip()!r}, not espeak-ng's banner")
    return m.group(1)


def _espeak_data_dir(exe: str) -> Path:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return Path(out.split("Data at:", 1)[1].strip())


def english_accents(exe: str) -> list[str]:
    """espeak-ng's own English voices (language codes such as "en-gb", "en-us", "en-029"),
    sorted; MBROLA voices (``mb/...``, which need the separate mbrola program) are left out."""
    out = subprocess.run([exe, "--voices=en"], capture_output=True, text=True, check=True).stdout
    codes = set()
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[1].startswith("en") and not parts[4].startswith("mb/"):
            codes.add(parts[1])
    return sorted(codes)


def voice_variants(exe: str) -> list[str]:
    """Every espeak-ng voice variant (the files in ``espeak-ng-data/voices/!v``), sorted."""
    folder = _espeak_data_dir(exe) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def _speaker_name(variant: str) -> str:
    """A file-name-safe speaker id: lower case, runs of other characters -> "-"."""
    return re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")


def speaker_split(speakers: list[str], seed: int) -> dict[str, list[str]]:
    """Speakers -> {"train", "validation", "testing"}: a seeded permutation, the first
    round(10 %) validation, the next round(10 %) testing (each at least 1), the rest train."""
    order = np.random.default_rng([seed, 1]).permutation(len(speakers))
    n_val = max(1, round(VAL_FRACTION * len(speakers)))
    n_test = max(1, round(TEST_FRACTION * len(speakers)))
    if len(speakers) < n_val + n_test + 1:
        raise ValueError(f"{len(speakers)} speakers cannot be split into train, validation and testing")
    chosen = [speakers[i] for i in order]
    return {"validation": sorted(chosen[:n_val]), "testing": sorted(chosen[n_val:n_val + n_test]),
            "train": sorted(chosen[n_val + n_test:])}


def synthesise(exe: str, text: str, voice: str, speed: int, pitch: int, amplitude: int) -> np.ndarray:
    """espeak-ng speaking `text` -> float32 mono in [-1, 1] at 16 kHz (resampled from its rate)."""
    proc = subprocess.run([exe, "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch),
                           "-a", str(amplitude), text], capture_output=True, check=False)
    raw = proc.stdout
    if proc.returncode != 0 or len(raw) < 44 or raw[:4] != b"RIFF" or b"data" not in raw[:200]:
        raise RuntimeError(f"espeak-ng -v {voice} {text!r} failed: {proc.stderr.decode(errors='replace').strip()}")
    rate = int.from_bytes(raw[24:28], "little")
    start = raw.index(b"data", 12) + 8
    pcm = np.frombuffer(raw[start:start + (len(raw) - start) // 2 * 2], dtype="<i2").astype(np.float32) / 32768
    g = np.gcd(SAMPLE_RATE, rate)
    return signal.resample_poly(pcm, SAMPLE_RATE // g, rate // g).astype(np.float32)


# --------------------------------------------------------------------------- degradations


def trim_silence(x: np.ndarray, threshold_db: float = -40.0) -> np.ndarray:
    """`x` without its leading and trailing 10 ms frames quieter than `threshold_db` re peak."""
    frame = SAMPLE_RATE // 100
    n = len(x) // frame
    if n == 0 or not np.any(x):
        return x
    rms = np.sqrt(np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > threshold_db)[0]
    return x[loud[0] * frame:(loud[-1] + 1) * frame]


def impulse_response(rng: np.random.Generator) -> np.ndarray:
    """A short random room impulse response: 1 at t=0 (direct path), then exponentially
    decaying Gaussian noise (60 dB decay in RT60 ~ U(RT60_RANGE)) from 1-5 ms on; unit energy."""
    rt60 = rng.uniform(*RT60_RANGE)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.908 * t / rt60) * rng.uniform(0.2, 0.6)
    ir[:int(rng.uniform(0.001, 0.005) * SAMPLE_RATE)] = 0
    ir[0] = 1.0
    return (ir / np.sqrt(np.sum(ir ** 2))).astype(np.float32)


def _peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def degrade(word: np.ndarray, noise_bank: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One 1 s clip (float32, (16000,), peak <= 1) from a trimmed word, and what was done.

    Reverb (REVERB_PROB), placement at a random offset, background noise (NOISE_PROB, random
    file and segment, SNR over the word's active samples), random peak level."""
    info: dict = {}
    max_len = int(MAX_WORD_SECONDS * SAMPLE_RATE)
    if len(word) > max_len:
        word = word[:max_len] * np.concatenate([np.ones(max_len - 320), np.linspace(1, 0, 320)]).astype(np.float32)
        info["cut"] = True
    if rng.random() < REVERB_PROB:
        ir = impulse_response(rng)
        word = signal.fftconvolve(word, ir)[:max_len].astype(np.float32)
        info["rt60_ms"] = round(1000 * len(ir) / SAMPLE_RATE)
    clip = np.zeros(CLIP_FRAMES, np.float32)
    offset = int(rng.integers(0, CLIP_FRAMES - len(word) + 1))
    clip[offset:offset + len(word)] = word
    if rng.random() < NOISE_PROB:
        which = int(rng.integers(len(noise_bank)))
        noise = noise_bank[which]
        start = int(rng.integers(0, len(noise) - CLIP_FRAMES + 1))
        segment = noise[start:start + CLIP_FRAMES]
        snr = rng.uniform(*SNR_RANGE_DB)
        p_word = float(np.mean(word ** 2)) + 1e-12
        p_noise = float(np.mean(segment ** 2)) + 1e-12
        clip = clip + segment * np.float32(np.sqrt(p_word / p_noise / 10 ** (snr / 10)))
        info["noise"], info["snr_db"] = NOISE_FILES[which], round(snr, 1)
    peak_db = rng.uniform(*PEAK_RANGE_DBFS)
    clip *= np.float32(10 ** (peak_db / 20) / max(_peak(clip), 1e-9))
    info["peak_dbfs"] = round(peak_db, 1)
    return clip, info


def make_noise(kind: str, rng: np.random.Generator, exe: str | None = None,
               voices: list[str] | None = None) -> np.ndarray:
    """NOISE_SECONDS of one background-noise kind, float32 with peak 0.5: "white_noise",
    "pink_noise" (1/f power), "brown_noise" (1/f^2), "hum" (50 Hz mains with harmonics over
    faint white noise), "babble" (six overlapping streams of non-core words from random voices)."""
    n = int(NOISE_SECONDS * SAMPLE_RATE)
    if kind in ("white_noise", "pink_noise", "brown_noise"):
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        f[0] = f[1]
        power = {"white_noise": 0, "pink_noise": 1, "brown_noise": 2}[kind]
        x = np.fft.irfft(spectrum / f ** (power / 2), n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        x = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        x = x + 0.05 * rng.standard_normal(n)
    elif kind == "babble":
        x = np.zeros(n)
        for _ in range(6):
            pos = int(rng.integers(0, SAMPLE_RATE // 2))
            while pos < n:
                voice = f"{voices[int(rng.integers(len(voices)))]}"
                words = " ".join(rng.choice(BABBLE_WORDS, size=3))
                w = synthesise(exe, words, voice, int(rng.integers(*SPEED_RANGE_WPM)), int(rng.integers(*PITCH_RANGE)), 100)
                w = w[:n - pos]
                x[pos:pos + len(w)] += w
                pos += len(w) + int(rng.integers(0, SAMPLE_RATE // 4))
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return (0.5 * x / max(np.max(np.abs(x)), 1e-9)).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """float in [-1, 1] -> 16-bit PCM mono WAV at `rate` (values beyond +-1 are clipped)."""
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    path.write_bytes(buf.getvalue())


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM mono WAV -> float32 in [-1, 1)."""
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


# --------------------------------------------------------------------------- the build


@dataclass(frozen=True)
class ClipSpec:
    """One clip to make: its index (seeds its generator), word, speaker variant, take."""

    index: int
    word: str
    variant: str
    speaker: str
    take: int

    @property
    def relpath(self) -> str:
        return f"{self.word}/{self.speaker}_nohash_{self.take}.wav"


_WORKER: dict = {}


def _init_worker(exe: str, accents: list[str], noise_dir: str, seed: int) -> None:
    _WORKER.update(exe=exe, accents=accents, seed=seed,
                   noise=[read_wav(Path(noise_dir) / f) for f in NOISE_FILES])


def _make_clip(spec: ClipSpec, out_dir: str) -> dict:
    """Synthesise, degrade and write one clip; returns its manifest record."""
    w = _WORKER
    rng = np.random.default_rng([w["seed"], 2, spec.index])
    accent = w["accents"][int(rng.integers(len(w["accents"])))]
    speed, pitch = int(rng.integers(*SPEED_RANGE_WPM)), int(rng.integers(*PITCH_RANGE))
    amplitude = int(rng.integers(*AMPLITUDE_RANGE))
    word = trim_silence(synthesise(w["exe"], spec.word, f"{accent}+{spec.variant}", speed, pitch, amplitude))
    if _peak(word) == 0:
        raise RuntimeError(f"espeak-ng gave silence for {spec.word!r} in voice {accent}+{spec.variant}")
    clip, info = degrade(word, w["noise"], rng)
    write_wav(Path(out_dir) / spec.relpath, clip)
    return {"accent": accent, "speed": speed, "pitch": pitch, "amplitude": amplitude, **info}


def _clip_specs(variants: list[str], takes: int) -> list[ClipSpec]:
    specs = []
    for variant in variants:
        for word in WORDS:
            for take in range(takes):
                specs.append(ClipSpec(len(specs), word, variant, _speaker_name(variant), take))
    return specs


def _is_valid(params: dict):
    def check(folder: Path, manifest: dict) -> bool:
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("params") != params:
            return False
        try:
            counts = manifest["per_class"]
            return all(len(os.listdir(folder / w)) == counts[w] for w in WORDS) and all(
                (folder / f).is_file() for f in ("validation_list.txt", "testing_list.txt")) and all(
                (folder / "_background_noise_" / f).is_file() for f in NOISE_FILES)
        except (OSError, KeyError, TypeError):
            return False
    return check


def _result(root: Path, manifest: dict) -> SpokenCommandsData:
    n = manifest["splits"]
    return SpokenCommandsData(root=root, classes=sorted(WORDS), num_train=n["train"], num_val=n["validation"],
                              num_test=n["testing"], speakers=manifest["speakers"])


def default_root(seed: int, takes: int) -> Path:
    """``$DALI_MIX_DATA/spoken-commands`` (seed 0, 4 takes), else ``...-seed<S>-takes<T>``."""
    name = "spoken-commands" if (seed, takes) == (0, 4) else f"spoken-commands-seed{seed}-takes{takes}"
    return data_home() / name


def prepare_spoken_commands(root: str | Path | None = None, *, seed: int = 0, takes: int = 4,
                            workers: int | None = None, install: bool = True,
                            progress: bool = True, variants: list[str] | None = None) -> SpokenCommandsData:
    """Build (or find in the cache) the Spoken Commands set; see the module docstring.

    Args:
        root: output folder (default :func:`default_root`).
        seed: seeds the speaker split and every clip's draws.
        takes: clips per speaker and word (each with its own accent, speed, pitch, amplitude and
            degradations): len(variants) x 10 x takes clips in all (4040 with espeak-ng 1.51's 101
            variants and the default 4).
        workers: processes synthesising clips (default: the number of cores).
        install: install espeak-ng with apt-get when missing and running as root.
        progress: a progress bar on stderr.
        variants: the speakers (espeak-ng variant names); default every variant. For tests.

    Returns: :class:`SpokenCommandsData`; a second call with the same arguments reads only
    ``manifest.json`` (and lists the class folders).
    Raises: EspeakNotFoundError when espeak-ng is missing and cannot be installed; ValueError
    for a bad argument.
    """
    if takes < 1:
        raise ValueError(f"takes must be >= 1, got {takes}")
    target = (Path(root).expanduser() if root is not None else default_root(seed, takes)).absolute()
    exe = ensure_espeak(install)
    all_variants = voice_variants(exe)
    if variants is not None:
        unknown = sorted(set(variants) - set(all_variants))
        if unknown:
            raise ValueError(f"unknown espeak-ng variants {unknown}; espeak-ng has {all_variants}")
        chosen = sorted(variants)
    else:
        chosen = all_variants
    accents = english_accents(exe)
    params = {"seed": seed, "takes": takes, "espeak_ng": _espeak_version(exe), "variants": chosen,
              "accents": accents}
    is_valid = _is_valid(params)
    manifest = read_manifest(target)
    if manifest is not None and is_valid(target, manifest):
        return _result(target, manifest)
    speakers = sorted({_speaker_name(v) for v in chosen})
    if len(speakers) != len(chosen):
        raise ValueError("two espeak-ng variants map to the same speaker name")
    split = speaker_split(speakers, seed)

    def build(tmp: Path) -> dict:
        started = time.perf_counter()
        noise_dir = tmp / "_background_noise_"
        noise_dir.mkdir()
        for k, name in enumerate(NOISE_FILES):
            x = make_noise(name[:-4], np.random.default_rng([seed, 3, k]), exe,
                           [f"{a}+{v}" for a in accents for v in chosen])
            write_wav(noise_dir / name, x)
        for word in WORDS:
            (tmp / word).mkdir()
        specs = _clip_specs(chosen, takes)
        bar = Progress(len(specs), "spoken-commands", enabled=progress, unit="clips", log_every=10.0)
        n_workers = workers or os.cpu_count() or 1
        records = {}
        with ProcessPoolExecutor(n_workers, initializer=_init_worker,
                                 initargs=(exe, accents, str(noise_dir), seed)) as pool:
            for spec, rec in zip(specs, pool.map(_make_clip, specs, [str(tmp)] * len(specs),
                                                 chunksize=16)):
                records[spec.relpath] = rec
                bar.advance()
        bar.close()
        of = {s: name for name, group in split.items() for s in group}
        lists = {"validation": [], "testing": []}
        for spec in specs:
            if of[spec.speaker] in lists:
                lists[of[spec.speaker]].append(spec.relpath)
        for name, lines in lists.items():
            (tmp / f"{name}_list.txt").write_text("".join(f"{p}\n" for p in sorted(lines)))
        counts = {name: sum(1 for s in specs if of[s.speaker] == name) for name in split}
        return {
            "format": MANIFEST_FORMAT, "params": params, "words": list(WORDS),
            "per_class": {w: sum(1 for s in specs if s.word == w) for w in WORDS},
            "splits": counts, "speakers": split, "clips": records,
            "sample_rate": SAMPLE_RATE, "clip_frames": CLIP_FRAMES,
            "build_seconds": round(time.perf_counter() - started, 1), "workers": n_workers,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    manifest = build_atomically(target, build, is_valid)
    return _result(target, manifest)
