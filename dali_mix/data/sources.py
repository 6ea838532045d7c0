"""The data-source model: which files are samples, what their labels are, what the classes are.

One set of rules, used by the trainer's readers (`pipelines/sources.py`), by
`dali-mix check-data` and by `dali-mix preview`, so a clean list written by check-data carries
exactly the labels training uses:

- Hidden entries (names starting with ".", e.g. `.ipynb_checkpoints/`, `.DS_Store`) are never
  classes, samples or shards.
- ImageFolder: a directory whose non-hidden sub-directories are the classes, sorted by name ->
  labels 0..C-1 (ImageNet layout). Samples are the non-hidden files directly inside a class
  folder whose extension (case-insensitive) is in `IMAGE_EXTENSIONS`, sorted by name.
- File list: a `.txt` of `path label` lines (DALI's format; the label is the last whitespace
  token, so paths may hold spaces); relative paths are relative to the list's folder. Classes
  come from a `classes.txt` beside the list, else 0..max(label).
- Webdataset: a `.tar` file, a directory holding `.tar` files, a glob, a brace range
  (`train-{000..146}.tar`) or a list of tar paths. A sample is the group of consecutive members
  sharing a key (the member name up to the first dot of its base name); its image member has an
  extension in `WDS_IMAGE_EXTENSIONS` and its label member `<key>.cls` holds an ASCII decimal
  label. DALI index files `<tar>.idx` or `<name>.idx` are used when present. Classes come from a
  `classes.txt` in the shards' directory, else the caller must give their number.

Nothing here imports DALI, decodes an image or reads a shard's members: `resolve_source` costs
one directory scan (ImageFolder), one pass over the list with a `stat` per entry (file list), or
one `stat` and a 512-byte read per shard (webdataset).
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

#: File extensions (lower case, with the dot) that are samples in an ImageFolder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pnm", ".ppm", ".pgm",
                    ".jp2")
#: Member extensions (no dot) that are a webdataset sample's image, in order of preference; the
#: same list goes to `fn.readers.webdataset(ext=...)`.
WDS_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
#: Member extension of a webdataset sample's label (ASCII decimal).
WDS_LABEL_EXTENSION = "cls"
#: Kinds of source: ImageFolder tree, DALI file list, webdataset shards.
KINDS = ("folder", "file_list", "webdataset")

_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_TAR_BLOCK = 512


@dataclass(frozen=True)
class Source:
    """A resolved data source.

    `files`: absolute image paths (folder), the list file (file_list) or tar paths (webdataset);
    `labels`: int label per image (folder only); `classes`: class names, index = label;
    `named_classes`: the names come from the data (folder names or a classes.txt), not made up
    as "0".."max"; `num_samples`: number of samples when known without reading the shards;
    `skipped`: (path, reason) of every entry of an ImageFolder that is not a sample
    (`skip_reason`), so that the files present explain `num_samples`.
    """

    kind: str
    root: str
    files: tuple = ()
    labels: tuple = ()
    classes: tuple = ()
    index_files: tuple = ()
    num_samples: int | None = None
    extra: dict = field(default_factory=dict)
    named_classes: bool = False
    skipped: tuple = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def max_label(self) -> int | None:
        """Largest label, when known without reading the data (ImageFolder, file list)."""
        if self.labels:
            return max(self.labels)
        return self.extra.get("max_label")


# ---------------------------------------------------------------------------------- listing rules
def is_hidden(name: str) -> bool:
    """True for a hidden file or folder name (starts with a dot): never a class, sample or shard."""
    return name.startswith(".")


@dataclass
class FolderListing:
    """An ImageFolder as training reads it: `classes` (sorted names, index = label), `files`
    (absolute paths, class by class, sorted by name), `labels` (int per file) and `skipped`
    (paths present but not samples: hidden entries, other extensions, nested folders, files in
    the root; folders end with "/")."""

    classes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def list_image_folder(root: str | Path) -> FolderListing:
    """List an ImageFolder by the rules above. A class folder without images is kept (its label
    stays taken); `resolve_source` refuses it, `check-data` reports it."""
    root = os.fspath(root)
    out = FolderListing()
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.is_dir() and not is_hidden(e.name):
            out.classes.append(e.name)
        else:
            out.skipped.append(e.path + ("/" if e.is_dir() else ""))
    for label, name in enumerate(out.classes):
        with os.scandir(os.path.join(root, name)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_file() and not is_hidden(e.name) and e.name.lower().endswith(IMAGE_EXTENSIONS):
                out.files.append(e.path)
                out.labels.append(label)
            else:
                out.skipped.append(e.path + ("/" if e.is_dir() else ""))
    return out


def skip_reason(path: str, root: str | Path) -> str:
    """Why the ImageFolder rules leave the entry `path` (of `FolderListing.skipped`: folders end
    with "/") of the folder `root` out: one reason per rule."""
    name = os.path.basename(path.rstrip("/"))
    in_root = os.path.dirname(path.rstrip("/")) == os.fspath(root).rstrip("/")
    if is_hidden(name):
        return "hidden (its name starts with '.'), never a class or a sample"
    if in_root:
        return "not inside a class folder (samples are files in root/<class>/)"
    if path.endswith("/"):
        return "a folder inside a class folder (only the files directly in a class folder are samples)"
    ext = os.path.splitext(name)[1].lower() or "(none)"
    return f"extension {ext} is not an image extension ({', '.join(IMAGE_EXTENSIONS)})"


def parse_label(text: str) -> tuple[int | None, str | None]:
    """(label, None) for a non-negative decimal integer, else (None, reason)."""
    t = text.strip()
    if not re.fullmatch(r"[+-]?\d+", t):
        shown = t if len(t) <= 40 else t[:37] + "..."
        return None, f"label {shown!r} is not an integer"
    value = int(t)
    if value < 0:
        return None, f"negative label {value}"
    return value, None


@dataclass(frozen=True)
class ListEntry:
    """One non-blank line of a file list: `line` number (1-based), `path` as written, `full`
    path (joined with the file root), `label` (None when `error` says why it is unusable)."""

    line: int
    path: str
    full: str
    label: int | None
    error: str | None = None


def read_file_list(path: str | Path, file_root: str | Path | None = None) -> tuple[list[ListEntry], list[int]]:
    """Parse a DALI file list: (entries, numbers of blank lines). Paths are joined with
    `file_root` (default: the list's folder, as `fn.readers.file(file_list=...)` is given)."""
    path = os.fspath(path)
    root = os.fspath(file_root) if file_root is not None else os.path.dirname(os.path.abspath(path))
    entries, blank = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().rsplit(None, 1)
            if not parts:
                blank.append(n)
                continue
            rel = parts[0]
            full = os.path.join(root, rel)
            if len(parts) < 2:
                entries.append(ListEntry(n, rel, full, None, "no label"))
                continue
            label, why = parse_label(parts[1])
            entries.append(ListEntry(n, rel, full, label, why))
    return entries, blank


def classes_txt(folder: str | Path) -> tuple[str, ...] | None:
    """Class names from `folder/classes.txt` (one per line, blank lines ignored), or None."""
    p = Path(folder) / "classes.txt"
    if p.is_file():
        names = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        return tuple(names) or None
    return None


def expand_shards(patterns: list[str]) -> list[str]:
    """Expand `{000..009}` ranges and globs into shard paths (hidden files left out); literal
    paths are kept even when they do not exist (the caller reports them)."""
    out: list[str] = []
    for pat in patterns:
        pending = [pat]
        while any(_BRACE.search(p) for p in pending):
            nxt = []
            for p in pending:
                m = _BRACE.search(p)
                if not m:
                    nxt.append(p)
                    continue
                a, b = m.group(1), m.group(2)
                width = len(a) if a.startswith("0") or len(a) == len(b) else 0
                nxt += [p[:m.start()] + str(i).zfill(width) + p[m.end():] for i in range(int(a), int(b) + 1)]
            pending = nxt
        for p in pending:
            if glob.has_magic(p):
                out += sorted(q for q in glob.glob(p) if not is_hidden(os.path.basename(q)))
            else:
                out.append(p)
    return out


def detect(spec) -> tuple[str, list[str]]:
    """(kind, paths) of a source given as a path, a glob, a brace range or a list of shards.

    A folder holding (non-hidden) `.tar` files is webdataset shards, else an ImageFolder; a file
    is a shard (`.tar`) or a file list (`.txt`). Raises ValueError naming the path otherwise.
    """
    if isinstance(spec, (list, tuple)):
        specs = [os.fspath(s) for s in spec]
    else:
        specs = [os.fspath(spec)]
    if not specs:
        raise ValueError("no data source given")
    if len(specs) > 1 or glob.has_magic(specs[0]) or _BRACE.search(specs[0]):
        shards = expand_shards(specs)
        if not shards:
            raise ValueError(f"data source {' '.join(specs)!r}: the pattern matches no file")
        return "webdataset", shards
    path = Path(specs[0])
    if not path.exists():
        raise ValueError(f"data source {specs[0]!r} does not exist")
    if path.is_file():
        if path.suffix == ".tar":
            return "webdataset", [str(path)]
        if path.suffix == ".txt":
            return "file_list", [str(path)]
        raise ValueError(f"data source {specs[0]!r}: a file must be a .txt file list or a .tar shard")
    with os.scandir(path) as it:
        entries = [e for e in it if not is_hidden(e.name)]
    tars = sorted(e.path for e in entries if e.is_file() and e.name.endswith(".tar"))
    if tars:
        dirs = sorted(e.name for e in entries if e.is_dir())
        if dirs:
            raise ValueError(f"data source {specs[0]!r} holds both .tar shards and folders ({', '.join(dirs[:5])}): "
                             "point at the shards or at an ImageFolder root")
        return "webdataset", tars
    return "folder", [str(path)]


def shard_problem(path: str) -> str | None:
    """Why the tar file at `path` cannot be read whole (missing, empty, cut short), or None.

    A complete tar is whole 512-byte blocks ending in zero blocks (end-of-archive marker); a shard
    cut by an interrupted copy is neither. Costs one stat and one 512-byte read.
    """
    if not os.path.isfile(path):
        return "does not exist"
    size = os.path.getsize(path)
    if size == 0:
        return "is empty"
    if size % _TAR_BLOCK:
        return f"is truncated or not a tar ({size} bytes is not a whole number of 512-byte blocks)"
    with open(path, "rb") as f:
        f.seek(size - _TAR_BLOCK)
        if f.read(_TAR_BLOCK).strip(b"\0"):
            return "is truncated (it does not end with the tar end-of-archive blocks)"
    return None


# ---------------------------------------------------------------------------------- resolve
def resolve_source(spec) -> Source:
    """Turn a path, glob, brace range or list of tar paths into a validated `Source`; a
    ValueError names the path (and line) at fault."""
    kind, paths = detect(spec)
    if kind == "folder":
        return _image_folder(Path(paths[0]))
    if kind == "file_list":
        return _file_list(Path(paths[0]))
    return _webdataset(paths)


def _image_folder(root: Path) -> Source:
    listing = list_image_folder(root)
    if not listing.classes:
        raise ValueError(f"data source {str(root)!r}: no class folders (expected root/<class>/<image>) "
                         "and no .tar shards")
    counts = [0] * len(listing.classes)
    for label in listing.labels:
        counts[label] += 1
    for name, n in zip(listing.classes, counts):
        if not n:
            raise ValueError(f"class folder {str(root / name)!r} holds no images "
                             f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    skipped = tuple((p, skip_reason(p, root)) for p in listing.skipped)
    return Source("folder", str(root), tuple(listing.files), tuple(listing.labels), tuple(listing.classes),
                  num_samples=len(listing.files), named_classes=True, skipped=skipped)


def _file_list(path: Path) -> Source:
    entries, _ = read_file_list(path)
    for e in entries:
        if e.error:
            raise ValueError(f"{path}:{e.line}: expected 'path label' with a label >= 0, got "
                             f"{e.path!r} ({e.error})")
    if not entries:
        raise ValueError(f"file list {str(path)!r} is empty")
    missing = [e for e in entries if not os.path.isfile(e.full)]
    if missing:
        shown = "\n".join(f"  {path}:{e.line}: {e.full}" for e in missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(f"file list {str(path)!r}: {len(missing)} listed file(s) do not exist:\n{shown}{more}")
    labels = [e.label for e in entries]
    named = classes_txt(path.parent)
    classes = named or tuple(str(i) for i in range(max(labels) + 1))
    if max(labels) >= len(classes):
        worst = max(entries, key=lambda e: e.label)
        raise ValueError(f"{path}:{worst.line}: label {worst.label} >= number of classes {len(classes)} "
                         f"in {path.parent / 'classes.txt'}")
    return Source("file_list", str(path.parent), (str(path),), (), classes, num_samples=len(labels),
                  extra={"max_label": max(labels)}, named_classes=named is not None)


def _webdataset(tars: list[str]) -> Source:
    for t in tars:
        why = shard_problem(t)
        if why:
            raise ValueError(f"webdataset shard {t!r} {why}")
    index = []
    for t in tars:
        cands = [t + ".idx", os.path.splitext(t)[0] + ".idx"]
        index.append(next((c for c in cands if os.path.isfile(c)), None))
    index = tuple(index) if all(index) else ()
    root = os.path.dirname(tars[0])
    named = classes_txt(root)
    num = _count_from_index(index) if index else None
    return Source("webdataset", root, tuple(tars), (), named or (), index, num_samples=num,
                  named_classes=named is not None)


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


# ---------------------------------------------------------------------------------- train vs val
def class_mismatch(train: Source, val: Source, num_classes: int | None = None) -> str | None:
    """Why `val`'s labels do not mean what `train`'s mean, or None when they agree.

    Both name their classes: the names must be equal, in the same order (a class only one side
    has shifts every label after it). Otherwise val's largest known label must be below the
    number of train classes (`num_classes` overrides it).
    """
    n = num_classes or train.num_classes
    if train.named_classes and val.named_classes:
        if tuple(train.classes) == tuple(val.classes):
            return None
        only_train = [c for c in train.classes if c not in set(val.classes)]
        only_val = [c for c in val.classes if c not in set(train.classes)]
        parts = []
        if only_train:
            parts.append(f"only in train: {', '.join(only_train[:20])}")
        if only_val:
            parts.append(f"only in val: {', '.join(only_val[:20])}")
        if not parts:
            parts.append("the same names in another order")
        return (f"train ({train.root}, {train.num_classes} classes) and val ({val.root}, {val.num_classes} "
                f"classes) do not have the same classes: {'; '.join(parts)}; every label after the first "
                "difference would mean another class")
    if n and val.max_label is not None and val.max_label >= n:
        return f"val ({val.root}) has labels up to {val.max_label} but train has {n} classes"
    return None
