"""Run-time switches fed to a pipeline a batch at a time (external sources with batch_info).

`MixOffSchedule` turns mixing off for the last epochs of a run without rebuilding the pipeline
(timm's `mixup_off_epoch`): the pipeline asks it, for every batch, whether samples may be mixed;
the answer depends only on the epoch index DALI passes in (plus `epoch_offset` after a resume),
so it is exact at epoch boundaries even with prefetching.
"""
from __future__ import annotations

import numpy as np


class MixOffSchedule:
    """Callable for `fn.external_source(batch=True, batch_info=True)`: (batch_size,) bool.

    Args:
        batch_size: samples per batch.
        off_from_epoch: first epoch (0-based) in which mixing is off; None: never off.
        epoch_offset: epochs already done before this pipeline was built (set on resume).
    """

    def __init__(self, batch_size: int, off_from_epoch: int | None, epoch_offset: int = 0):
        self.batch_size = int(batch_size)
        self.off_from_epoch = off_from_epoch
        self.epoch_offset = int(epoch_offset)

    def enabled(self, epoch: int) -> bool:
        return self.off_from_epoch is None or epoch < self.off_from_epoch

    def __call__(self, batch_info):
        epoch = self.epoch_offset + getattr(batch_info, "epoch_idx", 0)
        return np.full(self.batch_size, self.enabled(epoch), dtype=np.bool_)
