"""Throughput of the audio pipeline (pipelines/audio.py) with and without RandomMix, and of the
torch DataLoader a user would write instead, measured side by side in one run.

    python -m benchmarks.audio_throughput                     # the spoken-commands train split
    python -m benchmarks.audio_throughput --rounds 5 --batches 20 --json benchmarks/results/audio_throughput.json
    python -m benchmarks.audio_throughput --processes 3       # each contender in 3 processes

Contenders (CPU, batch `--batch-size`, `--threads` DALI threads or DataLoader workers), all on the
same clips with the same steps (decode 16-bit WAV, 1 s window at a random offset with a random
shift of up to 0.1 s, background noise with probability 0.8 at an SNR ~ U(0, 20) dB, power
spectrogram with 400-sample Hann windows every 160 samples and 512-point FFTs, 40 Slaney mel
bands 0-8 kHz, 10 log10 relative to the clip's maximum with a -80 dB floor, per-utterance
normalisation):

    dali-audio-nomix      the audio train pipeline without mixing (the reference)
    dali-audio-randommix  the same + RandomMix per sample (mixup/cutmix/resizemix/fmix)
    dali-audio-randommix-ahead1
                          (only with --only) the same with one plan drawn per background task
                          (`dali_mix.feed.AHEAD = 1`, as before the feed drew them in chunks)
    dali-audio-nomix-dynamic, dali-audio-randommix-dynamic
                          (only with --only) the two DALI contenders on DALI's default dynamic
                          executor instead of the legacy one `pipelines.audio.exec_dynamic` picks
    torch-audio-mixup     torch DataLoader: `wave` + numpy decode, the same window and noise,
                          torch.stft + the same mel matrix (numpy) + dB + normalisation in the
                          workers, then timm's Mixup (mixup 1, cutmix 1, batch mode) on the batch.
                          torchaudio is not installed here; torch.stft with a mel matrix is what
                          torchaudio's MelSpectrogram computes, so this is a fair stand-in. It skips
                          resampling (every clip is already 16 kHz), which DALI's graph always runs.

The harness is `benchmarks.throughput.measure` (every contender in its own subprocess, run
round-robin, idle contenders' prefetching not timed). Reported: median clips/s over rounds, and
the ratios to the reference (median over median, and paired per round); and the CPU time the
contender's process tree spent per batch (each turn's batches, the refill of its prefetch
queue included) with the paired ratio of the reference's CPU time to the contender's: the
clips/s ratio a machine whose cores are all busy would show, and less disturbed than wall
time by other jobs on a shared machine. Then where that CPU time goes: each thread's CPU time
per batch during the timed batches (`benchmarks.throughput.thread_cpu_seconds`): MainThread (the
Loader and the external source's callback), dali-mix-plan_0 (the plan feed drawing plans
ahead), DALI's executor and thread pool threads, the Loader's PrefetchWorker.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import wave

import numpy as np

from benchmarks import throughput

REFERENCE = "dali-audio-nomix"
CONTENDERS = ("dali-audio-nomix", "dali-audio-randommix", "torch-audio-mixup")
EXTRA_CONTENDERS = ("dali-audio-randommix-ahead1", "dali-audio-nomix-dynamic",
                    "dali-audio-randommix-dynamic")  # run only when named in --only
SNR_DB, NOISE_PROB, SHIFT_S = (0.0, 20.0), 0.8, 0.1


def slaney_mel_matrix(n_mels: int, nfft: int, rate: int) -> np.ndarray:
    """(n_mels, nfft // 2 + 1) float32 triangular mel filters on the Slaney mel scale with Slaney
    area normalisation, 0 to rate / 2 (what DALI's mel_filter_bank and librosa use by default)."""
    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27), lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), m * (200.0 / 3))

    freqs = np.linspace(0, rate / 2, nfft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(rate / 2), n_mels + 2))
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def _read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        raw = w.readframes(w.getnframes())
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
        return x.reshape(-1, w.getnchannels()).mean(axis=1)


