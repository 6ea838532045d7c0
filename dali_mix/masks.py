"""FMix masks: low-frequency Fourier images stored as pixel ranks, in a bank per epoch.

Harris et al., "FMix" (ecs-vlc/FMix `fmix.py`): a random spectrum scaled by
1 / max(f, 1/max(H, W)) ** decay_power, inverse FFT; the binary mask keeps the top lam*N pixels.
The spectrum is the official code's by default (a real one: point-symmetric masks with more,
thinner regions, those behind the published results) or the paper's complex one
(`spectrum="paper"`, a recipe's `fmix_spectrum`); see `low_frequency_images`. Binarising needs
a sort; sorting per draw would be the slow part, so the bank stores each grey image's *ranks*
(0 = brightest pixel, uint16 when H*W <= 65536, else int32) once, and binarising is one
comparison, `ranks < k`: in the fused CPU operator (`dali_mix.native`) or, for DALI's
operators, in numpy (`dali_mix.execute.fmix_runs`, which turns the mask into paste runs). The
planner (`dali_mix.plan.MixPlanner`) draws which mask, k and the flips.

The same seed gives the same bank on every machine: the Gaussian noise is numpy's (its bits do
not depend on the CPU, unlike `torch.randn`'s, which follow torch's CPU dispatch), the inverse
FFT runs in float64 and its images are rounded to float32, which absorbs the last-bit
differences of FFT libraries and CPUs (and makes the official spectrum's point-symmetric pixel
pairs exactly equal), and equal values are ranked in raster order (a stable sort).

Bank: `bank_size` rank images of (H, W, 1), made on the CPU (or on `device`, cuFFT on a GPU),
regenerated in a background thread from (seed, bank index), so a run is reproducible and a
resumed run gets the same masks. A new bank comes at an epoch boundary once the current one has
served at least `min_refresh_batches` batches (default 1000): every epoch on ImageNet, every few
epochs on small data sets, so that making banks never costs more than make_bank / 1000 per
batch. Memory: a bank holds bank_size * H * W ranks of 2 bytes (uint16; 4 bytes, int32, when
H * W > 65536), and two banks live while the next one is made. Making a bank needs, besides
the new bank, about 48 bytes per pixel for `MAKE_CHUNK` (32) images at a time (float64 noise
and images, complex128 spectrum, sort indices).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from dali_mix.draws import size_hw
from dali_mix.schedule import BatchClock

MAKE_CHUNK = 32
"""Rank images made per torch call in `FMixMaskBank.make_bank` (bounds its transient memory)."""


SPECTRA = ("official", "paper")


def fft_frequencies(h: int, w: int, spectrum: str = "paper") -> torch.Tensor:
    """Magnitudes |f| (cycles per pixel) of the sample frequencies of an (h, w) real FFT grid,
    float32, shape (h, w // 2 + 1). With `spectrum="official"`, ecs-vlc/FMix `fftfreqnd`'s
    grid: (h, w // 2 + 2) for an odd w (one extra, negative x frequency)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    width = w // 2 + 1 + (w % 2 if spectrum == "official" else 0)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :width].abs()
    return torch.sqrt(fx * fx + fy * fy).float()


def low_frequency_images(n: int, h: int, w: int, decay_power: float = 3.0, *,
                         rng: np.random.Generator | None = None, device: str = "cpu",
                         spectrum: str = "official") -> torch.Tensor:
    """`n` real low-frequency images, (n, h, w) float32 on `device`, zero mean and unit max-abs
    (the ranks, all that the masks use, do not depend on this normalisation). The noise is
    drawn from `rng` (a fresh unseeded one when None) in float64; the spectrum and the inverse
    FFT are float64 on `device`, and the images are rounded to float32 at the end (see the
    module docstring: the same bits on every CPU).

    Both spectra draw standard Gaussian noise scaled by 1 / max(|f|, 1/max(h, w)) ** decay_power
    and take the inverse real FFT:

    * "official": ecs-vlc/FMix `make_low_freq_image` as published. `get_spectrum` draws
      (h, F, 2) Gaussians (F = `fft_frequencies(..., "official")` columns), scaled per frequency,
      and the reshape to (h, 2F) hands `irfftn` a *real* array: x-frequency column j holds the
      real (j even) or imaginary (j odd) draw of frequency j // 2, truncated to w // 2 + 1
      columns. A real spectrum gives point-symmetric images (m(y, x) = m(-y, -x) modulo the
      size), and the x axis gets twice the power at high frequencies: masks with more, thinner
      regions (at 32x32 about 5.5 connected regions and 0.12 boundary edges per pixel). The
      published FMix and RandomMix results come from these masks.
    * "paper": the formula of the paper, a complex spectrum (independent real and imaginary
      parts at every frequency): isotropic, no symmetry (at 32x32 about 3.7 regions and 0.077
      boundary edges per pixel).
    """
    if spectrum not in SPECTRA:
        raise ValueError(f"fmix_spectrum must be one of {SPECTRA}, got {spectrum!r}")
    rng = np.random.default_rng() if rng is None else rng
    freqs = fft_frequencies(h, w, spectrum).double().to(device)
    scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power
    if spectrum == "official":
        noise = torch.from_numpy(rng.standard_normal((n,) + tuple(freqs.shape) + (2,))).to(device)
        spec = (noise * scale[..., None]).reshape(n, h, -1)[:, :, : w // 2 + 1]
        spec = torch.complex(spec, torch.zeros_like(spec))
    else:
        noise = torch.from_numpy(rng.standard_normal((n, 2) + tuple(freqs.shape))).to(device)
        spec = torch.complex(noise[:, 0], noise[:, 1]) * scale
    img = torch.fft.irfft2(spec, s=(h, w))
    img = img - img.mean(dim=(1, 2), keepdim=True)
    return (img / img.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)).float()


def rank_dtype(h: int, w: int) -> type:
    """The dtype of the ranks of (h, w) masks: uint16 when h*w <= 65536, else int32."""
    return np.uint16 if h * w <= 65536 else np.int32


def pixel_ranks(images: torch.Tensor) -> np.ndarray:
    """Rank of every pixel within its image, 0 = largest value: (n, h, w) -> (n, h, w, 1) numpy,
    uint16 when h*w <= 65536 else int32; equal values are ranked in raster order (a stable
    sort), so the ranks are a function of the values alone. `ranks < k` is then the binary mask
    with the top k pixels set, whose mean is exactly k / (h*w)."""
    n, h, w = images.shape
    order = torch.argsort(images.reshape(n, -1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))
    return ranks.reshape(n, h, w, 1).cpu().numpy().astype(rank_dtype(h, w))


def binary_mask(ranks: np.ndarray, lam: float) -> np.ndarray:
    """Reference binarisation (numpy): top round(lam*N) pixels set. ranks (h, w[, 1]) -> uint8."""
    k = int(round(lam * ranks.size))
    return (ranks < k).astype(np.uint8)


class FMixMaskBank:
    """FMix rank images, `bank(epoch)`: (bank_size, h, w, 1) per epoch, a pure function of
    (seed, bank index); the bank is remade in a background thread (the next bank is prepared
    while the current one is in use) every `refresh_period()` epochs.

    Args:
        size: (h, w) of the masks in pixels (the pipeline's output image size).
        batch_size: samples per batch.
        bank_size: rank images per bank (distinct masks per epoch, before random flips).
        decay_power: FMix decay power (paper default 3).
        spectrum: "official" (ecs-vlc/FMix's masks, the default) or "paper" (the paper's
            complex spectrum); see `low_frequency_images`. A recipe's `fmix_spectrum`.
        seed: base seed.
        refresh: remake the bank (False: one bank for the whole run).
        device: where torch.fft runs ("cpu" or "cuda").
        clock: a `dali_mix.schedule.BatchClock` mapping DALI's run counter to (epoch, step);
            without one, an "epoch" is `refresh_every` batches.
        min_refresh_batches: a new bank only after the current one served at least this many
            batches, at the next epoch boundary (0: every epoch).
    """

    def __init__(self, size, batch_size: int, *, bank_size: int = 256, decay_power: float = 3.0,
                 seed: int = 0, refresh: bool = True, device: str = "cpu", clock=None,
                 refresh_every: int = 1000, min_refresh_batches: int = 1000,
                 spectrum: str = "official"):
        h, w = size_hw(size)
        if h < 1 or w < 1:
            raise ValueError(f"fmix mask size must be positive, got {size!r}")
        if int(bank_size) < 1:
            raise ValueError(f"fmix_bank_size must be >= 1, got {bank_size}")
        if not float(decay_power) > 0:
            raise ValueError(f"fmix_decay_power must be > 0, got {decay_power}")
        if spectrum not in SPECTRA:
            raise ValueError(f"fmix_spectrum must be one of {SPECTRA}, got {spectrum!r}")
        self.spectrum = spectrum
        self.size = (h, w)
        self.batch_size = int(batch_size)
        self.bank_size = int(bank_size)
        self.decay_power = float(decay_power)
        self.seed = int(seed) & 0x7FFFFFFF
        self.refresh = bool(refresh)
        if int(min_refresh_batches) < 0:
            raise ValueError(f"min_refresh_batches must be >= 0, got {min_refresh_batches}")
        self.min_refresh_batches = int(min_refresh_batches)
        self.device = device
        # epochs come from the clock (set by the trainer to the reader's epoch length); a bank
        # used without one is refreshed every `refresh_every` batches
        self.clock = clock if clock is not None else BatchClock(int(refresh_every))
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fmix-bank")
        self._banks: dict[int, Future] = {}

    @classmethod
    def from_recipe(cls, recipe, batch_size: int, *, size=None, seed: int | None = None,
                    **kwargs) -> "FMixMaskBank":
        """The bank a `MixRecipe` asks for: its fmix_size (or `size`, default 224x224),
        fmix_bank_size, fmix_decay_power, fmix_spectrum and seed (or `seed`); `kwargs` go to
        the constructor (clock, device, refresh, ...)."""
        return cls(size or recipe.fmix_size or (224, 224), batch_size,
                   bank_size=recipe.fmix_bank_size, decay_power=recipe.fmix_decay_power,
                   spectrum=recipe.fmix_spectrum,
                   seed=recipe.seed if seed is None else seed, **kwargs)

    def refresh_period(self) -> int:
        """Epochs per bank: the fewest whole epochs of at least `min_refresh_batches` batches (1
        without a clock's epoch length, or when epochs are that long)."""
        runs = self.clock.runs_per_epoch
        if not runs or self.min_refresh_batches <= runs:
            return 1
        return -(-self.min_refresh_batches // int(runs))

    def bank_index(self, epoch: int) -> int:
        """Index of the bank that serves `epoch` (0 without refresh)."""
        return int(epoch) // self.refresh_period() if self.refresh else 0

    def make_bank(self, index: int) -> np.ndarray:
        """Bank number `index`: (bank_size, h, w, 1) ranks, a pure function of (seed, index)
        (without refresh, of the seed). Made `MAKE_CHUNK` images at a time, so the float
        images and sort indices (about 48 bytes per pixel) exist for one chunk only."""
        rng = np.random.default_rng(self.seed * 1_000_003 + (index if self.refresh else 0))
        h, w = self.size
        out = np.empty((self.bank_size, h, w, 1), rank_dtype(h, w))
        with torch.no_grad():
            for start in range(0, self.bank_size, MAKE_CHUNK):
                n = min(MAKE_CHUNK, self.bank_size - start)
                imgs = low_frequency_images(n, h, w, self.decay_power, rng=rng,
                                            device=self.device, spectrum=self.spectrum)
                out[start:start + n] = pixel_ranks(imgs)
        return out

    def bank(self, epoch: int) -> np.ndarray:
        """The bank for `epoch`, waiting for it if needed; starts making the next one."""
        key = self.bank_index(epoch)
        with self._lock:
            for old in [k for k in self._banks if k < key]:
                del self._banks[old]
            if key not in self._banks:
                self._banks[key] = self._pool.submit(self.make_bank, key)
            # prepare the next bank in the background, once epochs are known (a clock
            # with runs_per_epoch); without one there is no next epoch to prepare for
            if self.refresh and self.clock.runs_per_epoch and key + 1 not in self._banks:
                self._banks[key + 1] = self._pool.submit(self.make_bank, key + 1)
            fut = self._banks[key]
        return fut.result()
