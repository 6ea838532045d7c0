"""PyTorch side of a DALI pipeline: an iterator that yields torch tensors, with checks.

`Loader` wraps `nvidia.dali.plugin.pytorch.DALIGenericIterator` for one pipeline (one process):
- yields tuples of torch tensors in the order of `output_map`, on the pipeline's device (CPU
  tensors for a CPU pipeline, CUDA tensors on `device_id` for a GPU pipeline);
- `len(loader)` is the number of batches of the coming (or current) epoch on this shard, from
  the reader named `reader_name`; it resets itself at the end of every epoch (`auto_reset`);
- train mode (`train=True`, DALI's `LastBatchPolicy.DROP`) yields full batches only: every
  shard stops after floor(floor(n / shards) / batch) batches (DALI's rule, the same on every
  rank, so distributed steps stay in step); the reader runs on, so the next epoch starts where
  this one stopped;
- val mode (`train=False`, `LastBatchPolicy.PARTIAL`) yields every sample of the shard exactly
  once, the last batch partial: the reader must be built with `pad_last_batch=True` (checked
  here); padded duplicates are cut off and a batch of padding only is skipped; with
  `stick_to_shard=False` the reader moves to the next shard every epoch, and `len(loader)`
  follows it (`shard_size_at(epoch)`);
- output names: "labels" (and "labels_a"/"labels_b"/"labels0"/"labels1") are squeezed to (N,)
  int64, "lam" to (N,) float32; an output so named that carries (N, C) soft targets stops with a
  ValueError naming it (name it "targets": `dali_mix.output_names(recipe)`); the number of
  names must equal the pipeline's number of outputs;
- with `num_classes`, every batch is checked: labels must lie in [0, num_classes) and dense
  "targets" rows must sum to 1 (`multi_label=True`: lie in [0, 1]), so a label >= num_classes
  (which `fn.one_hot` turns into an all-zero row without a word) stops training with a
  ValueError instead of training on it;
- with `num_classes` or `multi_label=True`, every batch's "targets" are searched for the rows
  `random_mix` marks for a sample with bad multi-label labels (`dali_mix.labels.LABEL_PROBLEMS`:
  a class id outside [0, C), a multi-hot vector of another length, a value other than 0/1): a
  LabelError names the rows and the cause.

Keywords of `DALIGenericIterator` are accepted where they mean something here:
`last_batch_policy` (DROP = train, PARTIAL = val; FILL is refused: it repeats samples),
`auto_reset` (the Loader always resets at the end of an epoch; a later `reset()` is harmless),
`prepare_first_batch`, `dynamic_shape` (ignored, as DALI does), a one-pipeline list. `size`,
`last_batch_padded` and `fill_last_batch` are refused with what to do instead.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from dali_mix.labels import LABEL_PROBLEMS

_LABEL_NAMES = ("labels", "labels_a", "labels_b", "labels0", "labels1")
_TARGET_NAMES = ("targets", "targets0", "targets1")

_REFUSED = {
    "size": "the Loader takes the epoch size from the reader named `reader_name`; give the "
            "reader a name (fn.readers.*(..., name='Reader')) and pass reader_name",
    "last_batch_padded": "the Loader reads it from the reader (its pad_last_batch argument)",
    "fill_last_batch": "the Loader never fills a batch with repeated samples: train=True drops "
                       "the incomplete last batch, train=False yields it partial",
}


class Loader:
    """Iterate a built or unbuilt DALI pipeline as torch tensors (see module docstring).

    Args:
        pipeline: a DALI Pipeline (built here if needed), or a list holding one.
        output_map: names of the pipeline outputs, in order (e.g. ["images", "targets"]); as
            many names as the pipeline has outputs.
        reader_name: name of the pipeline's reader (`name=` of `fn.readers.*`), for epoch size.
        train: True drops the last incomplete batch; False keeps every sample once (the reader
            needs `pad_last_batch=True`). None (default): from `last_batch_policy`, else True.
        num_classes: enables the per-batch label/target checks.
        multi_label: the dense targets are multi-label (`MixRecipe.multi_label`): their rows
            are checked to lie in [0, 1] instead of summing to 1 (with `num_classes`), and
            rows marked for bad labels raise naming the cause (also without `num_classes`).
        last_batch_policy: DALI's `LastBatchPolicy` (or its name): DROP means train=True,
            PARTIAL train=False; FILL is refused (it repeats samples).
        auto_reset: accepted for DALIGenericIterator users; the Loader always resets itself.
        prepare_first_batch: as in DALI (False by default here: nothing runs until iterated).
        epoch: index of the first epoch this Loader runs (a resumed run), for `len(loader)`
            when the reader rotates its shard every epoch.

    Raises:
        ValueError: output names that do not match the pipeline's outputs, FILL, a val Loader
            on a reader without `pad_last_batch=True`, a refused DALIGenericIterator keyword, a
            batch that fails the checks above.
    """

    def __init__(self, pipeline, output_map: Sequence[str], reader_name: str = "Reader", *,
                 train: bool | None = None, num_classes: int | None = None, multi_label: bool = False,
                 last_batch_policy: LastBatchPolicy | str | None = None,
                 auto_reset: bool | str | None = True, prepare_first_batch: bool = False,
                 epoch: int = 0, **dali_kwargs: Any):
        self.pipeline = _one_pipeline(pipeline)
        self.output_map = list(output_map)
        self.reader_name = reader_name
        self.num_classes = num_classes
        self.multi_label = bool(multi_label)
        self.train = _train_mode(train, last_batch_policy)
        self.epoch = int(epoch)
        for key in dali_kwargs:
            if key in _REFUSED:
                raise ValueError(f"Loader: {key}= is not taken: {_REFUSED[key]}")
            if key != "dynamic_shape":
                raise TypeError(f"Loader got an unexpected keyword argument {key!r}")
        self.pipeline.build()
        n_out = self.pipeline.num_outputs
        if n_out != len(self.output_map):
            raise ValueError(f"output_map names {len(self.output_map)} outputs "
                             f"{self.output_map}, but the pipeline returns {n_out}: give one "
                             f"name per output, in order (dali_mix.output_names(recipe) gives "
                             f"the names of MixResult.outputs())")
        self._meta = self.pipeline.reader_meta(reader_name)
        if not self.train and not self._meta["pad_last_batch"]:
            raise ValueError(f"Loader(train=False) needs the reader {reader_name!r} built with "
                             f"pad_last_batch=True: without it DALI repeats some samples and "
                             f"drops others from the second epoch on (and stick_to_shard=True "
                             f"to read the same shard every epoch)")
        policy = LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL
        self._it = DALIGenericIterator([self.pipeline], self.output_map, reader_name=reader_name,
                                       last_batch_policy=policy, auto_reset=True,
                                       prepare_first_batch=prepare_first_batch)

    # ---- epoch geometry -----------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Samples per pipeline run (the pipeline's max_batch_size)."""
        return self.pipeline.max_batch_size

    def shard_index(self, epoch: int) -> int:
        """Index of the shard this process reads in `epoch` (0-based): its `shard_id`, or with
        `stick_to_shard=False` (DALI's default) (shard_id + epoch) % num_shards."""
        meta = self._meta
        if meta["stick_to_shard"]:
            return meta["shard_id"]
        return (meta["shard_id"] + epoch) % meta["number_of_shards"]

    def shard_size_at(self, epoch: int) -> int:
        """Samples in the shard this process reads in `epoch`, as DALI's reader splits the
        data: floor(n (k + 1) / S) - floor(n k / S) for shard k of S."""
        n, shards = self._meta["epoch_size"], self._meta["number_of_shards"]
        k = self.shard_index(epoch)
        return n * (k + 1) // shards - n * k // shards

    @property
    def shard_size(self) -> int:
        """Samples in this process's shard in the current epoch (`self.epoch`)."""
        return self.shard_size_at(self.epoch)

    def batches_at(self, epoch: int) -> int:
        """Batches this Loader yields in `epoch`: train floor(floor(n / S) / B) (the same on every
        shard and epoch: DALI stops every shard at the smallest one), val
        ceil(shard_size_at(epoch) / B)."""
        if self.train:
            return self._meta["epoch_size"] // self._meta["number_of_shards"] // self.batch_size
        return -(-self.shard_size_at(epoch) // self.batch_size)

    def __len__(self) -> int:
        """Batches of the current epoch (`batches_at(self.epoch)`)."""
        return self.batches_at(self.epoch)

    @property
    def runs_per_epoch(self) -> int:
        """Pipeline runs per epoch, the same in every epoch: what
        `dali_mix.schedule.BatchClock.runs_per_epoch` needs. Train: ceil(floor(n / S) / B) (the
        run holding the dropped partial batch counts); val: ceil(padded shard / B), the padded
        shard being ceil(n / S) samples (a run of padding only counts, though not yielded)."""
        return math.ceil(self._it.size / self.batch_size)

    # ---- iteration ----------------------------------------------------------------------------
    def __iter__(self):
        for batch in self._it:
            data = batch[0]
            if not self.train and len(data[self.output_map[0]]) == 0:
                continue  # a run of padding only (a shard smaller than the padded size)
            yield self._convert(data)
        self.epoch += 1

    def reset(self) -> None:
        """Restart the epoch (done automatically at the end of each epoch; a reset at the start
        of an epoch does nothing)."""
        if self._it._counter != 0:
            self._it.reset()

    def checkpoint(self) -> bytes:
        """Serialised DALI pipeline state (pipelines built with `enable_checkpointing=True`)."""
        return self._it.checkpoints()[0]

    def _convert(self, data: dict) -> tuple:
        out = []
        for name in self.output_map:
            t = data[name]
            if name in _LABEL_NAMES:
                check_label_shape(name, t)
                t = t.reshape(-1).long()
            elif name in ("lam", "mask_weight"):
                t = t.reshape(-1).float()
            elif name == "slot_labels":  # (N, S): the labels of a many-source plan's slots
                t = t.reshape(t.shape[0], -1).long()
            elif name == "slot_weights":
                t = t.reshape(t.shape[0], -1).float()
            out.append(t)
        batch = dict(zip(self.output_map, out))
        if self.num_classes is not None:
            check_batch(batch, self.num_classes, multi_label=self.multi_label)
        elif self.multi_label:
            check_marked_targets(batch)
        return tuple(out)


def _one_pipeline(pipeline):
    """The pipeline from `pipeline` or a one-element list of pipelines."""
    if isinstance(pipeline, (list, tuple)):
        if len(pipeline) != 1:
            raise ValueError(f"Loader takes one pipeline (one Loader per process), got "
                             f"{len(pipeline)}")
        return pipeline[0]
    return pipeline


def _train_mode(train: bool | None, policy: LastBatchPolicy | str | None) -> bool:
    """train from `train` and DALI's `last_batch_policy` (see `Loader`)."""
    if isinstance(policy, str):
        policy = LastBatchPolicy[policy.upper()]
    if policy == LastBatchPolicy.FILL:
        raise ValueError("Loader: last_batch_policy=FILL is not taken (it repeats samples to "
                         "fill the last batch): use train=True (drops the incomplete last batch) "
                         "or train=False (yields it partial, every sample once)")
    implied = None if policy is None else policy == LastBatchPolicy.DROP
    if train is not None and implied is not None and bool(train) != implied:
        raise ValueError(f"Loader: train={train} contradicts last_batch_policy={policy.name} "
                         f"(DROP is train=True, PARTIAL is train=False); give one of them")
    return bool(train) if train is not None else (implied if implied is not None else True)


def check_label_shape(name: str, labels: torch.Tensor) -> None:
    """Raise ValueError unless `labels` holds one value per sample ((N,) or (N, 1, ...))."""
    if labels.ndim >= 2 and labels[0].numel() != 1:
        raise ValueError(f"output {name!r} carries {tuple(labels.shape)} {labels.dtype} values, "
                         f"not one label per sample: soft targets (N, C) must be named "
                         f"'targets' (dali_mix.output_names(recipe) gives the names in order)")


class LabelError(ValueError):
    """A batch's labels leave [0, num_classes) (`check_batch`)."""


def check_marked_targets(batch: dict) -> None:
    """Raise LabelError naming the rows and the cause when dense targets hold rows that
    `random_mix` marked for bad multi-label labels (negative values, `dali_mix.labels`)."""
    for name in _TARGET_NAMES:
        t = batch.get(name)
        if t is None or t.ndim != 2 or t.shape[1] == 0:
            continue
        lowest = t.float().min(dim=1).values
        if bool((lowest < 0).any()):
            rows = torch.nonzero(lowest < 0).reshape(-1).tolist()[:10]
            causes = sorted({LABEL_PROBLEMS.get(int(round(-float(lowest[i]))), "a negative target value")
                             for i in rows})
            raise LabelError(f"{name} rows {rows}: the labels of these samples hold {' / '.join(causes)}; "
                             f"check the dataset's labels, num_classes and the recipe's label_format")


def check_batch(batch: dict, num_classes: int, atol: float = 1e-4, multi_label: bool = False) -> None:
    """Raise LabelError (a ValueError) if labels leave [0, num_classes), dense target rows do
    not sum to 1 (a label >= num_classes made an all-zero one-hot row) or, `multi_label`,
    target values leave [0, 1]; marked rows first (`check_marked_targets`)."""
    check_marked_targets(batch)
    for name in _LABEL_NAMES + ("slot_labels",):
        if name in batch:
            labels = batch[name]
            bad = (labels < 0) | (labels >= num_classes)
            if bool(bad.any()):
                raise LabelError(f"{name}: label(s) {sorted(set(labels[bad].tolist()))[:10]} outside "
                                 f"[0, {num_classes}) (num_classes={num_classes}); check the "
                                 f"dataset's labels or num_classes")
    for name in _TARGET_NAMES:
        if name not in batch:
            continue
        t = batch[name]
        if t.ndim != 2 or t.shape[1] != num_classes:
            raise ValueError(f"{name} must be (N, {num_classes}), got {tuple(t.shape)}")
        if multi_label:
            t = t.float()
            bad = ((t < -atol) | (t > 1.0 + atol) | ~torch.isfinite(t)).any(dim=1)
            if bool(bad.any()):
                rows = torch.nonzero(bad).reshape(-1).tolist()[:10]
                raise LabelError(f"{name} rows {rows} hold values outside [0, 1]: not multi-label "
                                 f"targets of dali_mix.random_mix")
            continue
        sums = t.float().sum(dim=1)
        bad = (sums - 1.0).abs() > atol
        if bool(bad.any()):
            rows = torch.nonzero(bad).reshape(-1).tolist()[:10]
            shown = [round(v, 4) for v in sums[bad].tolist()[:10]]
            raise LabelError(f"{name} rows {rows} sum to {shown} instead of 1: a "
                             f"label >= num_classes ({num_classes}) gave an all-zero one-hot row "
                             f"(multi-label targets: Loader(..., multi_label=True))")
