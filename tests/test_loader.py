"""dali_mix.torch.Loader: the checks that keep a DALIGenericIterator user from being misled. CPU.

Each test fails on the Loader before issue #14:
* an output_map with fewer names than the pipeline's outputs stops at construction with a
  ValueError that counts both (it was a bare IndexError at the first batch);
* an output named "labels" that carries (N, C) soft targets stops with a ValueError naming it
  (it was flattened into an (N*C,) int64 "label" tensor that passed the num_classes check);
* val mode on a reader without pad_last_batch=True stops naming the flag (it repeated and
  dropped samples from the second epoch on);
* over several epochs and every shard of a reader whose size the shards do not divide (13
  samples, 3 shards, with and without shard rotation): `len(loader)` is the number of batches
  each epoch yields, val yields each sample of the epoch's shard exactly once and never an empty
  batch, and `runs_per_epoch` is the pipeline runs per epoch (DALI's batch_info.iteration of
  each epoch's first batch is epoch * runs_per_epoch): `BatchClock` needs it;
* DALIGenericIterator's keywords: last_batch_policy (DROP / PARTIAL, FILL refused), auto_reset,
  a one-pipeline list are taken; size= and last_batch_padded= are refused saying why.
"""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def
from nvidia.dali.plugin.base_iterator import LastBatchPolicy

from dali_mix.torch import Loader

N = 13  # samples: 3 shards of 4, 4, 5


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    """N one-byte files; the reader's label of file i is i (its identity)."""
    root = tmp_path_factory.mktemp("loader")
    paths = []
    for i in range(N):
        path = root / f"{i:02d}.bin"
        path.write_bytes(bytes([i]))
        paths.append(str(path))
    return paths


def reader_pipe(files, *, batch: int = 2, shard: int = 0, shards: int = 1, pad: bool = True,
                stick: bool = False, extra=None):
    """CPU pipeline: outputs (labels (1,) int32 = sample index, run (1,) int64 = DALI's
    batch_info.iteration of the run) plus `extra(labels)` outputs when given."""

    @pipeline_def(batch_size=batch, num_threads=1, device_id=None, seed=3, prefetch_queue_depth=1)
    def pipe():
        _, labels = fn.readers.file(files=files, labels=list(range(len(files))), shard_id=shard,
                                    num_shards=shards, pad_last_batch=pad, stick_to_shard=stick,
                                    name="Reader")
        run = fn.external_source(source=lambda info: np.array([info.iteration], np.int64),
                                 batch=False, batch_info=True)
        return (labels, run) + (tuple(extra(labels)) if extra else ())

    return pipe()


