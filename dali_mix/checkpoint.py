"""Checkpoints that lose nothing: atomic writes, safe loads.

`save_atomic(obj, path)` writes through `dali_mix.atomic.write_atomic` (temporary file beside
`path`, fsync, `os.replace`): a run killed at any moment leaves either the old complete
checkpoint or the new complete one, never a truncated file under the real name. `load(path)`
uses `torch.load(weights_only=True)`: only tensors and plain containers are accepted, no
arbitrary pickled code; anything else in the checkpoint must therefore be plain Python data
(DALI pipeline checkpoints are stored as str, RNG states as tensors or lists).
"""
from __future__ import annotations

from pathlib import Path

import torch

from dali_mix.atomic import write_atomic


def save_atomic(obj, path: str | Path) -> Path:
    """Serialise `obj` with torch.save to `path` atomically (`dali_mix.atomic`); returns the path."""
    return write_atomic(path, lambda f: torch.save(obj, f))


def load(path: str | Path, map_location="cpu"):
    """Load a checkpoint written by `save_atomic` (weights_only=True); clear error if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not a checkpoint
        raise ValueError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from exc
