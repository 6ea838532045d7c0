"""DALI readers for the data sources of `dali_mix.data.sources` (ImageFolder trees, DALI file lists,
webdataset shards).

The source model (which files are samples, their labels and classes, hidden files, extensions,
shards) lives in the library, `dali_mix.data.sources`, so that `dali-mix check-data` and the
trainer share one set of rules; import it from there. `read(source, ...)` adds the matching DALI
reader to the current pipeline and returns (encoded images, int32 labels).
"""
from __future__ import annotations

import numpy as np
from nvidia.dali import fn, types

from dali_mix.data.sources import WDS_IMAGE_EXTENSIONS, WDS_LABEL_EXTENSION, Source

WDS_IMAGE_EXT = ";".join(WDS_IMAGE_EXTENSIONS)


def read(source: Source, *, train: bool, shard_id: int = 0, num_shards: int = 1, seed: int = 0,
         name: str = "Reader"):
    """Add the reader for `source` to the current pipeline.

    Train: the whole set is reshuffled every epoch with the same `seed` on every shard (so
    shards stay disjoint); webdataset shards are read through a shuffle buffer (shards are
    shuffled at creation). Val: stored order, each shard padded to whole batches
    (`pad_last_batch`), read exactly once per epoch.

    Returns (encoded, labels): uint8 encoded bytes and int32 labels of shape (1,) per sample.
    """
    common = dict(shard_id=shard_id, num_shards=num_shards, seed=seed, name=name,
                  pad_last_batch=not train, stick_to_shard=not train)
    if source.kind == "folder":
        return fn.readers.file(files=list(source.files), labels=list(source.labels),
                               shuffle_after_epoch=train, **common)
    if source.kind == "file_list":
        return fn.readers.file(file_list=source.files[0], file_root=source.root,
                               shuffle_after_epoch=train, **common)
    kw = {"index_paths": list(source.index_files)} if source.index_files else {}
    encoded, cls = fn.readers.webdataset(paths=list(source.files), ext=[WDS_IMAGE_EXT, WDS_LABEL_EXTENSION],
                                         random_shuffle=train, initial_fill=4096 if train else 1,
                                         missing_component_behavior="error", **kw, **common)
    return encoded, parse_ascii_label(cls)


def parse_ascii_label(cls, max_digits: int = 9):
    """ASCII decimal bytes (uint8, (L,) per sample, e.g. b"417") -> int32 (1,) per sample.

    Done in the graph (reverse, pad with '0', dot with powers of ten): no Python per sample.
    """
    digits = fn.reshape(cls, shape=[1, -1, 1], layout="HWC")
    digits = fn.flip(digits, horizontal=1)  # units first
    digits = fn.reshape(digits, shape=[-1])
    digits = fn.pad(digits, axes=[0], shape=[max_digits], fill_value=ord("0"))
    digits = fn.cast(digits, dtype=types.INT32) - ord("0")
    powers = types.Constant(np.array([10 ** i for i in range(max_digits)], dtype=np.int32), device="cpu")
    value = fn.reductions.sum(digits * powers, dtype=types.INT32)
    return fn.reshape(value, shape=[1])
