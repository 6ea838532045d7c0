"""MixMo training pipeline: the classification train pipeline's decode/crop/flip/normalise, then
`dali_mix.mixmo.mixmo_inputs` (two inputs, kappa, Cut-MixMo mask and flag) instead of mixing.

    built = mixmo_train_pipeline("/data/cifar100/train", batch_size=64 * 4, image_size=32,
                                 device="gpu", device_id=local_rank, shard_id=rank,
                                 num_shards=world_size, seed=0, num_threads=4, crop="pad",
                                 batch_repetition=4,
                                 total_epochs=300)
    loader = dali_mix.torch.Loader(built.pipe, built.output_map, built.reader_name)
    for x0, x1, t0, t1, kappa, mask, use_cut in loader:
        logits, k = net(x0, x1, kappa=kappa, mask=mask, use_cut=use_cut, return_kappa=True)
        loss = mixmo_loss(logits, t0, t1, k)

With `batch_repetition = b > 1` the *encoded* batch is repeated before decoding
(`dali_mix.mixmo.repeat_batch`), so each of the b copies of an image gets its own random crop
and flip; each batch then holds batch_size / b distinct images and (b - 1) / b of the reader's
samples are dropped (see `dali_mix.mixmo`): scale batch_size by b to keep the number of distinct
images per step, and the number of epochs to keep the number of times each image is seen.
"""
from __future__ import annotations

from nvidia.dali import pipeline_def

import dali_mix as dm
from dali_mix.mixmo import CutProbSchedule, check_mixmo_args, mixmo_inputs, repeat_batch
from dali_mix.schedule import BatchClock
from pipelines.classification import (BuiltPipeline, _check_common, _check_train_augment, _device_args, _source,
                                      decode_train, finish_train)
from pipelines.sources import read

TARGETS = ("dense", "labels")


def mixmo_train_pipeline(data, *, batch_size: int, image_size: int, device: str = "cpu",
                         device_id=None, shard_id: int = 0, num_shards: int = 1, seed: int = 0,
                         num_threads: int = 2, num_classes: int | None = None,
                         crop: str = "random_resized", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                         pad: int = 4, dtype: str = "float32", p_cut=0.5, alpha: float = 2.0,
                         batch_repetition: int = 1, smoothing: float = 0.0, target: str = "dense",
                         enable_checkpointing: bool = False, checkpoint=None,
                         prefetch_queue_depth: int = 2, reader_name: str = "Reader",
                         total_epochs: int | None = None) -> BuiltPipeline:
    """Build the MixMo training pipeline (see the module docstring).

    Args: as `pipelines.classification.train_pipeline` for the data, decoding and augmentation
        (data, batch_size, image_size, device, device_id, shard_id, num_shards, seed,
        num_threads, num_classes, crop, scale, ratio, pad, dtype, enable_checkpointing,
        checkpoint, prefetch_queue_depth, reader_name), and as `dali_mix.mixmo.mixmo_inputs`
        for p_cut (float, or a callable such as `dali_mix.mixmo.CutProbSchedule`), alpha,
        batch_repetition and smoothing.
        total_epochs: when given (and p_cut is a number), p_cut follows the paper's schedule:
            constant, then a linear decay to 0 over the last 1/12 of the epochs
            (`CutProbSchedule` on the returned pipeline's `clock`, whose `runs_per_epoch` must
            be set from the Loader before the first run).
        target: "dense" ((N, C) float32 one-hot rows with `smoothing`, outputs "targets0",
            "targets1") or "labels" (int64, outputs "labels0", "labels1"; smoothing then
            belongs to the loss).

    Returns: a BuiltPipeline (pipe unbuilt) whose outputs are
        images0, images1, targets0|labels0, targets1|labels1, kappa, mask, use_cut.
    """
    _check_common(batch_size, image_size, device, shard_id, num_shards, num_threads)
    _check_train_augment(crop, dtype, scale, ratio, image_size, pad)
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    check_mixmo_args(p_cut=p_cut, alpha=alpha, batch_repetition=batch_repetition,
                     smoothing=smoothing, batch_size=batch_size)
    source, n_classes = _source(data, num_classes)
    clock = BatchClock()
    if total_epochs is not None and isinstance(p_cut, (int, float)):
        p_cut = CutProbSchedule(batch_size, total_epochs, float(p_cut), clock=clock)
    decoder, dev_id = _device_args(device, device_id)
    target_classes = n_classes if target == "dense" else None

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=dev_id,
                  seed=seed * 1000 + shard_id + 1, enable_checkpointing=enable_checkpointing,
                  prefetch_queue_depth=prefetch_queue_depth)
    def pipe():
        encoded, labels = read(source, train=True, shard_id=shard_id, num_shards=num_shards,
                               seed=seed, name=reader_name)
        if batch_repetition != 1:
            encoded, labels = repeat_batch(encoded, labels, batch_repetition=batch_repetition)
        images = decode_train(encoded, decoder=decoder, crop=crop, scale=scale, ratio=ratio,
                              image_size=image_size)
        images = finish_train(images, crop=crop, pad=pad, image_size=image_size, dtype=dtype)
        mm = mixmo_inputs(images, labels, p_cut=p_cut, alpha=alpha, batch_repetition=batch_repetition,
                          layout="CHW", num_classes=target_classes, smoothing=smoothing, repeat=False,
                          image_size=image_size, clock=clock)
        return mm.outputs()

    kw = {} if checkpoint is None else {"checkpoint": checkpoint}
    return BuiltPipeline(pipe(**kw), dm.output_names(mixmo=True, num_classes=target_classes), reader_name, source, n_classes,
                         clock=clock)
