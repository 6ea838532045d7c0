"""One progress line on stderr, for the trainer's epochs and `dali-mix check-data`.

On a terminal the line is redrawn in place (at most every 0.2 s); otherwise (a log file, CI) a
full line is printed at most every `log_every` seconds, and once at the end.
"""
from __future__ import annotations

import sys
import time


class Progress:
    """`Progress(total, title)`; `update(done, **values)` or `advance(k)`; `close()`.

    total: number of items (None: unknown, no bar is drawn). unit: name of the items, shown as
    a rate ("1234 samples/s"); None shows no rate. values: shown as "name value" (4 digits).
    """

    def __init__(self, total: int | None, title: str, *, enabled: bool = True, unit: str | None = None,
                 log_every: float = 30.0):
        self.total, self.title, self.enabled, self.unit = total, title, enabled, unit
        self.tty = enabled and sys.stderr.isatty()
        self.interval = 0.2 if self.tty else log_every
        self.done, self.drawn = 0, -1
        self.values: dict[str, float] = {}
        self.start = self.last = time.monotonic()

    def update(self, done: int, **values: float) -> None:
        """Set the count to `done` (and the shown values); redraw when due or complete."""
        self.done = done
        self.values.update(values)
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.interval or done == self.total):
            self.last = now
            self._draw(now)

    def advance(self, k: int = 1, **values: float) -> None:
        """Add `k` to the count."""
        self.update(self.done + k, **values)

    def _draw(self, now: float) -> None:
        self.drawn = self.done
        parts = [self.title]
        if self.total:
            filled = int(24 * min(self.done / self.total, 1.0))
            parts.append(f"[{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total}")
        else:
            parts.append(str(self.done))
        if self.unit:
            parts.append(f"{self.done / max(now - self.start, 1e-9):.0f} {self.unit}/s")
        parts += [f"{k} {v:.4g}" for k, v in self.values.items()]
        line = " ".join(parts)
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        """Draw the final state if it was not drawn yet, and end the line on a terminal."""
        if not self.enabled:
            return
        if self.drawn != self.done:
            self._draw(time.monotonic())
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
