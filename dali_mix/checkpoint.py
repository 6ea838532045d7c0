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
    """Serialise `obj` with torch.save to `path` atomically (`dali_mix.atomic`); returns the path.

    A write that fails (a full disk) raises the OSError the file raised: torch's zip writer
    reports it only as a RuntimeError about a file position ("unexpected pos"), which names
    no cause."""
    def write(f) -> None:
        recording = _FirstWriteError(f)
        try:
            torch.save(obj, recording)
        except Exception:
            if recording.error is not None:
                raise recording.error from None
            raise

    return write_atomic(path, write)


class _FirstWriteError:
    """A binary file whose `write` remembers the first OSError it raised (`error`)."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def load(path: str | Path, map_location="cpu"):
    """Load a checkpoint written by `save_atomic` (weights_only=True); a ValueError in one line
    if unreadable (truncated, corrupt, not a checkpoint), naming the path and the cause."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not a checkpoint
        raise ValueError(f"checkpoint {path} is unreadable ({_cause(exc)})") from None


def _cause(exc: Exception) -> str:
    """torch.load's error in one line, without its advice to retry with weights_only=False
    (that would unpickle arbitrary code from the file: never done here, so never suggested)."""
    text = str(exc)
    if "weights_only" in text:  # torch's "Weights only load failed ... will likely succeed" text
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        detail = detail.split("Check the documentation", 1)[0]
        detail = detail.split(" Please use `torch.serialization", 1)[0]
        detail = " ".join(detail.split()).rstrip(".") or "not a file torch.save wrote"
        return (f"not a checkpoint of tensors and plain data: {detail}; dali-mix loads checkpoints "
                "with weights_only=True and never unpickles other objects")
    return f"{type(exc).__name__}: {' '.join(text.split())}"