class TorchAudioSet:
    """The torch peer's Dataset: clip -> (normalised log-mel (1, 40, 101) float32, label)."""

    def __init__(self, files, labels, noise_files, seed=0):
        self.files, self.labels, self.noise_files, self.seed = list(files), list(labels), list(noise_files), seed
        self.noise = None
        self.mel = None

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import torch

        if self.noise is None:  # per worker, once
            self.noise = [_read_wav(f) for f in self.noise_files]
            self.mel = torch.from_numpy(slaney_mel_matrix(40, 512, 16000))
            self.window = torch.hann_window(400)
            self.rng = np.random.default_rng([self.seed, os.getpid()])
        rng, total = self.rng, 16000
        x = _read_wav(self.files[i])
        spare = len(x) - total
        start = int(min(spare, 0) + rng.random() * abs(spare) + rng.uniform(-SHIFT_S, SHIFT_S) * 16000)
        clip = np.zeros(total, np.float32)
        lo, hi = max(start, 0), min(start + total, len(x))
        if hi > lo:
            clip[lo - start:hi - start] = x[lo:hi]
        if self.noise and rng.random() < NOISE_PROB:
            n = self.noise[int(rng.integers(len(self.noise)))]
            k = int(rng.integers(0, max(len(n) - total, 0) + 1))
            seg = np.zeros(total, np.float32)
            seg[:len(n[k:k + total])] = n[k:k + total]
            snr = rng.uniform(*SNR_DB)
            gain = np.sqrt(np.mean(clip ** 2)) / (np.sqrt(np.mean(seg ** 2)) + 1e-9) * 10 ** (-snr / 20)
            clip = clip + seg * np.float32(gain)
        spec = torch.stft(torch.from_numpy(clip), n_fft=512, hop_length=160, win_length=400, window=self.window,
                          center=True, return_complex=True).abs() ** 2
        db = 10 * torch.log10(torch.clamp(self.mel @ spec, min=1e-20))
        db = torch.maximum(db, db.max() - 80.0)
        db = (db - db.mean()) / (db.std(unbiased=False) + 1e-6)
        return db[None], self.labels[i]


def _torch_contender(cfg):
    import torch
    from timm.data import Mixup

    from dali_mix.data.audio_sources import resolve_speech_commands

    splits = resolve_speech_commands(cfg["data"])
    ds = TorchAudioSet(splits.train.files, splits.train.labels, splits.noise_files, cfg["seed"])
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                                         num_workers=cfg["threads"], persistent_workers=True, prefetch_factor=2)
    mixup = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="batch", label_smoothing=0.0,
                  num_classes=len(splits.classes))

    def batches():
        while True:
            for x, y in loader:
                yield mixup(x, y)

    return batches(), 2 * cfg["threads"]


def build_contender(name, cfg):
    """(iterator of (clips, targets-or-labels) torch batches, batches prefetched while idle)."""
    if name == "torch-audio-mixup":
        return _torch_contender(cfg)
    import dali_mix as dm
    from dali_mix.data.audio_sources import resolve_speech_commands
    from dali_mix.torch import Loader
    from pipelines.audio import train_pipeline

    splits = resolve_speech_commands(cfg["data"])
    if name not in CONTENDERS + EXTRA_CONTENDERS:
        raise ValueError(f"unknown contender {name!r}; choose from {CONTENDERS + EXTRA_CONTENDERS}")
    if name.endswith("-dynamic"):
        import pipelines.audio

        # this contender's own process (with --in-process: every contender built after it)
        pipelines.audio.exec_dynamic = lambda device: None
        name = name[:-len("-dynamic")]
    if name == "dali-audio-randommix-ahead1":
        from dali_mix import feed

        feed.AHEAD = 1  # this contender's own process (with --in-process: every contender built after it)
    recipe = None if name == REFERENCE else dm.MixRecipe(num_classes=len(splits.classes))
    built = train_pipeline(splits.train, noise_files=splits.noise_files, noise_prob=NOISE_PROB, snr_db=SNR_DB,
                           shift_seconds=SHIFT_S, batch_size=cfg["batch_size"], recipe=recipe,
                           num_threads=cfg["threads"], seed=cfg["seed"])
    loader = Loader(built.pipe, built.output_map, built.reader_name, num_classes=built.num_classes)
    built.clock.runs_per_epoch = loader.runs_per_epoch
    return throughput._cycle(loader), 2


