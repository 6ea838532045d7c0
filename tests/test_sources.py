"""The one data-source model (dali_mix.data.sources): hidden entries, missing list entries, cut
shards and train/val class agreement, each named in the error. Small trees built with Pillow."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from dali_mix.data.sources import class_mismatch, resolve_source


def _tree(root, classes, n=2):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_hidden_entries_are_never_classes_or_samples(tmp_path):
    root = _tree(tmp_path / "t", ["a", "b", ".ipynb_checkpoints"])
    (root / "a" / ".DS_Store").write_bytes(b"x")
    src = resolve_source(root)
    assert src.classes == ("a", "b") and src.named_classes
    assert src.num_samples == 4 and set(src.labels) == {0, 1}


def test_file_list_with_a_missing_path_names_it(tmp_path):
    _tree(tmp_path, ["a"])
    lst = tmp_path / "list.txt"
    lst.write_text("a/0.png 0\na/gone.png 0\na/1.png 0\n")
    with pytest.raises(ValueError, match=r"list.txt:2: .*gone.png"):
        resolve_source(lst)


@pytest.mark.parametrize("cut", [700, 1024])
def test_truncated_shard_is_named(tmp_path, cut):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "PNG")
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tf:
        for i in range(3):
            for ext, data in (("png", buf.getvalue()), ("cls", b"0")):
                info = tarfile.TarInfo(f"k{i}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    assert resolve_source(shard).kind == "webdataset"
    shard.write_bytes(shard.read_bytes()[:cut])
    with pytest.raises(ValueError, match=f"shard '{shard}' is truncated"):
        resolve_source(shard)


def test_train_and_val_classes_must_agree(tmp_path):
    train = resolve_source(_tree(tmp_path / "train", ["cat", "cow", "dog"]))
    val = resolve_source(_tree(tmp_path / "val", ["cat", "dog"]))
    why = class_mismatch(train, val)
    assert why is not None and "only in train: cow" in why
    assert class_mismatch(train, resolve_source(_tree(tmp_path / "v2", ["cat", "cow", "dog"]))) is None
    # a val file list without names: its labels must fit the train classes
    lst = tmp_path / "v3" / "list.txt"
    _tree(lst.parent, ["x"])
    lst.write_text("x/0.png 3\n")
    assert "labels up to 3" in class_mismatch(train, resolve_source(lst))
