"""Checkpoints that lose nothing: atomic writes, safe loads.

`save_atomic(obj, path)` writes to a temporary file in the same directory, flushes and fsyncs
it, then `os.replace`s it over `path` (atomic on POSIX) and fsyncs the directory: a run killed at
any moment leaves either the old complete checkpoint or the new complete one, never a truncated
file under the real name. `load(path)` uses `torch.load(weights_only=True)`: only tensors and
plain containers are accepted, no arbitrary pickled code; anything else in the checkpoint must
therefore be plain Python data (DALI pipeline checkpoints are stored as str, RNG states as
tensors or lists).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomic(obj, path: str | Path) -> Path:
    """Serialise `obj` with torch.save to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
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


def load(path: str | Path, map_location="cpu"):
    """Load a checkpoint written by `save_atomic` (weights_only=True); clear error if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not a checkpoint
        raise ValueError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from exc
