"""Fashion-MNIST, the embedded real data set, converted to what DALI readers consume.

Source: the Debian package ``dataset-fashion-mnist`` (Zalando Research, MIT licence), which
installs the four original idx files under ``/usr/share/datasets/fashion-mnist/``:

=============================  ==============================================================
``train-images-idx3-ubyte.gz``  60,000 images, uint8, shape (60000, 28, 28), 0 = black
``train-labels-idx1-ubyte.gz``  60,000 labels, uint8, shape (60000,), values 0..9
``t10k-images-idx3-ubyte.gz``   10,000 images, uint8, shape (10000, 28, 28)
``t10k-labels-idx1-ubyte.gz``   10,000 labels, uint8, shape (10000,)
=============================  ==============================================================

:func:`prepare_fashion_mnist` writes, under one cache folder ``ROOT``:

* an ImageFolder tree ``ROOT/train/<class_dir>/<index>.png`` and ``ROOT/val/...`` (``val`` is the
  official ``t10k`` test split). Each PNG is an 8-bit grayscale 28x28 image, pixel-identical to
  the idx file; ``<index>`` is the sample's 0-based position in its idx file (5 digits).
  Class folders are ``0_T-shirt_top`` .. ``9_Ankle_boot`` so that *sorted* folder names, which
  is how ``fn.readers.file`` assigns labels, give the canonical Fashion-MNIST label ids 0..9;
* webdataset shards ``ROOT/wds/train-000000.tar`` .. and ``ROOT/wds/val-000000.tar`` with
  members ``<key>.png`` (same bytes as the ImageFolder PNG) and ``<key>.cls`` (ASCII decimal
  label, no newline), ``<key>`` = the 5-digit idx index. Samples are shuffled once at creation
  with a fixed seed, because container readers read in stored order. Each shard has a DALI
  index file ``ROOT/wds/<shard>.idx`` (format ``v1.2``, as DALI's ``wds2idx`` writes it) for
  ``fn.readers.webdataset(paths=..., index_paths=..., ext=["png", "cls"])``;
* ``ROOT/manifest.json``, the completion marker, written last.

The build happens in a temporary folder beside ``ROOT`` that is renamed into place
(``os.replace``) when complete, so an interrupted build never leaves a folder that looks valid;
a folder without a valid manifest is rebuilt, never trusted. The cache helpers here
(:func:`data_home`, :func:`build_atomically`) are shared with :mod:`dali_mix.data.imagenet_like`.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from dali_mix.atomic import write_text_atomic

__all__ = [
    "CLASS_NAMES",
    "CLASSES",
    "CLASS_DIRS",
    "DEFAULT_IDX_DIR",
    "DEBIAN_PACKAGE",
    "FashionMNISTData",
    "FashionMNISTNotFoundError",
    "IdxFormatError",
    "prepare_fashion_mnist",
    "read_idx",
    "load_split",
    "balanced_subset",
    "data_home",
    "build_atomically",
    "read_manifest",
]

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEFAULT_IDX_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The official class names, index = Fashion-MNIST label id.
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
#: Filesystem-safe class names, index = label id.
CLASSES = [n.replace("/", "_").replace(" ", "_") for n in CLASS_NAMES]
#: ImageFolder directory names; ``sorted(CLASS_DIRS) == CLASS_DIRS`` so DALI's label = label id.
CLASS_DIRS = [f"{i}_{name}" for i, name in enumerate(CLASSES)]

IMAGE_SIZE = 28  # pixels, both height and width
IMAGES_MAGIC = 0x00000803  # idx: unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # idx: unsigned byte, 1 dimension
SPLIT_FILES = {  # our split name -> idx file stem prefix
    "train": "train",
    "val": "t10k",
}
SHUFFLE_SEEDS = {"train": 0, "val": 1}  # fixed seeds of the shard order
TAR_MTIME = 1_590_192_000  # fixed member mtime (2020-05-23) -> byte-reproducible shards
MANIFEST = "manifest.json"
FORMAT = "dali-mix/fashion-mnist/1"


# --------------------------------------------------------------------------- errors


class FashionMNISTNotFoundError(FileNotFoundError):
    """The Fashion-MNIST idx files are not where we looked (and could not be installed)."""


class IdxFormatError(ValueError):
    """An idx file is corrupt or is not the file it claims to be; the message names the file."""


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class FashionMNISTData:
    """Where a prepared Fashion-MNIST lives; all paths absolute.

    Attributes:
        root: the cache folder holding everything below and ``manifest.json``.
        train_dir, val_dir: ImageFolder roots (``file_root`` of ``fn.readers.file``); each holds
            the 10 folders :data:`CLASS_DIRS` of 28x28 8-bit grayscale PNGs.
        train_shards, val_shards: webdataset tar paths (``paths`` of ``fn.readers.webdataset``),
            in shard order; members ``<key>.png`` and ``<key>.cls``.
        train_index, val_index: DALI index files, one per shard, same order (``index_paths``).
        classes: filesystem-safe class names, index = label id (``T-shirt_top``, ...).
        num_train, num_val: number of samples in each split.
        class_dirs: the ImageFolder folder names, index = label id (``0_T-shirt_top``, ...).
    """

    root: Path
    train_dir: Path
    val_dir: Path
    train_shards: list[str]
    train_index: list[str]
    val_shards: list[str]
    val_index: list[str]
    classes: list[str]
    num_train: int
    num_val: int
    class_dirs: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- cache helpers


def data_home() -> Path:
    """The dali-mix data cache: ``$DALI_MIX_DATA``, default ``~/.cache/dali-mix``."""
    return Path(os.environ.get("DALI_MIX_DATA") or "~/.cache/dali-mix").expanduser()


def read_manifest(folder: Path) -> dict | None:
    """The parsed ``folder/manifest.json``, or None if it is missing or unreadable."""
    try:
        with open(Path(folder) / MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _write_manifest(folder: Path, manifest: dict) -> None:
    """Write the completion marker atomically (temp file + rename) inside ``folder``."""
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def _remove_dir(path: Path) -> None:
    """Remove ``path`` by first renaming it aside, so no half-deleted folder is ever visible."""
    trash = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def build_atomically(
    target: Path,
    build: Callable[[Path], dict],
    is_valid: Callable[[Path, dict], bool],
) -> dict:
    """Return the manifest of ``target``, building it first unless it is already valid.

    ``build(tmp_dir)`` fills an empty temporary folder created beside ``target`` and returns
    the manifest (a JSON-serialisable dict). The manifest is written last, then the folder is
    renamed onto ``target``. An existing ``target`` is trusted only if ``is_valid(target,
    manifest)``; otherwise it is removed and rebuilt. If another process finishes the same
    build first, its valid result is kept and ours is discarded.
    """
    target = Path(target)
    manifest = read_manifest(target)
    if manifest is not None and is_valid(target, manifest):
        return manifest
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the result is an ordinary shared folder
        manifest = build(tmp)
        _write_manifest(tmp, manifest)
        other = read_manifest(target)
        if other is not None and is_valid(target, other):
            return other  # built meanwhile by another process: keep it, drop ours
        if target.exists():
            _remove_dir(target)
        try:
            os.replace(tmp, target)
        except OSError:  # a concurrent builder won the race: accept its result if valid
            other = read_manifest(target)
            if other is None or not is_valid(target, other):
                raise
            return other
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# --------------------------------------------------------------------------- idx files


def _idx_path(idx_dir: Path, stem: str) -> Path | None:
    """``idx_dir/stem.gz`` or the uncompressed ``idx_dir/stem``, whichever exists."""
    for name in (f"{stem}.gz", stem):
        if (idx_dir / name).is_file():
            return idx_dir / name
    return None


def _idx_stems(split: str) -> tuple[str, str]:
    prefix = SPLIT_FILES[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _missing_idx_files(idx_dir: Path) -> list[str]:
    stems = [s for split in SPLIT_FILES for s in _idx_stems(split)]
    return [f"{s}.gz" for s in stems if _idx_path(idx_dir, s) is None]


def _not_found_message(idx_dir: Path, missing: list[str]) -> str:
    return (
        f"Fashion-MNIST idx files not found in {idx_dir}: missing {', '.join(missing)}.\n"
        f"Get them with the Debian/Ubuntu package:  sudo apt-get install {DEBIAN_PACKAGE}\n"
        f"(installs them into {DEFAULT_IDX_DIR}), or point idx_dir= / --idx-dir at a folder "
        "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not) from "
        "https://github.com/zalandoresearch/fashion-mnist."
    )


def _install_debian_package(package: str = DEBIAN_PACKAGE) -> None:
    """Run ``apt-get update`` and ``apt-get install -y <package>`` (default
    dataset-fashion-mnist; espeak-ng for :mod:`dali_mix.data.spoken_commands`), echoing both."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
        print(f"dali-mix: running {' '.join(cmd)}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, env=env)


def _can_install() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def _ensure_idx_files(idx_dir: Path | None, install: bool) -> Path:
    """The folder holding the four idx files; installs the Debian package if allowed.

    Installing is attempted only for the default folder (an explicit ``idx_dir`` that lacks the
    files would not be helped by it), only when running as root with ``apt-get`` available.
    """
    explicit = idx_dir is not None
    idx_dir = Path(idx_dir).expanduser() if explicit else DEFAULT_IDX_DIR
    missing = _missing_idx_files(idx_dir)
    if missing and install and not explicit and _can_install():
        print(f"dali-mix: {idx_dir} lacks {', '.join(missing)}; installing {DEBIAN_PACKAGE}",
              file=sys.stderr, flush=True)
        try:
            _install_debian_package()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise FashionMNISTNotFoundError(
                f"installing {DEBIAN_PACKAGE} failed ({exc}).\n" + _not_found_message(idx_dir, missing)
            ) from exc
        missing = _missing_idx_files(idx_dir)
    if missing:
        raise FashionMNISTNotFoundError(_not_found_message(idx_dir, missing))
    return idx_dir


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read one idx file (gzipped if the name ends in ``.gz``) into a numpy array.

    Args:
        path: the idx file.
        expected_magic: :data:`IMAGES_MAGIC` (uint8, 3-D) or :data:`LABELS_MAGIC` (uint8, 1-D).

    Returns:
        uint8 array of the shape stored in the header, e.g. (60000, 28, 28) or (60000,).

    Raises:
        IdxFormatError: naming ``path``, if it is not valid gzip, has the wrong magic number,
            or its size disagrees with its header.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{path}: not a readable gzip file ({exc})") from exc
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: too short for an idx file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        kind = "image" if expected_magic == IMAGES_MAGIC else "label"
        raise IdxFormatError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} for an idx "
            f"{kind} file; the file is corrupt or not a Fashion-MNIST {kind} file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise IdxFormatError(
            f"{path}: {len(raw)} bytes but the header (shape {shape}) says {expected}; truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_split(idx_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split (``"train"`` or ``"val"`` = t10k) from ``idx_dir``.

    Returns:
        ``(images, labels)``: uint8 (N, 28, 28) pixel intensities 0..255 (0 = black), and
        uint8 (N,) label ids 0..9. Raises :class:`IdxFormatError` naming the bad file.
    """
    idx_dir = Path(idx_dir)
    img_stem, lbl_stem = _idx_stems(split)
    img_path, lbl_path = _idx_path(idx_dir, img_stem), _idx_path(idx_dir, lbl_stem)
    if img_path is None or lbl_path is None:
        raise FashionMNISTNotFoundError(_not_found_message(idx_dir, _missing_idx_files(idx_dir)))
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise IdxFormatError(f"{img_path}: images of shape {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise IdxFormatError(f"{lbl_path}: label {int(labels.max())} outside 0..{len(CLASSES) - 1}")
    return images, labels


# --------------------------------------------------------------------------- conversion


def balanced_subset(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` samples, balanced across classes where possible.

    Takes each class's samples in file order, round-robin over classes (the k-th sample of
    every class before the (k+1)-th of any), so every class gets ``limit // C`` or one more
    unless it runs out. Returns sorted int64 indices, shape (min(limit, N),); all if None.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    order = np.argsort(labels, kind="stable")  # grouped by class, file order within a class
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts  # position of each sample within its class
    chosen = np.lexsort((labels, rank))[:limit]  # by rank, then class id
    return np.sort(chosen).astype(np.int64)


def _encode_png(image: np.ndarray) -> bytes:
    """8-bit grayscale PNG bytes of a uint8 (H, W) image."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _write_image_folder(split_dir: Path, indices: np.ndarray, labels: np.ndarray,
                        pngs: list[bytes]) -> None:
    """``split_dir/<class_dir>/<index:05d>.png`` for each sample."""
    for class_dir in CLASS_DIRS:
        (split_dir / class_dir).mkdir(parents=True)
    for index, label, png in zip(indices.tolist(), labels.tolist(), pngs):
        (split_dir / CLASS_DIRS[label] / f"{index:05d}.png").write_bytes(png)


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_tar(path: Path, samples: list[tuple[str, bytes, int]]) -> None:
    """A webdataset tar of ``(key, png_bytes, label)``: ``key.png`` then ``key.cls``."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, png, label in samples:
            _tar_member(tar, f"{key}.png", png)
            _tar_member(tar, f"{key}.cls", str(label).encode("ascii"))


def write_wds_index(tar_path: str | Path, index_path: str | Path) -> int:
    """Write DALI's webdataset index (``v1.2``, as ``wds2idx`` makes it) for a tar file.

    Line 1: ``v1.2 <num_samples>``; then per sample, for each of its regular-file members in
    stored order: ``<ext> <data_offset_bytes> <size_bytes> <member_name>``. A sample is a run
    of consecutive members with the same name up to the first dot. Returns the sample count.
    """
    samples: list[list[str]] = []
    last_key = None
    with tarfile.open(tar_path, "r:") as tar:
        for m in tar:
            if not m.isreg():
                continue
            dot = m.name.find(".", m.name.rfind("/") + 1)
            if dot < 0:
                continue  # extension-less file: not a sample component
            key, ext = m.name[:dot], m.name[dot + 1:]
            if not key or key.endswith("/"):
                continue  # hidden file (name starts with a dot): DALI skips it too
            if key != last_key:
                samples.append([])
                last_key = key
            samples[-1].append(f"{ext} {m.offset_data} {m.size} {m.name}")
    with open(index_path, "w", encoding="ascii") as f:
        f.write(f"v1.2 {len(samples)}\n")
        f.writelines(" ".join(parts) + "\n" for parts in samples)
    return len(samples)


def _write_shards(wds_dir: Path, split: str, indices: np.ndarray, labels: np.ndarray,
                  pngs: list[bytes], samples_per_shard: int) -> tuple[list[str], list[str]]:
    """Shuffle (fixed seed) and write ``wds_dir/<split>-NNNNNN.tar`` + ``.idx``.

    Returns the shard and index file names (relative to ``wds_dir``), in order.
    """
    wds_dir.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(SHUFFLE_SEEDS[split]).permutation(len(indices))
    shards, index_files = [], []
    for shard_no, start in enumerate(range(0, len(order), samples_per_shard)):
        chunk = order[start:start + samples_per_shard].tolist()
        samples = [(f"{int(indices[i]):05d}", pngs[i], int(labels[i])) for i in chunk]
        tar_name, idx_name = f"{split}-{shard_no:06d}.tar", f"{split}-{shard_no:06d}.idx"
        _write_tar(wds_dir / tar_name, samples)
        write_wds_index(wds_dir / tar_name, wds_dir / idx_name)
        shards.append(tar_name)
        index_files.append(idx_name)
    return shards, index_files


def _convert_split(tmp: Path, idx_dir: Path, split: str, limit: int | None,
                   samples_per_shard: int) -> dict:
    """Write one split's ImageFolder and shards into ``tmp``; returns its manifest entry."""
    images, labels = load_split(idx_dir, split)
    indices = balanced_subset(labels, limit)
    kept_labels = labels[indices]
    pngs = [_encode_png(images[i]) for i in indices.tolist()]
    _write_image_folder(tmp / split, indices, kept_labels, pngs)
    shards, index_files = _write_shards(tmp / "wds", split, indices, kept_labels, pngs,
                                        samples_per_shard)
    counts = np.bincount(kept_labels, minlength=len(CLASSES)).tolist()
    return {"num": len(indices), "per_class": counts,
            "shards": [f"wds/{s}" for s in shards], "index": [f"wds/{s}" for s in index_files]}


