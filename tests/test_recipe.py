"""MixRecipe validation and files; the torch Loader's label check."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm
from dali_mix.torch import Loader, check_batch

BAD = [
    # (field named in the message, keyword arguments)
    ("methods", dict(methods={"mixpu": 1.0})),
    ("mixpu", dict(methods=["mixup", "mixpu"])),
    ("methods", dict(methods="not_a_method")),
    ("methods", dict(methods={"mixup": -1.0, "cutmix": 1.0})),
    ("mixup", dict(methods={"mixup": -0.5})),
    ("methods", dict(methods={"mixup": float("nan")})),
    ("methods", dict(methods={"mixup": float("inf")})),
    ("methods", dict(methods={"mixup": 0.0, "cutmix": 0})),
    ("methods", dict(methods={"mixup": "1"})),
    ("mixup_alpha", dict(mixup_alpha=0.0)),
    ("mixup_alpha", dict(mixup_alpha=-1.0)),
    ("cutmix_alpha", dict(cutmix_alpha=0)),
    ("cutmix_alpha", dict(cutmix_alpha=-0.2)),
    ("fmix_alpha", dict(fmix_alpha=0.0)),
    ("fmix_alpha", dict(fmix_alpha=-3)),
    ("fmix_decay_power", dict(fmix_decay_power=0.0)),
    ("resizemix_scale", dict(resizemix_scale=(0.0, 0.5))),
    ("resizemix_scale", dict(resizemix_scale=(0.2, 1.5))),
    ("resizemix_scale", dict(resizemix_scale=(0.6, 0.3))),
    ("resizemix_scale", dict(resizemix_scale=(-0.1, 0.5))),
    ("resizemix_scale", dict(resizemix_scale=0.5)),
    ("cutmix_minmax", dict(cutmix_minmax=(0.0, 0.5))),
    ("cutmix_minmax", dict(cutmix_minmax=(0.5, 1.01))),
    ("cutmix_minmax", dict(cutmix_minmax=(0.8, 0.2))),
    ("erasing_area", dict(erasing_area=(0.0, 0.4))),
    ("erasing_area", dict(erasing_area=(0.1, 2.0))),
    ("erasing_aspect", dict(erasing_aspect=(0.0, 1.0))),
    ("erasing_aspect", dict(erasing_aspect=(3.0, 1.0))),
    ("erasing_prob", dict(erasing_prob=1.5)),
    ("erasing_prob", dict(erasing_prob=-0.5)),
    ("erasing_fill", dict(erasing_fill="zeros")),
    ("prob", dict(prob=-0.1)),
    ("prob", dict(prob=1.01)),
    ("mode", dict(mode="pixel")),
    ("target", dict(target="onehot")),
    ("layout", dict(layout="NCHW")),
    ("layout", dict(layout="chw")),
    ("label_smoothing", dict(label_smoothing=1.0)),
    ("label_smoothing", dict(label_smoothing=1.5)),
    ("label_smoothing", dict(label_smoothing=-0.1)),
    ("num_classes", dict(num_classes=0)),
    ("num_classes", dict(num_classes=-5)),
    ("num_classes", dict(num_classes=2.5)),
    ("channels", dict(channels=0)),
    ("fmix_size", dict(fmix_size=(0, 8))),
    ("fmix_size", dict(fmix_size=(8, 8, 3))),
    ("fmix_bank_size", dict(fmix_bank_size=0)),
    ("cutout_holes", dict(cutout_holes=0)),
    ("cutout_length", dict(cutout_length=0)),
    ("seed", dict(seed=-1)),
]


@pytest.mark.parametrize("field,kwargs", BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_bad_value_raises_naming_the_field(field, kwargs):
    with pytest.raises(ValueError, match=re.escape(field)):
        dm.MixRecipe(**kwargs)
    # the same through from_dict and with_
    with pytest.raises(ValueError, match=re.escape(field)):
        dm.MixRecipe.from_dict(kwargs)
    with pytest.raises(ValueError, match=re.escape(field)):
        dm.MixRecipe().with_(**kwargs)


def test_good_edge_values_are_accepted():
    r = dm.MixRecipe(prob=0.0, label_smoothing=0.0, resizemix_scale=(1.0, 1.0), cutmix_minmax=(0.5, 0.5),
                     num_classes=1, methods={"mixup": 0.0, "fmix": 1.0})
    assert r.candidates == ("fmix",)
    r = dm.MixRecipe(prob=1.0, label_smoothing=0.999, methods=[])
    assert not r.mixes


def test_from_dict_unknown_key():
    with pytest.raises(ValueError, match="mixup_alpa"):
        dm.MixRecipe.from_dict({"num_classes": 10, "mixup_alpa": 0.4})


def test_list_of_methods_means_equal_weights():
    r = dm.MixRecipe(methods=["fmix", "mixup", "cutmix"])
    assert r.methods == {"fmix": 1.0, "mixup": 1.0, "cutmix": 1.0}
    assert r.candidates == ("mixup", "cutmix", "fmix")  # METHODS order
    assert r.weights == (1.0, 1.0, 1.0)
    assert dm.MixRecipe(methods=("cutout", "random_erasing")).weights == (1.0, 1.0)
    assert dm.MixRecipe(methods="resizemix").methods == {"resizemix": 1.0}
    # zero weights drop a candidate
    assert dm.MixRecipe(methods={"mixup": 2, "cutmix": 0}).candidates == ("mixup",)


def sample_recipe():
    return dm.MixRecipe(methods={"mixup": 0.5, "fmix": 2.0, "random_erasing": 1.0}, num_classes=10,
                        label_smoothing=0.1, mode="batch", target="sparse", prob=0.8,
                        cutmix_minmax=(0.2, 0.8), resizemix_scale=(0.2, 0.6), fmix_size=(28, 30),
                        erasing_fill=0.0, erasing_aspect=(0.5, 2.0), mixup_alpha=0.2, seed=7)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_from_file_round_trips_to_dict(tmp_path, suffix):
    r = sample_recipe()
    path = tmp_path / f"recipe{suffix}"
    d = r.to_dict()
    path.write_text(json.dumps(d) if suffix == ".json" else yaml.safe_dump(d))
    back = dm.MixRecipe.from_file(path)
    assert back == r
    assert back.to_dict() == d
    # overrides win and are validated
    assert dm.MixRecipe.from_file(path, num_classes=3).num_classes == 3
    with pytest.raises(ValueError, match="prob"):
        dm.MixRecipe.from_file(path, prob=2.0)


def test_from_file_handwritten_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("methods: [mixup, cutmix]\nnum_classes: 100\nresizemix_scale: [0.2, 0.5]\n")
    r = dm.MixRecipe.from_file(path)
    assert r.methods == {"mixup": 1.0, "cutmix": 1.0}
    assert r.resizemix_scale == (0.2, 0.5)
    assert r == dm.MixRecipe.from_dict(r.to_dict())


def test_from_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        dm.MixRecipe.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_classes: 10\nmixup_alhpa: 0.3\n")
    with pytest.raises(ValueError, match="mixup_alhpa"):
        dm.MixRecipe.from_file(bad)
    bad_value = tmp_path / "bad.json"
    bad_value.write_text(json.dumps({"cutmix_alpha": -1}))
    with pytest.raises(ValueError, match="cutmix_alpha"):
        dm.MixRecipe.from_file(bad_value)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- mixup\n- cutmix\n")
    with pytest.raises(ValueError, match="mapping"):
        dm.MixRecipe.from_file(not_mapping)


# ------------------------------------------------------------------------------------------------
# labels >= num_classes reach the loader
# ------------------------------------------------------------------------------------------------

def label_files(tmp_path, labels):
    from PIL import Image

    files = []
    for k in range(len(labels)):
        p = tmp_path / f"img_{k}.png"
        Image.fromarray(np.full((10, 12, 3), 20 * k, np.uint8)).save(p)
        files.append(str(p))
    return files


LABELS = [0, 1, 2, 12, 3, 4, 5, 6]  # 12 with num_classes = 10


def bad_label_pipe(files, recipe, outputs, executor="dali"):
    """DALI's operators (executor "dali"): their one_hot targets pass a bad label on to the
    Loader's check (the fused operator stops the batch itself: tests/test_faults.py)."""
    @pipeline_def(batch_size=len(files), num_threads=1, device_id=None, seed=3)
    def pipe():
        jpegs, labels = fn.readers.file(files=files, labels=LABELS, name="Reader")
        images = fn.decoders.image(jpegs, device="cpu")
        images = fn.resize(images, size=[8, 8])
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW")
        out = dm.random_mix(images, labels, recipe.with_(layout="CHW"), image_size=8, executor=executor)
        return outputs(out)
    return pipe()


