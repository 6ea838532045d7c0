"""Audio data in the Speech Commands layout: which files are the train, val and test clips, their
labels and classes, and the background-noise files.

The layout (Google Speech Commands v2; `dali-mix data spoken-commands` writes it)::

    ROOT/<class>/<file>.wav|.flac|.ogg   one folder per class (sorted names -> labels 0..C-1)
    ROOT/validation_list.txt             "<class>/<file>" per line: the validation clips
    ROOT/testing_list.txt                the test clips; every other clip is a train clip
    ROOT/_background_noise_/*.wav        noise recordings (never a class)

Rules (shared by the trainer and `dali-mix check-data`): hidden entries (".*") and folders whose
name starts with "_" are never classes; samples are the non-hidden files directly in a class
folder whose extension (case-insensitive) is in `AUDIO_EXTENSIONS`, sorted by name. A list line
naming a file that is not a sample is an error (naming the list and line); a class folder without
audio is an error; so is a split left without samples. Without a `validation_list.txt` there is
no validation split (an error for training: the layout is the one Speech Commands defines).

Each split is a `dali_mix.data.sources.Source` of kind "folder" (files and labels), so the readers of
`pipelines/sources.py` and the train/val class checks work on it unchanged. Nothing here decodes
audio: resolving costs one directory scan and reading the two lists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dali_mix.data.sources import FolderListing, Source, is_hidden

#: File extensions (lower case, with the dot) that are samples in a class folder.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
NOISE_DIR = "_background_noise_"


@dataclass(frozen=True)
class SpeechCommandsSplits:
    """The resolved layout: a Source per split (test None without a testing_list.txt), the
    class names (index = label) and the noise files (absolute paths, sorted; may be empty)."""

    root: str
    train: Source
    val: Source
    test: Source | None
    classes: tuple
    noise_files: tuple


def is_speech_commands(root: str | Path) -> bool:
    """True when `root` is a folder in the Speech Commands layout (it has a validation_list.txt)."""
    return (Path(root) / VALIDATION_LIST).is_file()


def is_audio_file(name: str) -> bool:
    return not is_hidden(name) and name.lower().endswith(AUDIO_EXTENSIONS)


def is_class_folder(name: str) -> bool:
    """A folder name that is a class: not hidden, not starting with "_" (`_background_noise_`)."""
    return not is_hidden(name) and not name.startswith("_")


def list_audio_folder(root: str | Path) -> FolderListing:
    """The class folders and audio files of `root` by the rules above (`skipped`: what is
    neither: lists, noise, README files, other extensions). A class folder without audio keeps
    its label; `resolve_speech_commands` refuses it, `dali-mix check-data` reports it."""
    root = os.fspath(root)
    out = FolderListing()
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.is_dir() and is_class_folder(e.name):
            out.classes.append(e.name)
        elif e.name not in (VALIDATION_LIST, TESTING_LIST, NOISE_DIR):
            out.skipped.append(e.path + ("/" if e.is_dir() else ""))
    for label, name in enumerate(out.classes):
        with os.scandir(os.path.join(root, name)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_file() and is_audio_file(e.name):
                out.files.append(e.path)
                out.labels.append(label)
            else:
                out.skipped.append(e.path + ("/" if e.is_dir() else ""))
    return out


def _read_list(root: Path, name: str, samples: dict[str, int]) -> list[str]:
    path = root / name
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        rel = line.strip()
        if not rel:
            continue
        if rel not in samples:
            raise ValueError(f"{path}:{n}: {rel!r} is not an audio file of a class folder of {root}")
        out.append(rel)
    return out


def resolve_speech_commands(root: str | Path) -> SpeechCommandsSplits:
    """List `root` by the rules above; ValueError naming the folder, list or line at fault."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise ValueError(f"audio data {str(root)!r} is not a folder")
    listing = list_audio_folder(root)
    classes = listing.classes
    if not classes:
        raise ValueError(f"audio data {str(root)!r}: no class folders (expected root/<class>/<clip>.wav)")
    samples = {f"{classes[label]}/{os.path.basename(f)}": label for f, label in zip(listing.files, listing.labels)}
    present = set(listing.labels)
    for label, name in enumerate(classes):
        if label not in present:
            raise ValueError(f"class folder {str(root / name)!r} holds no audio files "
                             f"(extensions {', '.join(AUDIO_EXTENSIONS)})")
    val = _read_list(root, VALIDATION_LIST, samples)
    test = _read_list(root, TESTING_LIST, samples)
    both = sorted(set(val) & set(test))
    if both:
        raise ValueError(f"{root}: {both[0]!r} is in both {VALIDATION_LIST} and {TESTING_LIST}")
    held_out = set(val) | set(test)
    train = [rel for rel in samples if rel not in held_out]

    def source(rels: list[str], what: str) -> Source:
        if not rels:
            raise ValueError(f"audio data {str(root)!r}: the {what} split has no clips")
        rels = sorted(rels)
        return Source("folder", str(root), tuple(str(root / r) for r in rels), tuple(samples[r] for r in rels),
                      tuple(classes), num_samples=len(rels), named_classes=True, extra={"split": what})

    if not val:
        raise ValueError(f"audio data {str(root)!r}: no {VALIDATION_LIST} (or it is empty): the Speech "
                         "Commands layout names the validation clips there")
    noise_dir = root / NOISE_DIR
    noise = ()
    if noise_dir.is_dir():
        noise = tuple(sorted(str(p) for p in noise_dir.iterdir() if p.is_file() and is_audio_file(p.name)))
    return SpeechCommandsSplits(str(root), source(train, "train"), source(val, "validation"),
                                source(test, "testing") if test else None, tuple(classes), noise)
