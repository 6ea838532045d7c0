"""A contender for tests of benchmarks.throughput's harness: batches of 4 zeros, each after
`cfg["seconds"][name]` seconds (no pipeline, so that a subprocess starts in a moment)."""
from __future__ import annotations

import time

import numpy as np


def build(name: str, cfg: dict):
    """(endless iterator of (images,) batches, batches prefetched while idle: 0)."""
    wait = float(cfg["seconds"][name])

    def batches():
        while True:
            time.sleep(wait)
            yield (np.zeros((4, 1), np.float32),)
    return batches(), 0