def _params(limit: int | None, samples_per_shard: int) -> dict:
    return {"limit": limit, "samples_per_shard": samples_per_shard,
            "shuffle_seeds": SHUFFLE_SEEDS}


def _is_valid(params: dict) -> Callable[[Path, dict], bool]:
    """Manifest check: same format and parameters, and every shard/index file present."""
    def check(folder: Path, manifest: dict) -> bool:
        if manifest.get("format") != FORMAT or manifest.get("params") != params:
            return False
        try:
            files = [f for s in ("train", "val") for k in ("shards", "index")
                     for f in manifest["splits"][s][k]]
        except (KeyError, TypeError):
            return False
        return (folder / "train").is_dir() and (folder / "val").is_dir() and all(
            (folder / f).is_file() for f in files)
    return check


def _default_root(limit: int | None) -> Path:
    name = "fashion-mnist" if limit is None else f"fashion-mnist-limit{limit}"
    return data_home() / name


def _result(root: Path, manifest: dict) -> FashionMNISTData:
    split = manifest["splits"]
    return FashionMNISTData(
        root=root,
        train_dir=root / "train",
        val_dir=root / "val",
        train_shards=[str(root / f) for f in split["train"]["shards"]],
        train_index=[str(root / f) for f in split["train"]["index"]],
        val_shards=[str(root / f) for f in split["val"]["shards"]],
        val_index=[str(root / f) for f in split["val"]["index"]],
        classes=list(manifest["classes"]),
        num_train=int(split["train"]["num"]),
        num_val=int(split["val"]["num"]),
        class_dirs=list(manifest["class_dirs"]),
    )