def shard_samples(shard: int, shards: int) -> list[int]:
    return list(range(N * shard // shards, N * (shard + 1) // shards))


# --------------------------------------------------------------------------- output names


def test_output_map_shorter_than_the_outputs_is_a_clear_error(files):
    with pytest.raises(ValueError, match=r"output_map names 1 outputs .* pipeline returns 2"):
        loader = Loader(reader_pipe(files), ["labels"])
        next(iter(loader))  # the old Loader got here and raised a bare IndexError


def test_labels_name_on_soft_targets_stops_naming_the_output(files):
    def soft_targets(labels):
        return (fn.one_hot(labels, num_classes=16),)  # (N, 16) float32 rows summing to 1

    loader = Loader(reader_pipe(files, extra=soft_targets), ["labels", "run", "images"],
                    num_classes=16)
    assert next(iter(loader))[0].shape == (2,)  # real labels still pass

    # the mistake: soft targets under the name a DALIGenericIterator user reaches for
    loader = Loader(reader_pipe(files, extra=soft_targets), ["images", "run", "labels"],
                    num_classes=16)
    with pytest.raises(ValueError, match=r"output 'labels' carries \(2, 16\).*'targets'"):
        next(iter(loader))


# --------------------------------------------------------------------------- val mode


def test_val_on_a_reader_without_pad_last_batch_names_the_flag(files):
    with pytest.raises(ValueError, match="pad_last_batch=True"):
        Loader(reader_pipe(files, pad=False), ["labels", "run"], train=False)
    Loader(reader_pipe(files, pad=False), ["labels", "run"], train=True)  # train: fine


# --------------------------------------------------------------------------- epoch lengths


def run_epochs(loader: Loader, epochs: int) -> list[dict]:
    """Per epoch: len(loader) before it, batch sizes, sample indices, first run index."""
    out = []
    for _ in range(epochs):
        length, sizes, samples, runs = len(loader), [], [], []
        for labels, run in loader:
            sizes.append(len(labels))
            samples += labels.tolist()
            runs.append(int(run[0]))
        out.append({"len": length, "sizes": sizes, "samples": samples, "first_run": runs[0]})
    return out


@pytest.mark.parametrize("stick", [False, True], ids=["rotating", "stick_to_shard"])
@pytest.mark.parametrize("shard", [0, 1, 2])
def test_val_epochs_cover_the_epochs_shard_exactly_once(files, shard, stick):
    shards, batch = 3, 2
    loader = Loader(reader_pipe(files, batch=batch, shard=shard, shards=shards, stick=stick),
                    ["labels", "run"], train=False)
    assert loader.runs_per_epoch == 3  # the padded shard: ceil(13 / 3) = 5 samples
    for epoch, got in enumerate(run_epochs(loader, 4)):
        read = shard if stick else (shard + epoch) % shards
        want = shard_samples(read, shards)
        assert loader.shard_size_at(epoch) == len(want)
        assert sorted(got["samples"]) == want, (epoch, got)
        assert 0 not in got["sizes"], "a batch of padding only was yielded"
        assert got["len"] == len(got["sizes"]) == -(-len(want) // batch), (epoch, got)
        assert got["first_run"] == epoch * loader.runs_per_epoch, (epoch, got)


@pytest.mark.parametrize("shard", [0, 1, 2])
def test_train_epoch_length_and_runs_per_epoch_on_every_shard(files, shard):
    shards, batch = 3, 2
    loader = Loader(reader_pipe(files, batch=batch, shard=shard, shards=shards, pad=False),
                    ["labels", "run"], train=True)
    # DALI stops every shard after floor(floor(13 / 3) / 2) = 2 full batches, 2 runs an epoch
    # (shard 2 holds 5 samples: the old ceil(5 / 2) = 3 runs put BatchClock one run off per epoch)
    assert loader.runs_per_epoch == 2
    for epoch, got in enumerate(run_epochs(loader, 4)):
        assert got["len"] == len(got["sizes"]) == 2, (epoch, got)
        assert got["sizes"] == [batch] * 2
        assert len(set(got["samples"])) == 4
        assert got["first_run"] == epoch * loader.runs_per_epoch, (epoch, got)


def test_train_with_a_partial_run_counts_it_in_runs_per_epoch(files):
    loader = Loader(reader_pipe(files, batch=3, shard=1, shards=3, pad=False), ["labels", "run"])
    assert (len(loader), loader.runs_per_epoch) == (1, 2)  # 4 samples: one batch of 3, one dropped
    for epoch, got in enumerate(run_epochs(loader, 3)):
        assert got["sizes"] == [3] and got["first_run"] == 2 * epoch


# --------------------------------------------------------------------------- DALI keywords


def test_dali_iterator_keywords(files):
    names = ["labels", "run"]
    loader = Loader([reader_pipe(files)], names, last_batch_policy=LastBatchPolicy.PARTIAL,
                    auto_reset=False)
    assert loader.train is False and len(loader) == 7  # 13 samples, batch 2, last one partial
    assert [len(b[0]) for b in loader][-1] == 1
    loader.reset()  # a DALIGenericIterator(auto_reset=False) user's reset: harmless
    assert len([b for b in loader]) == 7
    assert Loader(reader_pipe(files), names, last_batch_policy="DROP").train is True
    with pytest.raises(ValueError, match="FILL.*train=True"):
        Loader(reader_pipe(files), names, last_batch_policy=LastBatchPolicy.FILL)
    with pytest.raises(ValueError, match="contradicts"):
        Loader(reader_pipe(files), names, train=True, last_batch_policy=LastBatchPolicy.PARTIAL)
    with pytest.raises(ValueError, match="size=.*reader_name"):
        Loader(reader_pipe(files), names, size=13)
    with pytest.raises(ValueError, match="last_batch_padded=.*pad_last_batch"):
        Loader(reader_pipe(files), names, last_batch_padded=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Loader(reader_pipe(files), names, sizes=13)
