"""Training data it does not use, named: the trainer's `--check-data` and its error for files
the DALI reader or decoder fails on, both built on `dali-mix check-data` (dali_mix.data.check),
and the warning naming the entries of an ImageFolder that are not samples (`left_out`)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from dali_mix.data.sources import Source


def named_errors(loader, source, split: str = "train"):
    """Iterate `loader`; a DALI reading or decoding failure becomes an error naming the files,
    a label outside the classes (`dali_mix.torch.loader.LabelError`) one naming the data."""
    from dali_mix.torch.loader import LabelError

    try:
        yield from loader
    except LabelError as exc:
        raise SystemExit(f"error: the {split} data {source.root} has a label outside the run's classes "
                         f"(the data's, or --num-classes): {exc}") from None
    except RuntimeError as exc:
        hint = decode_error_hint(exc, source, split)
        if hint is None:
            raise
        raise SystemExit(hint) from None


class NamingErrors:
    """A loader whose iteration goes through `named_errors` (for loops that iterate a loader
    themselves, such as the evaluation); other attributes are the loader's."""

    def __init__(self, loader, source: Source, split: str):
        self.loader, self.source, self.split = loader, source, split

    def __iter__(self):
        return named_errors(self.loader, self.source, self.split)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def left_out(source: Source, split: str, limit: int = 20) -> list[str]:
    """Warning lines naming every entry of `source` (an ImageFolder) that is not a sample, with
    the rule that leaves it out (`dali_mix.data.sources.skip_reason`), the first `limit` of them and
    a count of the rest: the files in the folders explain the image count the run reports."""
    if not source.skipped:
        return []
    n = len(source.skipped)
    entries = "1 entry is" if n == 1 else f"{n} entries are"
    lines = [f"warning: {split} data {source.root}: {entries} not samples and left out "
             f"({source.num_samples} images used):"]
    lines += [f"  {path}: {reason}" for path, reason in source.skipped[:limit]]
    if n > limit:
        lines.append(f"  ... and {n - limit} more ('dali-mix check-data {source.root}' lists them all)")
    return lines


def check_report(source: Source):
    """`dali-mix check-data`'s report on a resolved Source (every file decoded once)."""
    from dali_mix.data.check import check_source

    spec = {"folder": source.root, "file_list": source.files[0]}.get(source.kind, list(source.files))
    return check_source(spec, progress=False)


def clean_source(source: Source, out_dir: Path, rank: int, log: Callable[..., None]) -> Source:
    """Scan `source` with check-data and return a Source over its good files only (a DALI file
    list in the run directory, labels and class names unchanged)."""
    from dali_mix.data.check import write_clean_list

    if source.kind == "webdataset":
        raise SystemExit("error: --check-data works on ImageFolder trees and file lists; for webdataset "
                         "shards run 'dali-mix check-data' and rewrite the shards without the bad samples")
    report = check_report(source)
    if not report.bad:
        return source
    for path, reason in report.bad:
        log(f"--check-data: leaving out {path}: {reason}")
    from dali_mix_tools.training.run_dir import writing

    clean = out_dir / f"clean-list.rank{rank}.txt"
    with writing(clean):
        out_dir.mkdir(parents=True, exist_ok=True)
        n = write_clean_list(report, clean, absolute=True)
    return Source("file_list", "/", (str(clean),), (), source.classes, num_samples=n,
                  extra={"max_label": max(g.label for g in report.good)}, named_classes=source.named_classes)


def clean_folder_split(source: Source, log: Callable[..., None]) -> Source:
    """`source` (a "folder" Source over some of a data set's files, e.g. the train split of a
    Speech Commands folder) without the files `dali-mix check-data` finds bad in its data set;
    labels and class names unchanged."""
    bad = dict(check_report(source).bad)
    kept = [(f, label) for f, label in zip(source.files, source.labels) if f not in bad]
    for f in source.files:
        if f in bad:
            log(f"--check-data: leaving out {f}: {bad[f]}")
    if not kept:
        raise SystemExit(f"error: --check-data: every file of {source.root} is unreadable")
    files, labels = zip(*kept)
    return Source("folder", source.root, files, labels, source.classes, num_samples=len(files),
                  extra=dict(source.extra), named_classes=source.named_classes)


def decode_error_hint(exc: BaseException, source: Source, split: str = "train") -> str | None:
    """When DALI fails to read or decode, name the files at fault (DALI's own message does not)."""
    if not isinstance(source, Source):  # e.g. the image/mask pairs of segmentation: DALI's message
        return None
    text = str(exc)
    words = ("decoders", "nvImageCodec", "decode", "webdataset", ".tar")
    if not any(w.lower() in text.lower() for w in words):
        return None
    bad = check_report(source).bad
    if not bad:
        return None
    listing = "\n".join(f"  {path}: {reason}" for path, reason in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return (f"error: the {split} data has {len(bad)} file(s) the reader or decoder cannot read:\n{listing}{more}\n"
            "Remove or fix them, or rerun with --check-data to train on the readable files only.")
