"""Data sources for the pipelines: ImageFolder trees, DALI file lists, webdataset shards.

`resolve_source(spec)` inspects `spec` once, validates it (clear `ValueError` naming the path),
and returns a `Source`; `read(source, ...)` adds the matching DALI reader to the current
pipeline and returns (encoded images, int32 labels).

- ImageFolder: a directory whose sub-directories are classes (sorted names -> labels 0..C-1),
  ImageNet layout. Scanned once here; the file list goes to `fn.readers.file(files=, labels=)`.
- File list: a `.txt` of `relative/path label` lines (DALI's format); paths relative to the
  list's directory. Classes from a `classes.txt` beside it, else 0..max(label).
- Webdataset: a `.tar` file, a directory of `.tar` files, or a glob; members `<key>.<img ext>`
  and `<key>.cls` (ASCII decimal label); DALI index files `<tar>.idx` or `<name>.idx` are used
  when present. Classes from `classes.txt` in the shards' directory, else `num_classes` must be
  given by the caller.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nvidia.dali import fn, types

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pnm", ".ppm", ".pgm", ".jp2")
WDS_IMAGE_EXT = "jpg;jpeg;png;webp;bmp"


@dataclass(frozen=True)
class Source:
    """A resolved data source. `files` are absolute image paths (folder), the list file
    (file_list) or tar paths (webdataset); `labels` per image for folders; `classes` names."""

    kind: str
    root: str
    files: tuple = ()
    labels: tuple = ()
    classes: tuple = ()
    index_files: tuple = ()
    num_samples: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def max_label(self) -> int | None:
        """Largest label, when known without reading the data (ImageFolder, file list)."""
        if self.labels:
            return max(self.labels)
        return self.extra.get("max_label")


def resolve_source(spec) -> Source:
    """Turn a path, glob or list of tar paths into a validated `Source`."""
    if isinstance(spec, (list, tuple)):
        return _webdataset([str(p) for p in spec])
    spec = str(spec)
    if any(ch in spec for ch in "*?["):
        tars = sorted(glob.glob(spec))
        if not tars:
            raise ValueError(f"data source {spec!r}: the pattern matches no file")
        return _webdataset(tars)
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"data source {spec!r} does not exist")
    if path.is_file():
        if path.suffix == ".tar":
            return _webdataset([str(path)])
        if path.suffix == ".txt":
            return _file_list(path)
        raise ValueError(f"data source {spec!r}: a file must be a .txt file list or a .tar shard")
    tars = sorted(str(p) for p in path.glob("*.tar"))
    if tars:
        return _webdataset(tars)
    return _image_folder(path)


def _image_folder(root: Path) -> Source:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ValueError(f"data source {str(root)!r}: no class folders (expected root/<class>/<image>) "
                         "and no .tar shards")
    files, labels = [], []
    for label, name in enumerate(classes):
        class_dir = root / name
        images = sorted(e.path for e in os.scandir(class_dir)
                        if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            raise ValueError(f"class folder {str(class_dir)!r} holds no images "
                             f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
        files += images
        labels += [label] * len(images)
    return Source("folder", str(root), tuple(files), tuple(labels), tuple(classes),
                  num_samples=len(files))


def _file_list(path: Path) -> Source:
    labels = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                label = int(parts[-1])
            except ValueError:
                label = -1
            if len(parts) < 2 or label < 0:
                raise ValueError(f"{path}:{n}: expected 'relative/path label' with a label >= 0, got {line.strip()!r}")
            labels.append(label)
    if not labels:
        raise ValueError(f"file list {str(path)!r} is empty")
    classes = _classes_txt(path.parent) or tuple(str(i) for i in range(max(labels) + 1))
    if max(labels) >= len(classes):
        raise ValueError(f"file list {str(path)!r}: label {max(labels)} >= number of classes {len(classes)} "
                         f"in {path.parent / 'classes.txt'}")
    return Source("file_list", str(path.parent), (str(path),), (), classes, num_samples=len(labels),
                  extra={"max_label": max(labels)})


def _webdataset(tars: list[str]) -> Source:
    for t in tars:
        if not os.path.isfile(t):
            raise ValueError(f"webdataset shard {t!r} does not exist")
        if os.path.getsize(t) == 0:
            raise ValueError(f"webdataset shard {t!r} is empty")
    index = []
    for t in tars:
        cands = [t + ".idx", os.path.splitext(t)[0] + ".idx"]
        found = next((c for c in cands if os.path.isfile(c)), None)
        index.append(found)
    index = tuple(index) if all(index) else ()
    root = os.path.dirname(tars[0])
    classes = _classes_txt(Path(root)) or ()
    num = _count_from_index(index) if index else None
    return Source("webdataset", root, tuple(tars), (), classes, index, num_samples=num)


def _classes_txt(folder: Path) -> tuple | None:
    p = folder / "classes.txt"
    if p.is_file():
        names = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        return tuple(names) or None
    return None


def _count_from_index(index_files) -> int | None:
    total = 0
    for f in index_files:
        with open(f) as fh:
            header = fh.readline().split()
        try:
            total += int(header[-1])
        except (ValueError, IndexError):
            return None
    return total


def read(source: Source, *, train: bool, shard_id: int = 0, num_shards: int = 1, seed: int = 0,
         name: str = "Reader"):
    """Add the reader for `source` to the current pipeline.

    Train: the whole set is reshuffled every epoch with the same `seed` on every shard (so
    shards stay disjoint); webdataset shards are read through a shuffle buffer (shards are
    shuffled at creation). Val: stored order, each shard padded to whole batches
    (`pad_last_batch`), read exactly once per epoch.

    Returns (encoded, labels): uint8 encoded bytes and int32 labels of shape (1,) per sample.
    """
    common = dict(shard_id=shard_id, num_shards=num_shards, seed=seed, name=name,
                  pad_last_batch=not train, stick_to_shard=not train)
    if source.kind == "folder":
        return fn.readers.file(files=list(source.files), labels=list(source.labels),
                               shuffle_after_epoch=train, **common)
    if source.kind == "file_list":
        return fn.readers.file(file_list=source.files[0], file_root=source.root,
                               shuffle_after_epoch=train, **common)
    kw = {"index_paths": list(source.index_files)} if source.index_files else {}
    encoded, cls = fn.readers.webdataset(paths=list(source.files), ext=[WDS_IMAGE_EXT, "cls"],
                                         random_shuffle=train, initial_fill=4096 if train else 1,
                                         missing_component_behavior="error", **kw, **common)
    return encoded, parse_ascii_label(cls)


def parse_ascii_label(cls, max_digits: int = 9):
    """ASCII decimal bytes (uint8, (L,) per sample, e.g. b"417") -> int32 (1,) per sample.

    Done in the graph (reverse, pad with '0', dot with powers of ten): no Python per sample.
    """
    digits = fn.reshape(cls, shape=[1, -1, 1], layout="HWC")
    digits = fn.flip(digits, horizontal=1)  # units first
    digits = fn.reshape(digits, shape=[-1])
    digits = fn.pad(digits, axes=[0], shape=[max_digits], fill_value=ord("0"))
    digits = fn.cast(digits, dtype=types.INT32) - ord("0")
    powers = types.Constant(np.array([10 ** i for i in range(max_digits)], dtype=np.int32), device="cpu")
    value = fn.reductions.sum(digits * powers, dtype=types.INT32)
    return fn.reshape(value, shape=[1])
