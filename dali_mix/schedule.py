"""Run-time switches fed to a pipeline a batch at a time (external sources with batch_info).

DALI's `batch_info.iteration` counts the runs of a pipeline over its whole life (it does not
restart at epoch boundaries when a reader drives the epochs, and `epoch_idx` stays 0). A
`BatchClock` turns it into (epoch, step): a reader-driven pipeline makes
ceil(shard size / batch size) runs per epoch (the last one may be partly filled and dropped by
the iterator), and a resumed run starts its counter at `run_offset`. The switches below depend
only on (epoch, step), so they are exact at epoch boundaries even with prefetching and give
the same batches after a resume.
"""
from __future__ import annotations

import numpy as np


class BatchClock:
    """(epoch, step) of a pipeline run from DALI's batch_info.

    Attributes (set once the pipeline is built, before it runs):
        runs_per_epoch: pipeline runs per epoch (`dali_mix.torch.Loader.runs_per_epoch`);
            None: every run counts as epoch 0.
        run_offset: runs done before this pipeline was built (resume).
    """

    def __init__(self, runs_per_epoch: int | None = None, run_offset: int = 0):
        self.runs_per_epoch = runs_per_epoch
        self.run_offset = int(run_offset)

    def run(self, batch_info) -> int:
        it = getattr(batch_info, "iteration", None)
        if it is None:
            it = int(batch_info) if np.isscalar(batch_info) else 0
        return self.run_offset + int(it)

    def epoch_step(self, batch_info) -> tuple[int, int]:
        g = self.run(batch_info)
        if not self.runs_per_epoch:
            return 0, g
        return g // self.runs_per_epoch, g % self.runs_per_epoch


class MixOffSchedule:
    """Callable for `fn.external_source(batch=True, batch_info=True)`: (batch_size,) bool, False in
    the epochs from `off_from_epoch` on (timm's `mixup_off_epoch`), so the last epochs train
    unmixed without rebuilding the pipeline.
    """

    def __init__(self, batch_size: int, off_from_epoch: int | None, clock: BatchClock):
        self.batch_size = int(batch_size)
        self.off_from_epoch = off_from_epoch
        self.clock = clock

    def enabled(self, epoch: int) -> bool:
        return self.off_from_epoch is None or epoch < self.off_from_epoch

    def __call__(self, batch_info):
        epoch, _ = self.clock.epoch_step(batch_info)
        return np.full(self.batch_size, self.enabled(epoch), dtype=np.bool_)
