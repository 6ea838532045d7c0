"""CIFAR-10 / CIFAR-100 from their *binary* distribution into the layout `train.py` reads.

    dali-mix data cifar --bin-dir ~/Downloads/cifar-100-binary      # -> $DALI_MIX_DATA/cifar100
    python train.py --data ~/.cache/dali-mix/cifar100 --image-size 32 --crop pad ...

The binary version ("CIFAR-10 binary version (suitable for C programs)") is read, never the
pickled Python one: nothing from a user's file is unpickled. Records (Krizhevsky 2009):

- CIFAR-10 (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`, `batches.meta.txt`):
  1 label byte, then 3072 bytes: the 32x32 red plane, then green, then blue, row-major;
- CIFAR-100 (`train.bin`, `test.bin`, `fine_label_names.txt`): 1 coarse label byte, 1 fine
  label byte, then the same 3072 bytes; the fine labels (100 classes) are used.

Writes `ROOT/train/<NNN>_<name>/<index>.png` and `ROOT/val/...` (the test split; folder names
sort in label order, so the trainer's labels are the official ones), RGB PNGs, plus a manifest;
built in a temporary folder and renamed into place (`build_atomically`), cached by parameters.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dali_mix.data.fashion_mnist import build_atomically, data_home, read_manifest
from dali_mix.progress import Progress

FORMAT = "dali-mix/cifar/1"
SIDE = 32
PIXELS = 3 * SIDE * SIDE


@dataclass(frozen=True)
class CifarLayout:
    """One of the two binary distributions: files per split, label bytes, class names file."""

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # bytes before the pixels; the last of them is the label used
    names_file: str
    num_classes: int


CIFAR10 = CifarLayout("cifar10", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",), 1,
                      "batches.meta.txt", 10)
CIFAR100 = CifarLayout("cifar100", ("train.bin",), ("test.bin",), 2, "fine_label_names.txt", 100)


class CifarFormatError(ValueError):
    """A file of the binary distribution is missing or not in its format; names the file."""


def detect(bin_dir: Path) -> tuple[CifarLayout, Path]:
    """Which distribution `bin_dir` holds (or its one sub-folder, as the archives unpack), and
    the folder that holds its files."""
    for folder in (bin_dir, *sorted(p for p in bin_dir.glob("*") if p.is_dir())):
        for layout in (CIFAR10, CIFAR100):
            if all((folder / f).is_file() for f in layout.train + layout.test):
                return layout, folder
    raise CifarFormatError(f"{bin_dir} holds neither CIFAR-10's binary files ({', '.join(CIFAR10.train)}, "
                           f"test_batch.bin) nor CIFAR-100's (train.bin, test.bin); the pickled 'python' "
                           "version is not read")


def read_records(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8 HWC RGB, labels (N,) int64) of one .bin file."""
    raw = np.fromfile(path, dtype=np.uint8)
    record = layout.label_bytes + PIXELS
    if raw.size == 0 or raw.size % record:
        raise CifarFormatError(f"{path}: {raw.size} bytes is not a whole number of {layout.name} records of "
                               f"{record} bytes (a cut-short download, or the other CIFAR)")
    rows = raw.reshape(-1, record)
    labels = rows[:, layout.label_bytes - 1].astype(np.int64)
    bad = np.flatnonzero(labels >= layout.num_classes)
    if bad.size:
        raise CifarFormatError(f"{path}: record {int(bad[0])} has label {int(labels[bad[0]])}, but {layout.name} "
                               f"has {layout.num_classes} classes")
    images = rows[:, layout.label_bytes:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def class_names(folder: Path, layout: CifarLayout) -> list[str]:
    """The names file's non-empty lines (numbers when it is absent), made folder-safe."""
    path = folder / layout.names_file
    if not path.is_file():
        return [str(i) for i in range(layout.num_classes)]
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != layout.num_classes:
        raise CifarFormatError(f"{path}: {len(names)} class names, {layout.name} has {layout.num_classes}")
    return [n.replace("/", "_").replace(" ", "_") for n in names]


def prepare_cifar(bin_dir: str | Path, root: str | Path | None = None, progress: bool = True) -> Path:
    """Convert the binary distribution in `bin_dir`; returns ROOT (default
    $DALI_MIX_DATA/cifar10 or /cifar100). Cached: a second call returns at once."""
    bin_dir = Path(bin_dir).expanduser()
    if not bin_dir.is_dir():
        raise CifarFormatError(f"--bin-dir {bin_dir} is not a folder")
    layout, folder = detect(bin_dir)
    target = (Path(root).expanduser() if root is not None else data_home() / layout.name).absolute()
    sizes = {f: (folder / f).stat().st_size for f in layout.train + layout.test}
    params = {"layout": layout.name, "source": str(folder.absolute()), "sizes": sizes}

    def is_valid(path: Path, manifest: dict) -> bool:
        return (manifest.get("format") == FORMAT and manifest.get("params") == params
                and (path / "train").is_dir() and (path / "val").is_dir())

    manifest = read_manifest(target)
    if manifest is not None and is_valid(target, manifest):
        return target
    names = class_names(folder, layout)
    width = len(str(layout.num_classes - 1))
    dirs = [f"{i:0{width}d}_{n}" for i, n in enumerate(names)]

    def build(tmp: Path) -> dict:
        counts = {}
        for split, files in (("train", layout.train), ("val", layout.test)):
            for d in dirs:
                (tmp / split / d).mkdir(parents=True)
            parts = [read_records(folder / f, layout) for f in files]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            bar = Progress(len(labels), f"cifar {split}", enabled=progress, unit="images")
            for i, (image, label) in enumerate(zip(images, labels.tolist())):
                buf = io.BytesIO()
                Image.fromarray(image, mode="RGB").save(buf, format="PNG")
                (tmp / split / dirs[label] / f"{i:05d}.png").write_bytes(buf.getvalue())
                if i % 500 == 0 or i + 1 == len(labels):
                    bar.update(i + 1)
            bar.close()
            counts[split] = int(len(labels))
        return {"format": FORMAT, "params": params, "classes": names, "class_dirs": dirs, "splits": counts}

    build_atomically(target, build, is_valid)
    return target
