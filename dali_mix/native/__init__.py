"""The fused mix-and-normalise CPU operator, and the audio clip-length check: a C++ DALI plugin,
built on first use and cached.

`fn.dali_mix.mix_normalize` (source: `mix_normalize.cc` beside this file; Python: `mix`, alias
`mix_normalize`, and `normalize` without a plan) does a planned RandomMix batch, and optionally
its normalisation, in one pass over the pixels: per sample, the own image or its Mixup blend
with the partner, the partner's pixels where the FMix mask says, then the plan's paste rows
(a source sample's rectangle written into a destination rectangle, resized by nearest
neighbour where the sizes differ: CutMix, ResizeMix, RICAP, Mosaic); then, with mean and std, `(x - mean) / std`, the
horizontal flip and the output layout (CHW by default), as `fn.crop_mirror_normalize` computes
them. It takes every input users have: uint8 or float32 images, HWC or CHW (the layout is read
from the data at run time and checked against `layout`; the size against `image_size`).
Without normalisation the output keeps the input's type and layout (uint8 stays uint8, a
Mixup blend rounded half away from zero like DALI's cast; float16 on request) and rows that
keep their type and layout are copied, with the partner's pixels written over them. On the CPU
this replaces six to eight DALI operators that each read and write the whole batch
(benchmarks/RESULTS.md). The plan comes as one input, an int32 vector per sample (`pack_plan`:
partner, blend weight, FMix threshold and flips, target weights, paste rows, FMix ranks), so
the external source feeds one output per batch.

Build: g++ (`$CXX`) against DALI's headers (`nvidia.dali.sysconfig`) and the CUDA 12 headers
of the pip packages nvidia-cuda-runtime-cu12, nvidia-cuda-nvcc-cu12 and nvidia-cuda-cccl-cu12
(DALI's headers include cuda_runtime.h; nothing of CUDA is linked or called). About 10 s, once:
the library is cached in `$DALI_MIX_NATIVE_DIR` (default `~/.cache/dali-mix/native`) under a
name keyed on the source, DALI's version and the flags, so a DALI upgrade rebuilds it.
`scripts/install.sh` builds it (`python -m dali_mix.native`); the Docker image ships it built.

The operator is CPU only: on the GPU, `random_mix` runs the same plan with DALI's own operators
(where mixing costs next to nothing).

`fn.dali_mix.clip_length` (source: `clip_length.cc`; Python: `clip_length`): each decoded
clip's length in samples, (1,) int32, stopping the batch with an error naming the clip's file
when it has no samples (`pipelines.audio.clip_lengths`, which checks in Python where the
plugin is not available).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

SOURCES = (Path(__file__).with_name("mix_normalize.cc"), Path(__file__).with_name("clip_length.cc"))
"""The plugin's C++ sources, compiled into one library."""
CXXFLAGS = ["-std=c++17", "-O3", "-fPIC", "-shared", "-fvisibility=hidden"]
_HEADER_PACKAGES = ("nvidia.cuda_runtime", "nvidia.cuda_nvcc", "nvidia.cuda_cccl")

_lock = threading.Lock()
_loaded: Path | None = None
_failure: str | None = None


class NativeBuildError(RuntimeError):
    """The fused operator could not be built or loaded; the message names the cause."""