def prepare_fashion_mnist(
    root: str | Path | None = None,
    idx_dir: str | Path | None = None,
    limit: int | None = None,
    samples_per_shard: int = 10000,
    install: bool = True,
) -> FashionMNISTData:
    """Convert Fashion-MNIST to an ImageFolder and webdataset shards (cached; see module doc).

    Args:
        root: output folder. Default ``$DALI_MIX_DATA/fashion-mnist`` (``DALI_MIX_DATA``
            defaults to ``~/.cache/dali-mix``), or ``.../fashion-mnist-limit<N>`` when ``limit``
            is set, so different limits are cached side by side. An explicit ``root`` is used
            as given (a cached build with other parameters there is replaced).
        idx_dir: folder with the four idx files (``.gz`` or not). Default
            ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
        limit: keep only the first ``limit`` samples of each split, balanced across the 10
            classes where possible (:func:`balanced_subset`); None keeps all 60,000 + 10,000.
        samples_per_shard: samples per webdataset tar (the last shard may hold fewer).
        install: if the default idx folder lacks the files and we run as root with
            ``apt-get``, run ``apt-get update && apt-get install -y dataset-fashion-mnist``.

    Returns:
        :class:`FashionMNISTData` with absolute paths. A second call with the same arguments
        returns at once from the cache (only ``manifest.json`` is read).

    Raises:
        FashionMNISTNotFoundError: (a ``FileNotFoundError``) the idx files are missing; the
            message says how to install them or where to point ``idx_dir``.
        IdxFormatError: an idx file is corrupt; the message names it.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of samples or None, got {limit}")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    target = (Path(root).expanduser() if root is not None else _default_root(limit)).absolute()
    params = _params(limit, samples_per_shard)
    is_valid = _is_valid(params)
    manifest = read_manifest(target)
    if manifest is not None and is_valid(target, manifest):
        return _result(target, manifest)
    source = _ensure_idx_files(Path(idx_dir) if idx_dir is not None else None, install)

    def build(tmp: Path) -> dict:
        started = time.perf_counter()
        splits = {s: _convert_split(tmp, source, s, limit, samples_per_shard)
                  for s in ("train", "val")}
        return {
            "format": FORMAT,
            "params": params,
            "source": str(source),
            "classes": CLASSES,
            "class_names": CLASS_NAMES,
            "class_dirs": CLASS_DIRS,
            "image": {"height": IMAGE_SIZE, "width": IMAGE_SIZE, "channels": 1,
                      "dtype": "uint8", "encoding": "png"},
            "splits": splits,
            "build_seconds": round(time.perf_counter() - started, 3),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    manifest = build_atomically(target, build, is_valid)
    return _result(target, manifest)
