"""PyTorch side of a DALI pipeline: an iterator that yields torch tensors, with checks.

`Loader` wraps `nvidia.dali.plugin.pytorch.DALIGenericIterator`:
- yields tuples of torch tensors in the order of `output_map`, on the pipeline's device (CPU
  tensors for a CPU pipeline, CUDA tensors on `device_id` for a GPU pipeline);
- `len(loader)` is the number of batches per epoch (per shard), from the reader named
  `reader_name`; it resets itself at the end of every epoch;
- train mode drops the incomplete last batch (every batch is full, so pairing and batch
  statistics behave); val mode keeps every sample exactly once (the reader must be built with
  `pad_last_batch=True`; padded duplicates are cut off);
- an output named "labels" is squeezed to (N,) int64; outputs named "labels_a"/"labels_b" too and
  "lam" to (N,) float32;
- with `num_classes`, every batch is checked: labels must lie in [0, num_classes) and dense
  "targets" rows must sum to 1, so a label >= num_classes (which `fn.one_hot` turns into an
  all-zero row without a word) stops training with a ValueError instead of training on it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

_LABEL_NAMES = ("labels", "labels_a", "labels_b", "labels0", "labels1")
_TARGET_NAMES = ("targets", "targets0", "targets1")


class Loader:
    """Iterate a built or unbuilt DALI pipeline as torch tensors (see module docstring).

    Args:
        pipeline: a DALI Pipeline (built here if needed).
        output_map: names of the pipeline outputs, in order (e.g. ["images", "targets"]).
        reader_name: name of the pipeline's reader (`name=` of `fn.readers.*`), for epoch size.
        train: True drops the last incomplete batch; False keeps every sample once.
        num_classes: enables the per-batch label/target checks.
    """

    def __init__(self, pipeline, output_map: Sequence[str], reader_name: str = "Reader", *,
                 train: bool = True, num_classes: int | None = None):
        self.output_map = list(output_map)
        self.num_classes = num_classes
        self.train = train
        policy = LastBatchPolicy.DROP if train else LastBatchPolicy.PARTIAL
        self.pipeline = pipeline
        self.reader_name = reader_name
        self._it = DALIGenericIterator([pipeline], self.output_map, reader_name=reader_name,
                                       last_batch_policy=policy, auto_reset=True,
                                       prepare_first_batch=False)

    def __len__(self) -> int:
        return len(self._it)

    @property
    def shard_size(self) -> int:
        """Samples in this process's shard per epoch (as DALI's reader splits the data)."""
        meta = self.pipeline.reader_meta(self.reader_name)
        n, shards, sid = meta["epoch_size"], meta["number_of_shards"], meta["shard_id"]
        return n * (sid + 1) // shards - n * sid // shards

    @property
    def runs_per_epoch(self) -> int:
        """Pipeline runs per epoch: ceil(shard size / batch size) (a partial last run is dropped
        in train mode); what `dali_mix.schedule.BatchClock.runs_per_epoch` needs."""
        return -(-self.shard_size // self.pipeline.max_batch_size)

    def __iter__(self):
        for batch in self._it:
            yield self._convert(batch[0])

    def reset(self) -> None:
        """Restart the epoch (normally automatic at the end of each epoch)."""
        self._it.reset()

    def checkpoint(self) -> bytes:
        """Serialised DALI pipeline state (pipelines built with `enable_checkpointing=True`)."""
        return self._it.checkpoints()[0]

    def _convert(self, data: dict) -> tuple:
        out = []
        for name in self.output_map:
            t = data[name]
            if name in _LABEL_NAMES:
                t = t.reshape(-1).long()
            elif name == "lam":
                t = t.reshape(-1).float()
            out.append(t)
        if self.num_classes is not None:
            check_batch(dict(zip(self.output_map, out)), self.num_classes)
        return tuple(out)


def check_batch(batch: dict, num_classes: int, atol: float = 1e-4) -> None:
    """Raise ValueError if labels leave [0, num_classes) or dense target rows do not sum to 1."""
    for name in _LABEL_NAMES:
        if name in batch:
            labels = batch[name]
            bad = (labels < 0) | (labels >= num_classes)
            if bool(bad.any()):
                raise ValueError(f"{name}: label(s) {sorted(set(labels[bad].tolist()))[:10]} outside "
                                 f"[0, {num_classes}) (num_classes={num_classes}); check the "
                                 f"dataset's labels or num_classes")
    for name in _TARGET_NAMES:
        if name not in batch:
            continue
        t = batch[name]
        if t.ndim != 2 or t.shape[1] != num_classes:
            raise ValueError(f"{name} must be (N, {num_classes}), got {tuple(t.shape)}")
        sums = t.float().sum(dim=1)
        bad = (sums - 1.0).abs() > atol
        if bool(bad.any()):
            rows = torch.nonzero(bad).reshape(-1).tolist()[:10]
            raise ValueError(f"{name} rows {rows} sum to {sums[bad].tolist()[:10]} instead of 1: a "
                             f"label >= num_classes ({num_classes}) gave an all-zero one-hot row")