def run(args) -> int:
    data = data_root(args)
    cfg = {"data": data, "batch_size": args.batch_size, "threads": args.threads, "seed": 0,
           "warmup": args.warmup, "builder": "benchmarks.audio_throughput:build_contender"}
    names = [n for n in CONTENDERS + EXTRA_CONTENDERS if n in args.only.split(",")] if args.only else list(CONTENDERS)
    print(f"audio throughput: {data}, batch {args.batch_size}, {args.threads} threads, "
          f"{args.rounds} rounds x {args.batches} batches, {args.processes} process(es) per contender")
    results = throughput.measure(names, cfg, rounds=args.rounds, batches=args.batches, in_process=args.in_process,
                                 reference=REFERENCE, processes=args.processes)
    report(results, args.json, {k: v for k, v in cfg.items() if k != "builder"}, args)
    return 0


def report(results: dict, json_path, config: dict, args, reference: str = REFERENCE) -> None:
    """Print `results` (`benchmarks.throughput.measure`'s, ratios to `reference`) as a table,
    then each contender's CPU time per batch by thread; write them with `config` to
    `json_path` when given. args: the command line (rounds, batches, processes, threads)."""
    print(f"{'contender':<22} {'clips/s (median)':>16} {'min-max':>13} {'vs ' + reference:>22} "
          f"{'CPU ms/batch (min-max)':>24} {'CPU ratio (paired)':>19}")
    for name, r in results.items():
        ips = r["images_per_s"]
        ratio = cpu = cpu_ratio = ""
        if "ratio_vs_reference" in r:
            ratio = f"{r['ratio_vs_reference']:.3f} (paired {r['ratio_paired']['median']:.3f})"
        if "cpu_ms_per_batch" in r:
            c = r["cpu_ms_per_batch"]
            cpu = f"{c['median']:.1f} ({c['min']:.1f}-{c['max']:.1f})"
        if "cpu_ratio_paired" in r:
            cpu_ratio = f"{r['cpu_ratio_paired']['median']:.3f}"
        print(f"{name:<22} {ips['median']:>16.0f} {ips['min']:>6.0f}-{ips['max']:<6.0f} {ratio:>22} "
              f"{cpu:>24} {cpu_ratio:>19}")
        if "processes" in r:
            print(f"{'':<22} per process (median clips/s): " + ", ".join(f"{v:.0f}" for v in r["processes"]))
    threads = sorted({t for r in results.values() for t in r.get("thread_cpu_ms_per_batch", {})})
    if threads:
        print("CPU ms per batch by thread of each contender's main process (median over rounds; "
              "DataLoader workers are processes, not counted here):")
    for name, r in results.items():
        per = r.get("thread_cpu_ms_per_batch", {})
        if per:
            print(f"  {name:<20} " + ", ".join(f"{t} {per[t]:.2f}" for t in threads if per.get(t, 0) >= 0.005))
    if json_path:
        out = {"config": config, "rounds": args.rounds, "batches": args.batches, "processes": args.processes,
               "machine": throughput.machine_info(args.threads), "contenders": results}
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {json_path}")


def add_arguments(p: argparse.ArgumentParser, *, rounds: int, batches: int, processes: int) -> None:
    """The options of an audio throughput run (data, batch, threads, rounds, batches, warm-up,
    processes, JSON report) on `p`, with these defaults for the run's length."""
    p.add_argument("--data", default=None, help="Speech Commands folder (default: dali-mix data spoken-commands)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--batches", type=int, default=batches)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--processes", type=int, default=processes,
                   help="subprocesses per contender, each run every round (the mean over them is reported: "
                        "one process's speed can stay several percent off for its whole life)")
    p.add_argument("--json", default=None)


def data_root(args) -> str:
    """The folder of `--data`, or the spoken-commands set (built on first use)."""
    if args.data is not None:
        return args.data
    from dali_mix.data.spoken_commands import prepare_spoken_commands

    return str(prepare_spoken_commands().root)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p, rounds=5, batches=20, processes=1)
    p.add_argument("--only", default=None, help="comma-separated contenders")
    p.add_argument("--in-process", action="store_true", help="all contenders in this process (smoke tests)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