def build_dir() -> Path:
    """Where built libraries are cached: `$DALI_MIX_NATIVE_DIR` or ~/.cache/dali-mix/native."""
    env = os.environ.get("DALI_MIX_NATIVE_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "dali-mix" / "native"


def _dali_flags() -> tuple[list[str], list[str]]:
    import nvidia.dali.sysconfig as sysconfig
    return list(sysconfig.get_compile_flags()), list(sysconfig.get_link_flags())


def _cuda_includes() -> list[str]:
    """-I flags for the CUDA 12 headers DALI's headers include (from the pip packages, or
    `$CUDA_HOME/include` when they are missing)."""
    dirs = []
    for name in _HEADER_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        inc = Path(list(spec.submodule_search_locations)[0]) / "include"
        if inc.is_dir():
            dirs.append(f"-I{inc}")
    if len(dirs) < len(_HEADER_PACKAGES) and os.environ.get("CUDA_HOME"):
        dirs.append(f"-I{Path(os.environ['CUDA_HOME']) / 'include'}")
    return dirs


def _command(output: Path) -> list[str]:
    compile_flags, link_flags = _dali_flags()
    cxx = os.environ.get("CXX", "g++")
    return [cxx, *CXXFLAGS, *compile_flags, *_cuda_includes(), *map(str, SOURCES), "-o", str(output),
            *link_flags]


def library_path() -> Path:
    """The cached library for this source, DALI version and flags (it may not exist yet). The
    compiler's version is not part of the key, so that a library built where a compiler was
    (an image's build stage) loads where none is; `python -m dali_mix.native --force` rebuilds."""
    import nvidia.dali
    key = hashlib.sha256()
    for source in SOURCES:
        key.update(source.read_bytes())
    key.update(nvidia.dali.__version__.encode())
    key.update(" ".join(CXXFLAGS + [os.environ.get("CXX", "g++")]).encode())
    return build_dir() / f"libdali_mix_native-{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the operator into `library_path()` unless it is there already; returns the path.
    Written to a temporary file and renamed, so concurrent builds (several ranks) and an
    interrupted build never leave a half-written library. Raises NativeBuildError."""
    target = library_path()
    if target.exists() and not force:
        return target
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise NativeBuildError(f"no C++ compiler: {cxx!r} not found (install g++, or set CXX)")
    if not _cuda_includes():
        raise NativeBuildError("no CUDA 12 headers for DALI's headers: install the pip packages "
                               "nvidia-cuda-runtime-cu12 nvidia-cuda-nvcc-cu12 "
                               "nvidia-cuda-cccl-cu12 (dali-mix's dependencies) or set CUDA_HOME")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NativeBuildError(f"cannot create {target.parent} ({e}); set DALI_MIX_NATIVE_DIR "
                               f"to a writable directory") from e
    fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(_command(Path(tmp)), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise NativeBuildError(f"compiling {' + '.join(src.name for src in SOURCES)} failed ({cxx}, exit "
                                   f"{proc.returncode}):\n{tail}")
        # mkstemp made the file 0600 (the linker keeps that, plus x bits): give it the usual
        # mode, so that other users of a shared cache (an image's unprivileged user) can load it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o755 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load() -> Path:
    """Build if needed and load the plugin into DALI (once per process); returns its path.
    Raises NativeBuildError (also on later calls, with the first failure's cause)."""
    global _loaded, _failure
    with _lock:
        if _loaded is not None:
            return _loaded
        if _failure is not None:
            raise NativeBuildError(_failure)
        try:
            path = build()
            from nvidia.dali import plugin_manager
            plugin_manager.load_library(str(path))
        except NativeBuildError as e:
            _failure = str(e)
            raise
        except Exception as e:  # DALI refused the library (e.g. an ABI mismatch)
            _failure = f"loading the fused operator failed: {type(e).__name__}: {e}"
            raise NativeBuildError(_failure) from e
        _loaded = path
        return path


def available() -> tuple[bool, str]:
    """(True, "") when the operator is loaded or can be; else (False, the cause)."""
    try:
        load()
        return True, ""
    except NativeBuildError as e:
        return False, str(e)


_warned: set = set()


def use(fused: bool | None, images) -> bool:
    """Resolve a `fused` choice (None: when available; True: required; False: never) for
    `images` (a DataNode): True when they are on the CPU and the operator is loaded. GPU images:
    False, or ValueError with fused=True (executor='fused'; the operator is CPU only). None and unavailable: warns
    once per cause (RuntimeWarning) and returns False, so the caller builds DALI's operators
    instead; True and unavailable: NativeBuildError."""
    if fused is False:
        return False
    if getattr(images, "device", "cpu") != "cpu":
        if fused:
            raise ValueError("executor='fused' needs CPU images (the fused operator is CPU only); "
                             "got GPU images")
        return False
    ok, why = available()
    if ok:
        return True
    if fused:
        raise NativeBuildError(why)
    if why not in _warned:
        _warned.add(why)
        warnings.warn(f"dali-mix: the fused CPU operator is not available, so the pipeline runs "
                      f"on DALI's operators (slower on the CPU, same results): {why}",
                      RuntimeWarning, stacklevel=3)
    return False


def _floats(values) -> list[float]:
    """One value or a sequence of them, as a list of floats."""
    return [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64))]


