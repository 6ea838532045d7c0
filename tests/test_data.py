"""Tests of dali_mix.data: Fashion-MNIST conversion, ImageNet-like builder, ``dali-mix data``.

Uses the real idx files of the Debian package dataset-fashion-mnist (skipped without them) and
small ``limit`` / ``num_images`` values so that the file runs in well under a minute on 2 cores.
"""
from __future__ import annotations

import collections
import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dali_mix.data import fashion_mnist as fm
from dali_mix.data.fashion_mnist import (
    CLASS_DIRS, CLASSES, DEFAULT_IDX_DIR, FashionMNISTNotFoundError, IdxFormatError,
    balanced_subset, load_split, prepare_fashion_mnist)
from dali_mix.data.imagenet_like import FILE_LIST, build_imagenet_like

LIMIT = 300  # samples per split in the shared fixture: 30 per class
PER_SHARD = 100

needs_idx = pytest.mark.skipif(
    not (DEFAULT_IDX_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist") / "fashion-mnist"
    return prepare_fashion_mnist(root, limit=LIMIT, samples_per_shard=PER_SHARD, install=False)


@pytest.fixture(scope="module")
def idx_arrays():
    """{split: (images uint8 (N, 28, 28), labels uint8 (N,))} straight from the idx files."""
    return {split: load_split(DEFAULT_IDX_DIR, split) for split in ("train", "val")}


def read_shards(paths: list[str]) -> list[tuple[str, bytes, int]]:
    """(key, png bytes, label) in stored order over all shards."""
    samples = []
    for path in paths:
        with tarfile.open(path) as tar:
            members = [m for m in tar if m.isreg()]
            by_name = {m.name: tar.extractfile(m).read() for m in members}
        keys = [m.name[:-4] for m in members if m.name.endswith(".png")]
        samples += [(k, by_name[f"{k}.png"], int(by_name[f"{k}.cls"].decode("ascii"))) for k in keys]
    return samples


def run_epoch(pipe, n: int, batch_size: int) -> list:
    """All outputs of one epoch of ``pipe`` (n divisible by batch_size), per output a list."""
    assert n % batch_size == 0
    pipe.build()
    outputs = None
    for _ in range(n // batch_size):
        batch = pipe.run()
        if outputs is None:
            outputs = [[] for _ in batch]
        for out, tl in zip(outputs, batch):
            out += [np.array(tl[i]) for i in range(len(tl))]
    return outputs


# ----------------------------------------------------------------------------- Fashion-MNIST


def test_class_dirs_sort_to_label_ids():
    assert sorted(CLASS_DIRS) == CLASS_DIRS
    assert CLASSES[0] == "T-shirt_top" and CLASSES[9] == "Ankle_boot"
    assert all("/" not in c and " " not in c for c in CLASS_DIRS)


def test_balanced_subset():
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 0, 1, 2], dtype=np.uint8)
    assert balanced_subset(labels, None).tolist() == list(range(10))
    assert balanced_subset(labels, 3).tolist() == [0, 4, 5]
    # class 1 has only 2 samples: the others fill in, still in file order within a class
    chosen = balanced_subset(labels, 7)
    assert chosen.tolist() == [0, 1, 2, 4, 5, 6, 8]
    assert np.bincount(labels[chosen]).tolist() == [3, 2, 2]


@needs_idx
def test_image_folder_classes_and_counts(data):
    for split_dir, num in ((data.train_dir, data.num_train), (data.val_dir, data.num_val)):
        assert num == LIMIT
        assert sorted(p.name for p in split_dir.iterdir()) == CLASS_DIRS
        counts = [len(list((split_dir / c).glob("*.png"))) for c in CLASS_DIRS]
        assert counts == [LIMIT // 10] * 10
    assert data.classes == CLASSES and data.class_dirs == CLASS_DIRS
    assert len(data.train_shards) == len(data.train_index) == LIMIT // PER_SHARD
    assert len(data.val_shards) == len(data.val_index) == LIMIT // PER_SHARD


@needs_idx
def test_pixels_equal_idx_file(data, idx_arrays):
    for split, split_dir in (("train", data.train_dir), ("val", data.val_dir)):
        images, labels = idx_arrays[split]
        for label, class_dir in enumerate(CLASS_DIRS):
            for png in (split_dir / class_dir).glob("*.png"):
                index = int(png.stem)
                assert labels[index] == label
                with Image.open(png) as im:
                    assert im.mode == "L" and im.size == (28, 28)
                    np.testing.assert_array_equal(np.asarray(im), images[index])


@needs_idx
def test_shard_labels_and_pixels_match(data, idx_arrays):
    for split, shards, split_dir in (("train", data.train_shards, data.train_dir),
                                     ("val", data.val_shards, data.val_dir)):
        images, labels = idx_arrays[split]
        samples = read_shards(shards)
        assert len(samples) == LIMIT
        for key, png, label in samples:
            assert label == labels[int(key)]
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), images[int(key)])
        folder_keys = {p.stem for p in split_dir.glob("*/*.png")}
        assert {key for key, _, _ in samples} == folder_keys


