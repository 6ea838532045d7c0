"""A run's output directory, owned by one run at a time.

`RunDir.claim(path, resuming=..., overwrite=...)`:

- takes `path/.lock` with `fcntl.flock` and writes the owner's pid and host into it. A second
  run on the same directory is refused while the first lives, naming its pid; the kernel drops
  the lock when its holder dies (even by SIGKILL), so the lock of a dead run is taken over (on a
  file system without flock, the pid in the file decides: a live process on this host holds it);
- refuses a fresh run (nothing to resume) in a directory that holds a previous run's
  checkpoints or metrics, unless `overwrite` (then those files are deleted first);
- deletes the temporary files that writers killed mid-write left behind.

`write_metrics(records)` rewrites `metrics.jsonl` atomically from the full per-epoch history
kept in the checkpoint, so a crash and resume never leave an epoch twice or lose one.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from dali_mix.atomic import remove_stale_temps, write_text_atomic

LOCK_NAME = ".lock"
METRICS_NAME = "metrics.jsonl"
#: Files a finished or interrupted run leaves; a fresh run refuses to start over them.
RUN_FILES = ("last.pt", "best.pt", METRICS_NAME)


class RunDirError(RuntimeError):
    """The directory cannot be used by this run (the message says why and what to do)."""


@dataclass
class RunDir:
    """An output directory claimed by this process (see the module docstring)."""

    path: Path
    lock_fd: int | None = None
    removed: list[Path] = field(default_factory=list)  # stale temporary files deleted at claim
    took_over: str | None = None  # the previous owner's lock text, when its lock was stale

    @classmethod
    def claim(cls, path: str | Path, *, resuming: bool, overwrite: bool = False) -> RunDir:
        """Create `path` if needed, lock it and check it may be (re)used; raise RunDirError."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run._lock()
        try:
            existing = [name for name in RUN_FILES if (path / name).exists()]
            if existing and not resuming:
                if not overwrite:
                    raise RunDirError(
                        f"--output {path} holds the files of an earlier run ({', '.join(existing)}); "
                        "continue it with --resume auto, or pass --overwrite to delete them and start over, "
                        "or choose another --output")
                for name in existing:
                    (path / name).unlink()
                for clean in path.glob("clean-list.rank*.txt"):
                    clean.unlink()
            run.removed = remove_stale_temps(path)
        except BaseException:
            run.release()
            raise
        return run

    def _lock(self) -> None:
        lock_path = self.path / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = _read(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            busy = False
        except BlockingIOError:
            busy = True
        except OSError:  # a file system without flock: judge by the pid the lock file names
            busy = _alive(previous)
        if busy:
            os.close(fd)
            raise RunDirError(f"--output {self.path} is in use by a running training run "
                              f"({previous or 'another process'}); wait for it to finish, stop it, "
                              "or choose another --output")
        if previous:
            self.took_over = previous
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.lock_fd = fd

    def write_metrics(self, records: list[dict]) -> None:
        """Rewrite `metrics.jsonl` (one JSON object per epoch) atomically from `records`."""
        write_text_atomic(self.path / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in records))

    def read_metrics(self) -> list[dict]:
        """The records in `metrics.jsonl` (unreadable lines skipped; [] when there is none)."""
        path = self.path / METRICS_NAME
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                records.append(record)
        return records

    def release(self) -> None:
        """Empty the lock file and drop the lock (the kernel drops it too when the process ends,
        leaving the owner's text: a later claim reports it in `took_over`)."""
        if self.lock_fd is not None:
            os.ftruncate(self.lock_fd, 0)
            os.close(self.lock_fd)
            self.lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def archive_earlier_run(path: str | Path) -> Path | None:
    """Move the earlier run in `path` aside, to `<path>-<time of its last write>` beside it, so a
    new run can start in `path` without destroying it (the trainer does this for its default
    --output only). Returns the new place, or None when `path` holds no run; RunDirError while
    that run is still alive."""
    path = Path(path)
    present = [path / name for name in RUN_FILES if (path / name).exists()]
    if not present:
        return None
    with RunDir.claim(path, resuming=True):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.stat().st_mtime for p in present)))
        dest = base = path.with_name(f"{path.name}-{stamp}")
        k = 1
        while dest.exists():
            dest, k = base.with_name(f"{base.name}.{k}"), k + 1
        os.rename(path, dest)
    return dest


def _alive(owner: str) -> bool:
    """True when `owner` ("pid N on HOST") names a live process on this host."""
    parts = owner.split()
    if len(parts) < 4 or parts[0] != "pid" or parts[3] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(fd: int) -> str:
    return os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