def test_loader_rejects_labels_beyond_num_classes(tmp_path):
    files = label_files(tmp_path, LABELS)
    recipe = dm.MixRecipe(methods=["mixup"], num_classes=10)
    # the dense targets really are broken: the label-12 sample's own share is lost
    raw = bad_label_pipe(files, recipe, lambda o: (o.targets, o.labels_a, o.lam))
    raw.build()
    targets, la, lam = (np.stack([np.asarray(t[i]) for i in range(len(t))]) for t in raw.run())
    row = int(np.nonzero(la.reshape(-1) == 12)[0][0])
    np.testing.assert_allclose(targets[row].sum(), 1.0 - lam.reshape(-1)[row], atol=1e-6)
    assert targets[row].sum() < 1.0 - 1e-3

    loader = Loader(bad_label_pipe(files, recipe, lambda o: o.outputs()), dm.output_names(recipe),
                    reader_name="Reader", num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        next(iter(loader))


def test_loader_rejects_sparse_labels_beyond_num_classes(tmp_path):
    files = label_files(tmp_path, LABELS)
    recipe = dm.MixRecipe(methods=["mixup"], num_classes=10, target="sparse")
    loader = Loader(bad_label_pipe(files, recipe, lambda o: o.outputs()), dm.output_names(recipe),
                    reader_name="Reader", num_classes=10)
    with pytest.raises(ValueError, match="num_classes") as exc:
        next(iter(loader))
    assert "12" in str(exc.value)


def test_loader_accepts_valid_labels(tmp_path):
    files = label_files(tmp_path, LABELS)
    recipe = dm.MixRecipe(methods=["mixup"], num_classes=13, label_smoothing=0.1)
    loader = Loader(bad_label_pipe(files, recipe, lambda o: o.outputs()), dm.output_names(recipe),
                    reader_name="Reader", num_classes=13)
    images, targets = next(iter(loader))
    assert images.shape == (8, 3, 8, 8) and targets.shape == (8, 13)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(8), atol=1e-5, rtol=0)


def test_check_batch_directly():
    good = {"labels_a": torch.tensor([0, 9]), "labels_b": torch.tensor([9, 0]),
            "targets": torch.full((2, 10), 0.1)}
    check_batch(good, 10)
    with pytest.raises(ValueError, match="num_classes"):
        check_batch({"labels_a": torch.tensor([0, 10])}, 10)
    with pytest.raises(ValueError, match="num_classes"):
        check_batch({"labels": torch.tensor([-1, 3])}, 10)
    zero_row = torch.full((2, 10), 0.1)
    zero_row[1] = 0
    with pytest.raises(ValueError, match="num_classes"):
        check_batch({"targets": zero_row}, 10)