def _args(mean, std, mirror, dtype, layout, image_size, output_layout, normalize,
          channels=None) -> dict:
    """The operator's keyword arguments; anything left at None is not passed (the operator's
    defaults then follow the data, see `mix`)."""
    if normalize is None:
        normalize = mean is not None or std is not None
    if normalize and (mean is None or std is None):
        raise ValueError("normalisation needs both mean and std (or normalize=False)")
    kw = {"mirror": mirror, "normalize": bool(normalize)}
    if normalize:
        kw["mean"], kw["std"] = _floats(mean), _floats(std)
    if dtype is not None:
        kw["dtype"] = dtype
    for name, value in (("layout", layout), ("output_layout", output_layout)):
        if value is not None:
            value = str(value)
            if value not in ("HWC", "CHW"):
                raise ValueError(f"{name} must be 'HWC' or 'CHW', got {value!r}")
            kw[name] = value
    if image_size is not None:
        size = [int(v) for v in np.atleast_1d(image_size)]
        if len(size) == 1:
            size = size * 2
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"image_size must be one or two positive ints (H, W), got "
                             f"{image_size!r}")
        kw["image_size"] = size
    if channels is not None:
        if isinstance(channels, bool) or int(channels) != channels or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        kw["channels"] = int(channels)
    return kw


def normalize(images, *, mean=None, std=None, mirror=0, dtype=None, layout=None,
              image_size=None, output_layout=None, normalize=None, channels=None):
    """The operator without a plan (every image may have its own size). With mean and std it
    is `fn.crop_mirror_normalize(images, mean=mean, std=std, mirror=mirror, dtype=dtype,
    output_layout="CHW")` (no crop) for uint8 or float32, HWC or CHW CPU images of 1-4
    channels, in about two thirds of its CPU time on uint8 HWC (benchmarks/RESULTS.md);
    without them only the flip (and `dtype`'s conversion). Arguments as in `mix`."""
    load()
    from nvidia.dali import fn
    return fn.dali_mix.mix_normalize(images, **_args(mean, std, mirror, dtype, layout,
                                                     image_size, output_layout, normalize,
                                                     channels))


PLAN_HEADER = ("perm", "blend", "k", "flip_y", "flip_x", "weight_own", "weight_partner", "rows",
               "mask_words")
"""The header of a sample's packed plan (`pack_plan`), in order; the operator's `PlanField`."""