@needs_idx
def test_shards_are_shuffled(data):
    samples = read_shards(data.train_shards)
    keys = [int(k) for k, _, _ in samples]
    labels = [label for _, _, label in samples]
    assert keys != sorted(keys)
    assert labels != sorted(labels)
    changes = sum(a != b for a, b in zip(labels, labels[1:]))
    assert changes > len(labels) // 2  # class-sorted data would change label only 9 times
    # every shard holds many classes
    for shard in data.train_shards:
        assert len({label for _, _, label in read_shards([shard])}) >= 8


@needs_idx
def test_index_files_match_dali_wds2idx_format(data):
    lines = Path(data.train_index[0]).read_text().splitlines()
    assert lines[0] == f"v1.2 {PER_SHARD}"
    with tarfile.open(data.train_shards[0]) as tar:
        members = [m for m in tar if m.isreg()]
    first = lines[1].split()
    assert first == ["png", str(members[0].offset_data), str(members[0].size), members[0].name,
                     "cls", str(members[1].offset_data), str(members[1].size), members[1].name]


@needs_idx
def test_dali_reads_folder_and_shards_with_same_labels(data, idx_arrays):
    from nvidia.dali import fn, pipeline_def, types

    batch = 50

    @pipeline_def(batch_size=batch, num_threads=2, device_id=None)
    def folder_pipe():
        encoded, label = fn.readers.file(file_root=str(data.train_dir), name="reader")
        return fn.decoders.image(encoded, device="cpu", output_type=types.GRAY), label

    @pipeline_def(batch_size=batch, num_threads=2, device_id=None)
    def wds_pipe():
        encoded, cls = fn.readers.webdataset(
            paths=data.train_shards, index_paths=data.train_index, ext=["png", "cls"],
            name="reader")
        return fn.decoders.image(encoded, device="cpu", output_type=types.GRAY), cls

    f_images, f_labels = run_epoch(folder_pipe(), data.num_train, batch)
    w_images, w_cls = run_epoch(wds_pipe(), data.num_train, batch)
    folder_labels = [int(x.item()) for x in f_labels]
    wds_labels = [int(bytes(x.astype(np.uint8)).decode("ascii")) for x in w_cls]
    assert collections.Counter(folder_labels) == collections.Counter(wds_labels)
    assert collections.Counter(folder_labels) == {c: LIMIT // 10 for c in range(10)}
    assert wds_labels[:len(wds_labels) // 2] != sorted(wds_labels[:len(wds_labels) // 2])
    # DALI-decoded pixels equal the idx file's (shards in stored order == read_shards order)
    images, _ = idx_arrays["train"]
    keys = [int(k) for k, _, _ in read_shards(data.train_shards)]
    for key, decoded in zip(keys[:batch], w_images[:batch]):
        assert decoded.shape == (28, 28, 1)
        np.testing.assert_array_equal(decoded[..., 0], images[key])


@needs_idx
def test_cache_is_reused(data):
    manifest = data.root / "manifest.json"
    before = manifest.stat().st_mtime_ns
    sentinel = data.root / "sentinel"
    sentinel.write_text("still here")
    again = prepare_fashion_mnist(data.root, limit=LIMIT, samples_per_shard=PER_SHARD,
                                  install=False)
    assert again == data
    assert manifest.stat().st_mtime_ns == before and sentinel.exists()
    sentinel.unlink()


@needs_idx
def test_interrupted_build_is_rebuilt(tmp_path):
    root = tmp_path / "fm"
    (root / "train" / CLASS_DIRS[0]).mkdir(parents=True)  # a partial build: no marker
    (root / "train" / CLASS_DIRS[0] / "junk.png").write_bytes(b"not a png")
    data = prepare_fashion_mnist(root, limit=20, samples_per_shard=10, install=False)
    assert not (root / "train" / CLASS_DIRS[0] / "junk.png").exists()
    assert data.num_train == 20 and (root / "manifest.json").is_file()
    assert sum(1 for _ in data.train_dir.glob("*/*.png")) == 20
    # a broken marker is not trusted either
    (root / "manifest.json").write_text('{"format": "dali-mix/fashion-mnist/1", "trunc')
    prepare_fashion_mnist(root, limit=20, samples_per_shard=10, install=False)
    assert json.loads((root / "manifest.json").read_text())["splits"]["train"]["num"] == 20
    # no temporary or trash folders are left beside the target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fm"]


@needs_idx
def test_other_parameters_rebuild_and_limits_get_own_default_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_MIX_DATA", str(tmp_path / "cache"))
    a = prepare_fashion_mnist(limit=20, samples_per_shard=10, install=False)
    b = prepare_fashion_mnist(limit=30, samples_per_shard=10, install=False)
    assert a.root != b.root and a.root.parent == tmp_path / "cache"
    assert (a.num_train, b.num_train) == (20, 30)
    c = prepare_fashion_mnist(a.root, limit=20, samples_per_shard=20, install=False)
    assert c.root == a.root and len(c.train_shards) == 1


def test_missing_idx_dir_gives_clear_error(tmp_path):
    bogus = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError) as info:
        prepare_fashion_mnist(tmp_path / "out", idx_dir=bogus, limit=10, install=False)
    assert isinstance(info.value, FashionMNISTNotFoundError)
    message = str(info.value)
    assert str(bogus) in message and "apt-get install dataset-fashion-mnist" in message
    assert "--idx-dir" in message and "train-images-idx3-ubyte.gz" in message
    assert not (tmp_path / "out").exists()


@needs_idx
def test_missing_default_idx_files_are_installed_with_apt(tmp_path, monkeypatch):
    empty = tmp_path / "usr-share-datasets-fashion-mnist"
    empty.mkdir()
    monkeypatch.setattr(fm, "DEFAULT_IDX_DIR", empty)
    monkeypatch.setattr(fm, "_can_install", lambda: True)
    calls = []

    def fake_apt():  # what `apt-get install dataset-fashion-mnist` does: put the files there
        calls.append("apt")
        for src in DEFAULT_IDX_DIR.glob("*-ubyte.gz"):
            (empty / src.name).symlink_to(src)

    monkeypatch.setattr(fm, "_install_debian_package", fake_apt)
    with pytest.raises(FashionMNISTNotFoundError):  # install=False never runs apt-get
        prepare_fashion_mnist(tmp_path / "out", limit=10, install=False)
    assert calls == []
    data = prepare_fashion_mnist(tmp_path / "out", limit=10, samples_per_shard=10)
    assert calls == ["apt"] and data.num_train == 10


def _idx_copy(tmp_path: Path) -> Path:
    """A folder of symlinks to the real idx files."""
    copy = tmp_path / "idx"
    copy.mkdir()
    for src in DEFAULT_IDX_DIR.glob("*-ubyte.gz"):
        (copy / src.name).symlink_to(src)
    return copy


@needs_idx
def test_corrupt_idx_file_is_named(tmp_path):
    idx_dir = _idx_copy(tmp_path)
    bad = idx_dir / "train-labels-idx1-ubyte.gz"
    bad.unlink()
    with gzip.open(bad, "wb") as f:  # wrong magic: an image header in a label file
        f.write((0x803).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(1))
    with pytest.raises(IdxFormatError, match="train-labels-idx1-ubyte.gz.*magic"):
        prepare_fashion_mnist(tmp_path / "out", idx_dir=idx_dir, limit=10, install=False)
    assert not (tmp_path / "out").exists()
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(IdxFormatError, match="train-labels-idx1-ubyte.gz"):
        load_split(idx_dir, "train")


@needs_idx
def test_image_label_count_mismatch_names_both_files(tmp_path):
    idx_dir = _idx_copy(tmp_path)
    (idx_dir / "train-labels-idx1-ubyte.gz").unlink()
    (idx_dir / "train-labels-idx1-ubyte.gz").symlink_to(DEFAULT_IDX_DIR / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(IdxFormatError, match="60000 images.*10000 labels"):
        load_split(idx_dir, "train")


@needs_idx
def test_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    raw = gzip.open(DEFAULT_IDX_DIR / "t10k-labels-idx1-ubyte.gz").read()
    path.write_bytes(raw[:-5])
    with pytest.raises(IdxFormatError, match="t10k-labels-idx1-ubyte.*truncated"):
        fm.read_idx(path, fm.LABELS_MAGIC)


# ----------------------------------------------------------------------------- ImageNet-like


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    return build_imagenet_like(tmp_path_factory.mktemp("inl") / "imagenet-like", num_images=40,
                               num_classes=4, seed=0)


def test_imagenet_like_jpegs_in_class_folders(imagenet_like):
    root = imagenet_like
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [f"class_{c:03d}" for c in range(4)]
    sizes = []
    for c in range(4):
        files = sorted((root / f"class_{c:03d}").glob("*.jpg"))
        assert len(files) == 10
        for path in files:
            with Image.open(path) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                sizes.append(im.size)
    for w, h in sizes:
        assert 200 <= min(w, h) <= max(w, h) <= 640 and max(w, h) >= 375
    assert sum(max(s) == 500 for s in sizes) >= len(sizes) // 2  # mostly ImageNet's 500 px
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)


def test_imagenet_like_file_list_read_by_dali(imagenet_like):
    from nvidia.dali import fn, pipeline_def, types

    lines = (imagenet_like / FILE_LIST).read_text().splitlines()
    assert len(lines) == 40 and lines[0] == "class_000/img_000000.jpg 0"

    @pipeline_def(batch_size=8, num_threads=2, device_id=None)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(imagenet_like),
                                        file_list=str(imagenet_like / FILE_LIST), name="reader")
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        return images.shape(), labels

    shapes, labels = run_epoch(pipe(), 40, 8)
    assert [int(x.item()) for x in labels] == [i % 4 for i in range(40)]
    for shape in shapes:
        h, w, c = shape.tolist()
        assert c == 3 and 375 <= max(h, w) <= 640


