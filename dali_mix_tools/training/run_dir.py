"""A run's output directory, owned by one run at a time.

`RunDir.claim(path, resuming=..., overwrite=...)`:

- takes `path/.lock` with `fcntl.flock` and writes the owner's pid and host into it. A second
  run on the same directory is refused while the first lives, naming its pid; the kernel drops
  the lock when its holder dies (even by SIGKILL), so the lock of a dead run is taken over (on a
  file system without flock, the pid in the file decides: a live process on this host holds it);
- refuses a fresh run (nothing to resume) in a directory that holds a previous run's
  checkpoints or metrics, unless `overwrite` (then those files are deleted first);
- deletes the temporary files that writers killed mid-write left behind;
- write-probes the directory: an `--output` that is a file, lies under a file, or is (under) a
  read-only directory or a full disk is refused before the first step, naming the path and the
  operating system's cause (`cannot_write`).

`writing(path)` turns an OSError of a later write (a disk that fills mid-run) into a
`RunDirError` with the same one line; the atomic writes leave the last complete file in place.

`write_metrics(records)` rewrites `metrics.jsonl` atomically from the full per-epoch history
kept in the checkpoint, so a crash and resume never leave an epoch twice or lose one.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dali_mix.atomic import copy_atomic, remove_stale_temps, write_text_atomic
from dali_mix.checkpoint import save_atomic

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
        """Create `path` if needed, lock it, write-probe it and check it may be (re)used; raise
        RunDirError (an OSError on the way names the path and the OS cause)."""
        path = Path(path)
        with writing(path):
            if path.exists() and not path.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a directory", str(path))
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(prefix=".write-probe.", dir=path) as probe:
                probe.write(b"probe")
                probe.flush()
                os.fsync(probe.fileno())
        run = cls(path)
        with writing(path / LOCK_NAME):
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

    def save_checkpoint(self, name: str, state: dict) -> Path:
        """Write `state` to `name` in the directory atomically (`dali_mix.checkpoint`). A failed
        write (a full disk) raises RunDirError naming the path and the OS cause, and whether the
        earlier complete checkpoint under that name is still there (the atomic write keeps it)."""
        path = self.path / name
        try:
            return save_atomic(state, path)
        except OSError as exc:
            kept = (f"{path} still holds the last complete checkpoint: free space, then continue with "
                    "--resume auto") if path.is_file() else "no checkpoint was saved before this one"
            raise RunDirError(f"{cannot_write(path, exc)}; {kept}") from None

    def copy(self, src: str | Path, name: str) -> Path:
        """Copy the file `src` to `name` in the directory atomically; RunDirError on failure."""
        with writing(self.path / name):
            return copy_atomic(src, self.path / name)

    def write_metrics(self, records: list[dict]) -> None:
        """Rewrite `metrics.jsonl` (one JSON object per epoch) atomically from `records`;
        RunDirError on failure."""
        with writing(self.path / METRICS_NAME):
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


def cannot_write(path: str | Path, exc: OSError) -> str:
    """One line naming `path` and the operating system's cause of `exc`: "cannot write
    runs/x/last.pt: No space left on device (errno 28, ENOSPC)"; a parent the OS names, or a
    parent that is a file, is added."""
    code = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno is not None:
        cause += f" (errno {exc.errno}{', ' + code if code else ''})"
    where = exc.filename
    if where is not None and Path(os.fspath(where)) in Path(path).parents:  # a parent failed
        cause += f" at {os.fspath(where)}"
    if exc.errno == errno.ENOTDIR:
        blocking = next((p for p in Path(path).parents if p.is_file()), None)
        if blocking is not None:
            cause += f": {blocking} is a file"
    return f"cannot write {os.fspath(path)}: {cause}"


@contextmanager
def writing(path: str | Path):
    """Run a write of (or into) `path`; an OSError becomes a RunDirError, `cannot_write`'s line."""
    try:
        yield
    except OSError as exc:
        raise RunDirError(cannot_write(path, exc)) from None


@contextmanager
def output_errors():
    """For the trainer's main: a RunDirError stops the process with its one line, exit status 1."""
    try:
        yield
    except RunDirError as exc:
        raise SystemExit(f"error: {exc}") from None


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
        with writing(dest):
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
