"""Atomic file writes: a reader (or a run killed at any moment) sees the old complete file or the
new complete one, never a partial file under the real name.

Every write goes to a temporary file `.<name>.<random>.tmp` in the same directory, is flushed
and fsynced, then `os.replace`d over the target (atomic on POSIX), and the directory is
fsynced. A process killed mid-write leaves only such a temporary file behind;
`remove_stale_temps` deletes them (call it while no other process writes to the folder).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_SUFFIX = ".tmp"


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], mode: int = 0o644) -> Path:
    """Call `write(f)` on a binary temporary file beside `path`, then move it onto `path`
    (permissions `mode`, as an ordinary file; a bare temporary file would be 0600).

    On any exception the temporary file is removed and `path` is left as it was.
    Returns `path` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """Copy the file `src` to `dst` atomically."""
    def write(f: BinaryIO) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, 1 << 20)

    return write_atomic(dst, write)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files (`.<name>.*.tmp`) that killed writers left in `folder`;
    returns what was deleted."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
