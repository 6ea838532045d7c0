"""``dali-mix check-data``: find unusable samples in a data set before a long training run.

Three kinds of source are understood (see :func:`check_source`):

* an **ImageFolder** root ``root/<class>/<file>``,
* a **DALI file list** (a text file, ``relative/path label`` per line; paths are relative to
  ``--file-root``, or to the list's own folder when it is not given, or absolute),
* **webdataset shards**: one or more ``.tar`` files, globs (``shards/*.tar``) or brace ranges
  (``train-{000000..000146}.tar``), or a folder holding ``.tar`` files;
* **audio in the Speech Commands layout** (a folder with a ``validation_list.txt``; listed by
  :mod:`dali_mix.data.audio_sources`): every clip of every split is checked with Python's ``wave``
  (WAV headers; FLAC and OGG go straight to DALI), then decoded with DALI's
  ``fn.decoders.audio``; a clip with no samples is bad (it would train as silence). Stereo,
  other sample rates and clips longer than 1 s are notes (downmixed, resampled, cropped).

Sources are listed by :mod:`dali_mix.data.sources`, the rules the trainer's readers use (hidden
entries skipped, image extensions, sorted class order, shard discovery, ``classes.txt``), so the
labels of a clean list are exactly the labels training assigns. A label at or above the number
of classes (``classes.txt`` or ``--num-classes``) is bad.

Every image is checked in two stages: Pillow first, on a thread pool (``Image.open`` +
``load()`` catches empty, truncated and non-image files cheaply), then DALI's own CPU decoder
(``fn.decoders.image(device="cpu", output_type=RGB)`` fed by ``fn.external_source``) on what
Pillow accepted, in batches. A DALI decode error fails the whole batch and leaves the pipeline
unusable, so a failing batch is bisected on freshly built pipelines until the culprit files are
named. Grayscale, CMYK, alpha and palette images decode fine in DALI (to RGB) and are only
reported as notes.

The module imports nothing heavy at import time (DALI is imported when the first batch is
decoded), so :func:`check_source` can be used from a trainer to name a corrupt file after a DALI
failure.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tarfile
import time
import warnings
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from dali_mix.progress import Progress
from dali_mix.data.sources import (WDS_IMAGE_EXTENSIONS, WDS_LABEL_EXTENSION, classes_txt, detect,
                                   list_image_folder, parse_label, read_file_list, shard_problem)

__all__ = [
    "CheckReport",
    "GoodSample",
    "check_source",
    "write_clean_list",
    "add_parser",
    "WDS_IMAGE_EXTENSIONS",
]

_REPORT_KIND = {"folder": "imagefolder", "file_list": "filelist", "webdataset": "webdataset"}
AUDIO_KIND = "speechcommands"
AUDIO_RATE, AUDIO_CLIP_SECONDS = 16000, 1.0  # what pipelines/audio.py resamples and crops to

# Pillow format names that are expected for a file extension (for the "extension_mismatch" note).
_EXPECTED_FORMATS = {
    "jpg": {"JPEG", "MPO"}, "jpeg": {"JPEG", "MPO"}, "png": {"PNG"}, "bmp": {"BMP"},
    "tif": {"TIFF"}, "tiff": {"TIFF"}, "pnm": {"PPM"}, "ppm": {"PPM"}, "pgm": {"PPM"},
    "pbm": {"PPM"}, "jp2": {"JPEG2000"}, "webp": {"WEBP"},
}

_GRAYSCALE_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}

#: Note kinds: (kind, explanation) in the order they are printed.
NOTE_KINDS = {
    "grayscale": "grayscale images (DALI decodes them to 3-channel RGB)",
    "cmyk": "CMYK images (DALI converts them to RGB)",
    "alpha": "images with an alpha channel (dropped when decoding to RGB)",
    "palette": "palette images (expanded to RGB)",
    "other_color_mode": "images in another color mode (e.g. YCbCr, LAB)",
    "extension_mismatch": "file extension does not match the content (DALI decodes by content)",
    "huge_image": "images above Pillow's decompression-bomb limit (checked with DALI only)",
    "extra_image_members": "webdataset samples with more than one image member (first one checked)",
    "ignored_by_reader": "files/folders that are not samples (hidden, other extensions, nested)",
    "blank_lines": "blank lines in the file list",
    "non_contiguous_keys": "webdataset keys that reappear later in a shard (split samples)",
    "multichannel_audio": "stereo or multi-channel clips (the audio pipeline downmixes them to mono)",
    "other_sample_rate": f"clips not at {AUDIO_RATE} Hz (the audio pipeline resamples them)",
    "longer_than_clip": f"clips longer than {AUDIO_CLIP_SECONDS:g} s (the audio pipeline crops them)",
}


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GoodSample:
    """One sample that passed every check.

    ``path`` is the path as written to a DALI file list (relative to the ImageFolder root or the
    file list's file root, or absolute as the list gave it); for webdataset sources it is the
    shard path and ``key`` is the sample key inside it. ``label`` is the integer label.
    """

    path: str
    label: int
    key: str | None = None


@dataclass
class CheckReport:
    """Result of :func:`check_source`.

    Attributes:
        source: the source as given (joined with spaces when several shards were given).
        kind: ``"imagefolder"``, ``"filelist"``, ``"webdataset"`` or ``"speechcommands"``.
        bad: ``(path, reason)`` for every unusable sample (webdataset paths are
            ``shard.tar:member``); source-level errors (unreadable list or tar) appear here too.
        notes: note kind -> paths (allowed but worth knowing: grayscale, cmyk, alpha, palette,
            ...; see ``NOTE_KINDS``).
        class_counts: class name (ImageFolder) or label as a string -> number of *good* samples.
        empty_classes: classes with no usable image (no image files at all, or all bad).
        imbalance_threshold: the max/min ratio above which the data counts as imbalanced.
        good: every sample that passed, in source order (what :func:`write_clean_list` writes).
        num_checked: number of samples looked at.
        file_root: ImageFolder root or file list root (``None`` for webdataset).
        missing_labels: labels in ``0..max`` never used by a file list / shards (a note only).
        seconds: wall time of the check.
    """

    source: str
    kind: str
    bad: list[tuple[str, str]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    empty_classes: list[str] = field(default_factory=list)
    imbalance_threshold: float = 10.0
    good: list[GoodSample] = field(default_factory=list)
    num_checked: int = 0
    file_root: str | None = None
    missing_labels: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def imbalance(self) -> float | None:
        """max/min good-sample count over non-empty classes (``None`` when there are none)."""
        counts = [c for c in self.class_counts.values() if c > 0]
        if not counts:
            return None
        return max(counts) / min(counts)

    @property
    def imbalanced(self) -> bool:
        """True when :attr:`imbalance` exceeds :attr:`imbalance_threshold`."""
        ratio = self.imbalance
        return ratio is not None and ratio > self.imbalance_threshold

    @property
    def ok(self) -> bool:
        """True when nothing is bad, no class is empty, the classes are balanced enough and at
        least one good sample was found. Notes never make a report fail."""
        return not self.bad and not self.empty_classes and not self.imbalanced and bool(self.good)

    def problems(self) -> list[str]:
        """The failure lines, one per problem: ``BAD <path>: <reason>``, ``EMPTY CLASS ...``,
        ``IMBALANCE ...``, ``NO SAMPLES ...``. Empty when :attr:`ok`."""
        lines = [f"BAD {path}: {reason}" for path, reason in self.bad]
        for name in self.empty_classes:
            lines.append(f"EMPTY CLASS {name}: no usable images")
        if self.imbalanced:
            lo, hi = self._min_max()
            lines.append(
                f"IMBALANCE: largest class {hi[0]!r} has {hi[1]} samples, smallest {lo[0]!r} has "
                f"{lo[1]}: ratio {self.imbalance:.1f} > --imbalance-ratio "
                f"{self.imbalance_threshold:g}"
            )
        if not self.good:
            lines.append(f"NO SAMPLES: no usable sample found in {self.source}")
        return lines

    def _min_max(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """Returns ((name, count) of the smallest, (name, count) of the largest) non-empty class."""
        items = [(k, v) for k, v in self.class_counts.items() if v > 0]
        return min(items, key=lambda kv: kv[1]), max(items, key=lambda kv: kv[1])

    def summary(self, verbose: bool = False) -> str:
        """A human-readable multi-line summary (counts, class balance, notes). Failure lines are
        not included; see :meth:`problems`. ``verbose`` lists every noted path."""
        out = [
            f"Source: {self.kind} {self.source}",
            f"Checked {self.num_checked} samples in {self.seconds:.1f}s: {len(self.good)} good, "
            f"{len(self.bad)} bad",
        ]
        nonempty = {k: v for k, v in self.class_counts.items() if v > 0}
        if nonempty:
            lo, hi = self._min_max()
            out.append(
                f"Classes: {len(self.class_counts)} ({len(self.empty_classes)} empty); "
                f"good samples per class: min {lo[1]} ({lo[0]}), max {hi[1]} ({hi[0]}), ratio "
                f"{self.imbalance:.2f} (threshold {self.imbalance_threshold:g})"
            )
        elif self.class_counts:
            out.append(f"Classes: {len(self.class_counts)}, all empty")
        if self.missing_labels:
            shown = ", ".join(map(str, self.missing_labels[:20]))
            more = " ..." if len(self.missing_labels) > 20 else ""
            out.append(f"Note: labels never used: {shown}{more}")
        for kind, paths in self.notes.items():
            if not paths:
                continue
            what = NOTE_KINDS.get(kind, kind)
            out.append(f"Note: {len(paths)} {kind}: {what}")
            for p in paths if verbose else paths[:3]:
                out.append(f"    {p}")
            if not verbose and len(paths) > 3:
                out.append(f"    ... ({len(paths) - 3} more; --verbose lists all)")
        return "\n".join(out)

    def to_dict(self) -> dict:
        """Returns a JSON-serialisable dict of the report, including ``ok``, ``imbalance`` and
        ``problems``."""
        return {
            "source": self.source, "kind": self.kind, "ok": self.ok,
            "num_checked": self.num_checked, "num_good": len(self.good),
            "bad": [list(b) for b in self.bad], "notes": self.notes,
            "class_counts": self.class_counts, "empty_classes": self.empty_classes,
            "imbalance": self.imbalance, "imbalance_threshold": self.imbalance_threshold,
            "missing_labels": self.missing_labels, "file_root": self.file_root,
            "problems": self.problems(), "seconds": self.seconds,
        }


# --------------------------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Item:
    """A sample to check: ``path`` is shown in the report; the bytes are ``data`` when given
    (webdataset members), else the file at ``path`` is read."""

    path: str
    label: int | None
    good: GoodSample | None  # what goes to the clean list when every check passes
    ext: str = ""
    data: bytes | None = None
    pre_bad: str | None = None  # known problem (bad label, missing member) found while listing
    class_name: str | None = None


@dataclass(slots=True)
class _Result:
    """Outcome of checking one item: ``reason`` is None when good; ``data`` holds the bytes
    while they wait for DALI; ``notes`` are note kinds (see ``NOTE_KINDS``)."""
    item: _Item
    data: bytes | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def _ext(name: str) -> str:
    """Returns the lower-case extension of a file name without the dot ('' if none)."""
    return name.rsplit(".", 1)[-1].lower() if "." in os.path.basename(name) else ""


def _list_imagefolder(root: str, notes: dict[str, list[str]]) -> tuple[list[str], list[_Item]]:
    """Lists an ImageFolder the way training does; returns (class names, items)."""
    listing = list_image_folder(root)
    items = []
    for full, label in zip(listing.files, listing.labels):
        cls = listing.classes[label]
        rel = f"{cls}/{os.path.basename(full)}"
        items.append(_Item(full, label, GoodSample(rel, label), ext=_ext(full), class_name=cls))
    if listing.skipped:
        notes.setdefault("ignored_by_reader", []).extend(listing.skipped)
    return listing.classes, items


def _list_speech_commands(root: str, notes: dict[str, list[str]]) -> tuple[list[str], list[_Item]]:
    """Lists every clip of a Speech Commands folder (all splits) the way training does."""
    from dali_mix.data.audio_sources import list_audio_folder

    listing = list_audio_folder(root)
    items = []
    for full, label in zip(listing.files, listing.labels):
        cls = listing.classes[label]
        items.append(_Item(full, label, GoodSample(f"{cls}/{os.path.basename(full)}", label), ext=_ext(full),
                           class_name=cls))
    if listing.skipped:
        notes.setdefault("ignored_by_reader", []).extend(listing.skipped)
    return listing.classes, items


def _label_problem(label: int | None, num_classes: int | None, where: str) -> str | None:
    """'label L >= number of classes C (where)' when the label has no class, else None."""
    if label is not None and num_classes is not None and label >= num_classes:
        return f"label {label} >= number of classes {num_classes} ({where})"
    return None


def _list_filelist(list_path: str, file_root: str, num_classes: int | None, notes: dict[str, list[str]],
                   bad: list[tuple[str, str]]) -> list[_Item]:
    """Parses a DALI file list with :func:`dali_mix.data.sources.read_file_list`."""
    entries, blank = read_file_list(list_path, file_root)
    notes.setdefault("blank_lines", []).extend(f"{list_path}:{n}" for n in blank)
    name = os.path.basename(list_path)
    items: list[_Item] = []
    for e in entries:
        if e.label is None and e.error == "no label":
            bad.append((e.full, f"no label ({list_path} line {e.line})"))
            continue
        item = _Item(e.full, e.label, GoodSample(e.path, e.label) if e.label is not None else None,
                     ext=_ext(e.path))
        why = e.error or _label_problem(e.label, num_classes, "classes.txt / --num-classes")
        if why:
            item.pre_bad = f"{why} ({name} line {e.line})"
        items.append(item)
    return items


_WDS_SPLIT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


def _iter_webdataset(shards: Sequence[str], num_classes: int | None, notes: dict[str, list[str]],
                     bad: list[tuple[str, str]]) -> Iterator[_Item]:
    """Yields one item per webdataset sample (members with the same key, consecutive)."""

    def make(shard: str, key: str, members: dict[str, bytes]) -> _Item | None:
        """Returns the item for one sample, or None when it has no image (then it is already
        recorded in ``bad``)."""
        path = f"{shard}:{key}"
        img_exts = [e for e in WDS_IMAGE_EXTENSIONS if e in members]
        problems = []
        label = None
        if WDS_LABEL_EXTENSION not in members:
            problems.append(f"missing .{WDS_LABEL_EXTENSION} member")
        else:
            label, why = parse_label(members[WDS_LABEL_EXTENSION].decode("utf-8", "replace"))
            why = why or _label_problem(label, num_classes, "classes.txt / --num-classes")
            if why:
                problems.append(f"{why} in .{WDS_LABEL_EXTENSION}")
        if not img_exts:
            have = ", ".join(sorted(members)) or "none"
            problems.append(f"missing image member (members: {have})")
            bad.append((path, "; ".join(problems)))
            return None
        ext = img_exts[0]
        if len(img_exts) > 1:
            notes.setdefault("extra_image_members", []).append(path)
        item = _Item(f"{shard}:{key}.{ext}", label,
                     GoodSample(shard, label, key) if label is not None else None,
                     ext=ext, data=members[ext])
        if problems:
            item.pre_bad = "; ".join(problems)
        return item

    for shard in shards:
        seen_keys: set[str] = set()
        try:
            with tarfile.open(shard, mode="r:*") as tf:
                key, members = None, {}
                for m in tf:
                    if not m.isfile():
                        continue
                    mt = _WDS_SPLIT.match(m.name)
                    if not mt:
                        notes.setdefault("ignored_by_reader", []).append(f"{shard}:{m.name}")
                        continue
                    k, ext = mt.group(1), mt.group(2).lower()
                    if k != key:
                        if key is not None:
                            item = make(shard, key, members)
                            if item is not None:
                                yield item
                        if k in seen_keys:
                            notes.setdefault("non_contiguous_keys", []).append(f"{shard}:{k}")
                        seen_keys.add(k)
                        key, members = k, {}
                    f = tf.extractfile(m)
                    members[ext] = f.read() if f is not None else b""
                if key is not None:
                    item = make(shard, key, members)
                    if item is not None:
                        yield item
                # tarfile silently stops at a truncated or garbled header after the first
                # member; a sound archive has only zero padding after its last member.
                junk_at = _first_nonzero(tf.fileobj, tf.offset)
                if junk_at is not None:
                    bad.append((shard, f"truncated or corrupt tar: unreadable header at byte "
                                       f"{tf.offset}; members from there on were not checked"))
                elif shard_problem(shard):
                    bad.append((shard, f"truncated tar: the shard {shard_problem(shard)}"))
        except (OSError, tarfile.TarError, EOFError) as exc:
            bad.append((shard, f"unreadable tar shard ({exc})"))


def _first_nonzero(fileobj, offset: int, chunk: int = 1 << 20) -> int | None:
    """Offset of the first non-zero byte at or after ``offset`` in ``fileobj`` (None if none)."""
    fileobj.seek(offset)
    pos = offset
    while True:
        block = fileobj.read(chunk)
        if not block:
            return None
        stripped = block.lstrip(b"\0")
        if stripped:
            return pos + len(block) - len(stripped)
        pos += len(block)


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _describe_non_image(data: bytes) -> str:
    """Returns a 'not an image: ...' reason for bytes Pillow cannot identify (HTML, text, other)."""
    head = data[:256].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "not an image: looks like an HTML page (failed download?)"
    sample = data[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return f"not an image: looks like text ({data[:24]!r})"
    return f"not an image: unrecognised format (starts with {data[:8].hex()})"


def _pil_check(item: _Item) -> _Result:
    """Stage 1: read the bytes and fully decode with Pillow. Sets ``reason`` when bad."""
    from PIL import Image, UnidentifiedImageError

    res = _Result(item)
    reasons = [item.pre_bad] if item.pre_bad else []
    try:
        if item.data is not None:
            data = item.data
        else:
            with open(item.path, "rb") as f:
                data = f.read()
    except OSError as exc:
        reasons.append(f"unreadable ({exc.strerror or exc})")
        res.reason = "; ".join(reasons)
        return res
    item.data = None  # the result owns the bytes from now on
    if len(data) == 0:
        reasons.append("zero-byte file")
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt, mode, info = im.format, im.mode, dict(im.info)
                im.load()
            if mode in _GRAYSCALE_MODES:
                res.notes.append("grayscale")
            if mode == "CMYK":
                res.notes.append("cmyk")
            if mode in _ALPHA_MODES or (mode == "P" and "transparency" in info):
                res.notes.append("alpha")
            if mode in ("P", "PA"):
                res.notes.append("palette")
            if mode not in _GRAYSCALE_MODES | _ALPHA_MODES | {"RGB", "CMYK", "P", "PA"}:
                res.notes.append("other_color_mode")
            expected = _EXPECTED_FORMATS.get(item.ext)
            if expected and fmt not in expected:
                res.notes.append("extension_mismatch")
        except Image.DecompressionBombError:
            res.notes.append("huge_image")  # too big for Pillow's default limit: DALI decides
        except UnidentifiedImageError:
            reasons.append(_describe_non_image(data))
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data
            msg = str(exc) or type(exc).__name__
            if "truncat" in msg.lower():
                reasons.append(f"truncated image ({msg})")
            else:
                reasons.append(f"corrupt image ({type(exc).__name__}: {msg})")
    if reasons:
        res.reason = "; ".join(reasons)
    else:
        res.data = data
    return res


def _audio_check(item: _Item) -> _Result:
    """Stage 1 for audio: read the bytes; a WAV file's header and frame count with ``wave``
    (no samples is bad; channels, rate and length give notes). Sets ``reason`` when bad."""
    import wave

    res = _Result(item)
    try:
        with open(item.path, "rb") as f:
            data = f.read()
    except OSError as exc:
        res.reason = f"unreadable ({exc.strerror or exc})"
        return res
    if len(data) == 0:
        res.reason = "zero-byte file"
        return res
    if item.ext == "wav":
        try:
            with wave.open(io.BytesIO(data), "rb") as w:
                channels, rate, frames = w.getnchannels(), w.getframerate(), w.getnframes()
        except (wave.Error, EOFError) as exc:
            res.reason = f"not a readable WAV file ({exc or type(exc).__name__})"
            return res
        except Exception:  # noqa: BLE001 - e.g. a WAV codec `wave` does not know: DALI decides
            channels = rate = frames = None
        if frames == 0:
            res.reason = "empty audio (0 samples): it would train as silence"
            return res
        if channels is not None and channels > 1:
            res.notes.append("multichannel_audio")
        if rate is not None and rate != AUDIO_RATE:
            res.notes.append("other_sample_rate")
        if rate and frames / rate > AUDIO_CLIP_SECONDS:
            res.notes.append("longer_than_clip")
    res.data = data
    return res


class _DaliDecoder:
    """Stage 2: decodes batches with DALI's CPU image decoder, bisecting failing batches.

    A failed ``run()`` leaves a DALI pipeline unusable, so a new one (a few ms) is built after
    every failure.
    """

    def __init__(self, batch_size: int, num_threads: int, audio: bool = False):
        self.batch_size = max(1, batch_size)
        self.num_threads = max(1, num_threads)
        self.audio = audio  # fn.decoders.audio instead of fn.decoders.image
        self._pipe = None

    def _build(self):
        """Builds and returns a fresh external_source -> decoders.image CPU pipeline."""
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads, device_id=None,
                      prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
        def decode_pipeline():
            """Decodes externally fed encoded images to RGB on the CPU."""
            enc = fn.external_source(name="encoded", dtype=types.UINT8, no_copy=False)
            if self.audio:
                return fn.decoders.audio(enc, dtype=types.FLOAT, downmix=True)[0]
            return fn.decoders.image(enc, device="cpu", output_type=types.RGB)

        pipe = decode_pipeline()
        pipe.build()
        return pipe

    def _run(self, datas: list[bytes]) -> list[str | None]:
        """Decodes one batch; raises (and drops the broken pipeline) on any decode error.
        Returns a reason per sample for what decodes but is unusable (audio with no samples)."""
        import numpy as np

        if self._pipe is None:
            self._pipe = self._build()
        try:
            self._pipe.feed_input("encoded", [np.frombuffer(d, dtype=np.uint8) for d in datas])
            (out,) = self._pipe.run()
        except Exception:
            self._pipe = None
            raise
        if not self.audio:
            return [None] * len(datas)
        return [None if shape and shape[0] > 0 else "empty audio (0 samples): it would train as silence"
                for shape in out.shape()]

    def check(self, datas: list[bytes]) -> list[str | None]:
        """Returns one reason (``None`` = decoded fine) per encoded image."""
        if not datas:
            return []
        try:
            return self._run(datas)
        except Exception as exc:  # noqa: BLE001 - any DALI failure is a decode failure here
            if len(datas) == 1:
                return [f"DALI decoder rejects it ({_dali_error_text(exc)})"]
        mid = len(datas) // 2
        return self.check(datas[:mid]) + self.check(datas[mid:])


def _dali_error_text(exc: Exception) -> str:
    """Returns the useful one-line part of a DALI pipeline error message."""
    text = str(exc)
    m = re.search(r"encountered:\s*\n(.*?)(?:\nCurrent pipeline object|\Z)", text, re.S)
    msg = (m.group(1) if m else text).strip()
    msg = " ".join(msg.split())
    return msg[:300] or type(exc).__name__


def _checked(items: Iterable[_Item], workers: int, check=_pil_check) -> Iterator[_Result]:
    """Runs `check` (:func:`_pil_check`, or :func:`_audio_check`) on a thread pool, yielding results in order with a bounded window
    (so memory stays flat and the pool keeps working while the caller runs DALI)."""
    window = max(8, workers * 8)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check-data") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(check, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def check_source(source, *, workers: int | None = None, imbalance_ratio: float = 10.0,
                 progress: bool = True, file_root: str | None = None, kind: str | None = None,
                 use_dali: bool = True, batch_size: int = 32, num_classes: int | None = None) -> CheckReport:
    """Checks every sample of a data source and returns a :class:`CheckReport`.

    Args:
        source: an ImageFolder root, a DALI file list, a ``.tar`` shard, a glob / brace pattern
            of shards, a folder of shards, or a list of shards.
        workers: threads for reading + Pillow decoding and for DALI (default ``os.cpu_count()``).
        imbalance_ratio: the report fails when max/min good samples per class exceeds this.
        progress: draw a progress bar on stderr.
        file_root: for file lists, the folder list paths are relative to (default: the list's
            folder, as DALI does).
        kind: force ``"imagefolder"``, ``"filelist"`` or ``"webdataset"`` instead of detecting.
        use_dali: also decode with DALI's CPU decoder (default); ``False`` checks with Pillow only.
        batch_size: images per DALI decode batch.
        num_classes: labels must be below this (file lists, shards); default: the number of names
            in the source's ``classes.txt``, if any.

    Returns:
        the report; ``report.ok`` is False when any sample is bad, a class is empty, the classes
        are imbalanced beyond ``imbalance_ratio``, or nothing usable was found.

    Raises:
        FileNotFoundError: the source does not exist; ValueError: it is no kind of source.
        (Problems *inside* the source, including an unreadable shard, are reported, not raised.)
    """
    from PIL import ImageFile

    t0 = time.monotonic()
    workers = max(1, workers or os.cpu_count() or 1)
    try:
        detected, paths = detect(source)
    except ValueError as exc:
        if "does not exist" in str(exc) or "matches no file" in str(exc):
            raise FileNotFoundError(str(exc)) from None
        raise
    if kind is None and detected == "folder":
        from dali_mix.data.audio_sources import is_speech_commands

        kind = AUDIO_KIND if is_speech_commands(paths[0]) else None
    kind = kind or _REPORT_KIND[detected]
    label_source = " ".join(paths) if kind == "webdataset" else paths[0]
    report = CheckReport(source=label_source, kind=kind, imbalance_threshold=float(imbalance_ratio))
    notes: dict[str, list[str]] = {}
    class_names: list[str] = []
    total: int | None = None
    n_classes = num_classes or len(classes_txt(os.path.dirname(os.path.abspath(paths[0]))) or ()) or None
    if kind == "imagefolder":
        report.file_root = paths[0]
        class_names, listed = _list_imagefolder(paths[0], notes)
        items: Iterable[_Item] = listed
        total = len(listed)
    elif kind == "filelist":
        report.file_root = file_root or os.path.dirname(os.path.abspath(paths[0]))
        listed = _list_filelist(paths[0], report.file_root, n_classes, notes, report.bad)
        items, total = listed, len(listed)
    elif kind == "webdataset":
        items = _iter_webdataset(paths, n_classes, notes, report.bad)
    elif kind == AUDIO_KIND:
        report.file_root = paths[0]
        class_names, listed = _list_speech_commands(paths[0], notes)
        items, total = listed, len(listed)
    else:
        raise ValueError(f"unknown source kind {kind!r}")

    counts: Counter = Counter()
    decoder = _DaliDecoder(batch_size, workers, audio=kind == AUDIO_KIND) if use_dali else None
    batch: list[_Result] = []  # Pillow-accepted, waiting for DALI
    pending: list[_Result] = []  # checked, in source order, not yet entered into the report
    bar = Progress(total, "checking", enabled=progress, unit="samples", log_every=10.0)

    def finalize() -> None:
        """Moves the checked results, in order, into the report (bad / notes / good / counts)."""
        for res in pending:
            item = res.item
            if res.reason is not None:
                report.bad.append((item.path, res.reason))
                continue
            for kind_ in res.notes:
                notes.setdefault(kind_, []).append(item.path)
            report.good.append(item.good)
            counts[item.class_name if item.class_name is not None else str(item.label)] += 1
        pending.clear()

    def flush() -> None:
        """Decodes the waiting batch with DALI (if enabled), records failures, then finalizes."""
        reasons = decoder.check([r.data for r in batch]) if decoder else [None] * len(batch)
        for r, why in zip(batch, reasons):
            r.reason = why
            r.data = None
        batch.clear()
        finalize()

    truncated_flag = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # must see truncation even if the caller relaxed it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBomb/EXIF warnings
            for res in _checked(items, workers, _audio_check if kind == AUDIO_KIND else _pil_check):
                report.num_checked += 1
                pending.append(res)
                if res.reason is None:
                    batch.append(res)
                    if len(batch) >= (decoder.batch_size if decoder else batch_size):
                        flush()
                bar.advance()
            flush()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_flag
        bar.close()

    if kind in ("imagefolder", AUDIO_KIND):
        report.class_counts = {name: counts.get(name, 0) for name in class_names}
        report.empty_classes = [n for n, c in report.class_counts.items() if c == 0]
    else:
        report.class_counts = {k: counts[k] for k in sorted(counts, key=int)}
        if counts:
            used = {int(k) for k in counts}
            report.missing_labels = [i for i in range(max(used) + 1) if i not in used]
    report.notes = {k: notes[k] for k in list(NOTE_KINDS) + sorted(set(notes) - set(NOTE_KINDS))
                    if notes.get(k)}
    report.seconds = time.monotonic() - t0
    return report


def write_clean_list(report: CheckReport, path: str | os.PathLike, *,
                     absolute: bool = False) -> int:
    """Writes every good sample of ``report`` to ``path`` and returns the number of samples.

    * ImageFolder / file list sources: a DALI file list, ``<path> <label>`` per line, with the
      original labels (so class indices match ``fn.readers.file(file_root=root)`` even when some
      class lost all its files). Paths are relative to ``report.file_root`` (use
      ``fn.readers.file(file_list=path, file_root=report.file_root)``), or absolute with
      ``absolute=True`` (then ``file_root`` does not matter).
    * webdataset sources: DALI cannot filter shards by key, so this writes the good sample keys
      instead: a ``#`` header line, then ``<shard>\\t<key>\\t<label>`` per sample.
    """
    lines = []
    if report.kind == "webdataset":
        lines.append("# dali-mix check-data: good webdataset samples (shard<TAB>key<TAB>label); "
                     "not a DALI file list")
        for g in report.good:
            lines.append(f"{g.path}\t{g.key}\t{g.label}")
    else:
        root = report.file_root or "."
        for g in report.good:
            p = g.path
            if absolute and not os.path.isabs(p):
                p = os.path.abspath(os.path.join(root, p))
            lines.append(f"{p} {g.label}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))
    return len(report.good)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``check-data`` sub-command on ``subparsers`` and returns its parser."""
    p = subparsers.add_parser(
        "check-data",
        help="find corrupt, truncated, non-image and undecodable files, empty classes and "
             "class imbalance in a data set",
        description=(
            "Check an ImageFolder root, a DALI file list or webdataset shards before training. "
            "Every image is decoded with Pillow and then with DALI's CPU decoder. Prints one "
            "'BAD <path>: <reason>' line per unusable sample, 'EMPTY CLASS' / 'IMBALANCE' lines, "
            "a summary and notes (grayscale/CMYK/alpha/palette images are allowed). Exits 1 when "
            "anything is wrong, 0 when clean, 2 when the source cannot be found."
        ),
    )
    p.add_argument("source", nargs="+", metavar="SOURCE",
                   help="ImageFolder root, DALI file list (.txt), or .tar shards / glob / "
                        "brace range (e.g. 'train-{000..009}.tar') / folder of shards")
    p.add_argument("--file-root", default=None,
                   help="folder the file list's paths are relative to (default: the list's folder)")
    p.add_argument("--workers", type=int, default=os.cpu_count(),
                   help="checking threads (default: %(default)s = number of CPUs)")
    p.add_argument("--imbalance-ratio", type=float, default=10.0,
                   help="fail when the largest class has more than this many times the samples "
                        "of the smallest non-empty class (default: %(default)s)")
    p.add_argument("--write-clean-list", metavar="FILE", default=None,
                   help="write a DALI file list ('path label' per line) of every good sample; "
                        "for webdataset sources writes 'shard<TAB>key<TAB>label' lines instead")
    p.add_argument("--absolute-paths", action="store_true",
                   help="write absolute paths in --write-clean-list (default: relative to the "
                        "ImageFolder root / file root)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="labels must be below this (file lists, shards; default: the number of "
                        "names in the source's classes.txt, if any)")
    p.add_argument("--batch-size", type=int, default=32, help="DALI decode batch (default: 32)")
    p.add_argument("--no-dali", action="store_true",
                   help="check with Pillow only (faster, misses images only DALI rejects)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="list every noted file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Runs ``check-data`` for parsed ``args``; returns the exit code (0 clean, 1 problems,
    2 source not found)."""
    source = args.source[0] if len(args.source) == 1 else args.source
    try:
        report = check_source(source, workers=args.workers, imbalance_ratio=args.imbalance_ratio,
                              progress=not args.no_progress, file_root=args.file_root,
                              use_dali=not args.no_dali, batch_size=args.batch_size,
                              num_classes=args.num_classes)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"dali-mix check-data: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary(verbose=args.verbose))
    if args.write_clean_list:
        n = write_clean_list(report, args.write_clean_list, absolute=args.absolute_paths)
        if report.kind == "webdataset":
            print(f"Wrote {n} good sample keys (shard<TAB>key<TAB>label, not a DALI file list) "
                  f"to {args.write_clean_list}")
        else:
            root = "" if args.absolute_paths else f", file_root={report.file_root!r}"
            print(f"Wrote {n} good samples to {args.write_clean_list}: use "
                  f"fn.readers.file(file_list={args.write_clean_list!r}{root})")
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=2)
    problems = report.problems()
    for line in problems:
        print(line)
    if report.ok:
        print("OK: no problems found")
        return 0
    print(f"FAILED: {len(problems)} problem(s)")
    return 1