def test_imagenet_like_is_cached_and_deterministic(imagenet_like, tmp_path):
    marker = imagenet_like / "manifest.json"
    before = marker.stat().st_mtime_ns
    assert build_imagenet_like(imagenet_like, num_images=40, num_classes=4) == imagenet_like
    assert marker.stat().st_mtime_ns == before
    other = build_imagenet_like(tmp_path / "again", num_images=40, num_classes=4, seed=0)
    for rel in ("class_000/img_000000.jpg", "class_003/img_000039.jpg"):
        assert (other / rel).read_bytes() == (imagenet_like / rel).read_bytes()


# ----------------------------------------------------------------------------- CLI


@needs_idx
def test_cli_data_commands(tmp_path, capsys):
    from dali_mix_tools.cli import main

    assert main(["data", "fashion-mnist", "--root", str(tmp_path / "fm"), "--limit", "20",
                 "--samples-per-shard", "10"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "fm" / "train") in out and "train-000001.tar" in out
    assert main(["data", "fashion-mnist", "--root", str(tmp_path / "x"),
                 "--idx-dir", str(tmp_path / "nope")]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    assert main(["data", "imagenet-like", "--root", str(tmp_path / "inl"),
                 "--num-images", "6"]) == 0
    assert str(tmp_path / "inl" / FILE_LIST) in capsys.readouterr().out