def mask_words(height: int, width: int) -> int:
    """The int32 words of an (height, width) image's FMix ranks in a packed plan, in the dtype
    of `dali_mix.masks.rank_dtype` (uint16 two per word, int32 one)."""
    from dali_mix.masks import rank_dtype

    pixels = int(height) * int(width)
    return -(-pixels * np.dtype(rank_dtype(height, width)).itemsize // 4)


def pack_plan(perm, blend, rows, mask_params, *, height: int, width: int, ranks=None, mask_of=None,
              dense: bool = True, weights=None):
    """Each sample's packed plan, the fused operator's one plan input (`mix`): int32, the
    `PLAN_HEADER` values (floats as their float32 bits), then the paste rows, then the mask
    words (the FMix ranks in raster order, `mask_words`; none without a mask).

    Args (numpy, n samples; values are checked by the operator when it runs):
        perm: (n,) the partner of each sample. blend: (n,) float32 own weight (1: no blend).
        rows: (n, R, 9) int32 paste rows, or n arrays (R_i, 9) (padded with zero rows, which
            paste nothing): source sample, source rect (y, x, h, w), destination rect.
        mask_params: (n, 3) k (own pixels), flip_y, flip_x.
        height, width: the images' size, pixels.
        ranks: (E, height, width[, 1]) uint16 or int32 rank images (an FMix bank) or None; with
            mask_of (n,) int, the entry of `ranks` each sample's mask is (-1: no mask).
        dense: every sample carries mask words when any does (those without a mask get zero
            ranks and k = height * width, which reads none): one (n, L) array; else only the
            samples with a mask carry them.
        weights: (n, 2) float32 target weights (own, partner), or None (zero; no targets).
    Returns: an (n, L) int32 array when every sample's plan has one length, else a list of n
    (L_i,) int32 arrays.
    """
    from dali_mix.masks import rank_dtype

    perm = np.asarray(perm)
    n, pixels = len(perm), int(height) * int(width)
    if not isinstance(rows, np.ndarray):
        most = max([0] + [len(r) for r in rows])
        padded = np.zeros((n, most, 9), np.int32)
        for i, r in enumerate(rows):
            padded[i, :len(r)] = np.asarray(r, np.int32).reshape(-1, 9)
        rows = padded
    R = rows.shape[1]
    mask_of = np.full(n, -1) if ranks is None else np.asarray(mask_of)
    masked = mask_of >= 0
    words, rank_type = mask_words(height, width), rank_dtype(height, width)
    head = np.empty((n, len(PLAN_HEADER) + 9 * R), np.int32)  # columns: PLAN_HEADER, then the rows
    head[:, 0] = perm
    head[:, 1] = np.asarray(blend, np.float32).view(np.int32)
    head[:, 2:5] = mask_params  # k, flip_y, flip_x
    head[:, 5:7] = 0 if weights is None else np.asarray(weights, np.float32).reshape(n, 2).view(np.int32)
    head[:, 7] = R
    head[:, 8] = 0  # mask words: set below for the samples that carry them
    head[:, 9:] = rows.reshape(n, 9 * R)
    if not masked.any():
        return head
    bank = np.asarray(ranks).reshape(len(ranks), pixels)
    if dense:
        out = np.empty((n, head.shape[1] + words), np.int32)
        out[:, :head.shape[1]] = head
        out[:, 8] = words
        out[~masked, 2] = pixels  # reads no rank
        spans = out[:, head.shape[1]:].view(rank_type)
        spans[masked, :pixels] = bank[mask_of[masked]]
        spans[~masked] = 0
        spans[:, pixels:] = 0  # the padding half-word of an odd pixel count
        return out
    out = list(head)
    for i in np.flatnonzero(masked):
        plan = np.empty(head.shape[1] + words, np.int32)
        plan[:head.shape[1]] = head[i]
        plan[8] = words
        spans = plan[head.shape[1]:].view(rank_type)
        spans[:pixels] = bank[mask_of[i]]
        spans[pixels:] = 0
        out[i] = plan
    return out


def mix(images, plan, *, mean=None, std=None, mirror=0, dtype=None, layout=None, image_size=None,
        output_layout=None, normalize=None, channels=None, labels=None, num_classes=None,
        target_offset=0.0):
    """Mix a batch as planned (see the module docstring), and normalise it if asked, on the CPU.

    Args (DataNodes, CPU, one sample per image):
        images: uint8 or float32, layout HWC or CHW (read from the data; data without a layout
            is taken as `layout`, else HWC), every image the same shape, 1-4 channels.
        plan: int32 (L,) per sample, the packed plan of `pack_plan`: the partner of each sample
            (an index into the batch) for the blend and the mask; the blend weight of the own
            image in [0, 1] (Mixup; 1 = no blend); the paste rows, in pixels: source sample (an
            index into the batch), source rect (y, x, h, w), destination rect (y, x, h, w), the
            destination getting the source rect's pixels, resized by nearest neighbour where
            the sizes differ (the pixels `fn.resize(interp_type=INTERP_NN)` picks from an image
            of the source rect's size), a destination of zero area pasting nothing, applied in
            order after the mask; the FMix pixel ranks (or none) with k, flip_y, flip_x: the
            partner's pixels are those whose rank, at the position flipped as they say, is
            >= k (none when k >= H * W); the target weights (own, partner).
    Keyword args:
        mean, std: per-channel (or one) values in pixel units (for float images, in the
            images' units: mean=0, std=1 leaves them as they are); both or neither.
        normalize: None (default): normalise when mean and std are given; False: mix only.
        mirror: per-sample 0/1 DataNode or int: flip horizontally.
        dtype: output type. Normalising: types.FLOAT (default) or types.FLOAT16. Mix only:
            the images' type by default (uint8: a Mixup blend is rounded half away from zero
            and saturated, as DALI's cast), or types.FLOAT16 / types.FLOAT.
        layout: "HWC" or "CHW", what the caller expects (MixRecipe.layout): checked against
            the data's layout, a mismatch raises "random_mix: images have layout CHW but the
            recipe says HWC (MixRecipe.layout)".
        image_size: (H, W) or one int, the size the plan was drawn for: every image must have
            it, else "random_mix: image 3 is 200x180 (HxW) but image_size is 224x224".
        channels: the channels every image must have (MixRecipe.channels), else "random_mix:
            image 0 has 1 channels (layout HWC) but MixRecipe.channels is 3"; None: any.
        output_layout: "CHW" or "HWC"; None: CHW when normalising, else the images' layout.
        labels, num_classes, target_offset: also make the soft targets of the pair plan with
            the plan's target weights: labels (a DataNode, CPU) one class index per sample in
            [0, num_classes), of any integer type (or float, rounded half away from zero);
            target[c] = (c == y ? w_own : 0) + (c == y[perm] ? w_partner : 0) +
            target_offset in float32, as `dali_mix.labels.pair_targets` computes it.
    Returns: one DataNode, (C, H, W) or (H, W, C) per sample as above; with labels, (that,
    (num_classes,) float32 targets). Errors in the data (layout, sizes, plan values, a label
    that is not one value in [0, num_classes)) are raised when the pipeline runs
    (RuntimeError).
    """
    load()
    from nvidia.dali import fn
    kw = _args(mean, std, mirror, dtype, layout, image_size, output_layout, normalize, channels)
    if (labels is None) != (num_classes is None):
        raise ValueError("targets need labels and num_classes together")
    if labels is None:
        return fn.dali_mix.mix_normalize(images, plan, **kw)
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return tuple(fn.dali_mix.mix_normalize(images, plan, labels, num_classes=int(num_classes),
                                           target_offset=float(target_offset), **kw))


mix_normalize = mix  # the name random_mix has always called


def clip_length(audio):
    """Each clip's length in samples, (1,) int32 CPU, for decoded CPU audio ((samples,) or
    (samples, channels), any type); a clip of 0 samples stops the pipeline when it runs
    (RuntimeError naming the clip's source_info: the file it was read from)."""
    load()
    from nvidia.dali import fn
    return fn.dali_mix.clip_length(audio)


def main(argv=None) -> int:
    """`python -m dali_mix.native [--force]`: build (if needed) and load; prints the path."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if "--force" in argv:
            build(force=True)
        print(load())
    except NativeBuildError as e:
        print(f"dali-mix: the fused CPU operator is not available: {e}", file=sys.stderr)
        return 1
    return 0
