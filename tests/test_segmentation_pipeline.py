"""The segmentation pipeline (image + PNG mask pairs, one geometry for both, mixing) and the
generated scenes set, checked by value: every pixel that shows a class's colour after the
random crop, resize, flip and CutMix has that class in its mask; the readers stay paired over
epochs; the Pascal VOC layout; palette masks refused and converted; the scenes' masks are
their shapes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import dali_mix as dm
from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD
from dali_mix.data.scenes import CLASSES, draw_scene, prepare_scenes
from dali_mix.torch import Loader
from pipelines import segmentation

K = 5
PALETTE = np.random.default_rng(7).integers(0, 256, (K, 3)).astype(np.uint8)  # not collinear


def _class_coded(root, n=10, size=(30, 40)):
    """images/ + masks/ where every pixel's colour is PALETTE[its class] (lossless PNG)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.kron(rng.integers(0, K, (size[0] // 5, size[1] // 5)), np.ones((5, 5), np.int64)).astype(np.uint8)
        Image.fromarray(PALETTE[mask]).save(root / "images" / f"s{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i:03d}.png")
    return root


@pytest.mark.parametrize("executor", ["fused", "dali"])
def test_masks_follow_the_pixels_through_crop_flip_and_cutmix(tmp_path, executor):
    root = _class_coded(tmp_path / "set")
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=K)
    built = segmentation.train_pipeline(root, split="train", batch_size=5, image_size=24, recipe=recipe,
                                        num_threads=1, seed=3, executor=executor, source_map=True)
    loader = Loader(built.pipe, built.output_map, built.reader_name)
    seen = 0
    for epoch in range(2):
        for images, masks, masks_b, weight, source in loader:
            pixels = images.numpy().transpose(0, 2, 3, 1) * np.array(IMAGENET_STD) \
                + np.array(IMAGENET_MEAN)
            dist = np.abs(pixels[..., None, :] - PALETTE.astype(np.float64)).max(-1)
            exact = dist.min(-1) < 0.5
            assert exact.mean() > 0.5  # most pixels are inside a block
            np.testing.assert_array_equal(masks.numpy()[exact], dist.argmin(-1)[exact])
            np.testing.assert_array_equal(masks_b.numpy(), masks.numpy())
            np.testing.assert_array_equal(weight.numpy(), 1.0)
            assert 0 < source.numpy().mean() < 1
            seen += len(images)
    assert seen == 2 * (10 // 5) * 5


def test_val_pipeline_reads_every_pair_once(tmp_path):
    root = _class_coded(tmp_path / "set", n=7)
    built = segmentation.val_pipeline(root, split="val", batch_size=3, image_size=20, num_threads=1)
    loader = Loader(built.pipe, built.output_map, built.reader_name, train=False)
    masks = [m for _, batch in loader for m in batch.numpy()]
    assert len(masks) == 7
    want = [np.asarray(Image.open(f).resize((20, 20), Image.NEAREST)) for f in built.masks]
    # nearest-neighbour resizes of DALI and PIL may pick neighbouring source pixels at block edges
    for got, ref in zip(masks, want):
        assert set(np.unique(got)) <= set(range(K)) and (got == ref).mean() > 0.8


def test_pairing_errors_name_the_file(tmp_path):
    root = _class_coded(tmp_path / "set", n=3)
    (root / "masks" / "s001.png").unlink()
    with pytest.raises(ValueError, match="'s001' has no mask"):
        segmentation.pair_files(root)
    with pytest.raises(ValueError, match="expected images/ and masks/"):
        segmentation.pair_files(tmp_path)


def test_voc_layout_palette_masks_refused_then_converted(tmp_path):
    voc = tmp_path / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    ids = np.full((8, 10), 255, np.uint8)
    ids[2:6, 3:8] = 15
    for stem in ("2007_000032", "2007_000039"):
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(voc / "JPEGImages" / f"{stem}.jpg")
        im = Image.fromarray(ids, mode="P")
        im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
        im.save(voc / "SegmentationClass" / f"{stem}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("2007_000032\n2007_000039\n")
    with pytest.raises(ValueError, match="is a palette PNG"):
        segmentation.pair_files(voc, "train")
    assert segmentation.main(["--index-masks", str(voc / "SegmentationClass"), str(tmp_path / "ids")]) == 0
    for p in (tmp_path / "ids").glob("*.png"):
        p.replace(voc / "SegmentationClass" / p.name)
    images, masks = segmentation.pair_files(voc, "train")
    assert [m.rsplit("/", 1)[1] for m in masks] == ["2007_000032.png", "2007_000039.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(masks[0])), ids)


def test_scenes_masks_are_their_shapes(tmp_path):
    data = prepare_scenes(tmp_path / "scenes", train=6, val=2, size=32, seed=1, progress=False)
    assert data.classes == CLASSES and data.counts == {"train": 6, "val": 2}
    images, masks = segmentation.pair_files(data.root / "train")
    assert len(images) == 6
    again = prepare_scenes(tmp_path / "scenes", train=6, val=2, size=32, seed=1, progress=False)
    assert again.root == data.root
    image, mask = draw_scene(np.random.default_rng([1, 0, 0]), 32)
    np.testing.assert_array_equal(np.asarray(Image.open(masks[0])), mask)
    np.testing.assert_array_equal(np.asarray(Image.open(images[0])), image)
    for i in range(20):
        image, mask = draw_scene(np.random.default_rng([5, i]), 48)
        assert mask.max() < len(CLASSES) and (mask > 0).any()
        for c in np.unique(mask[mask > 0]):  # each class region shows its shapes' colours only
            assert len(np.unique(image[mask == c], axis=0)) <= 4


def test_presence_labels_are_the_classes_each_mask_shows(tmp_path):
    """labels="presence": multi-hot classes 1..C-1 of each (val: whole) mask; train: of the
    cropped mask, mixed as multi-hot targets (each target between 0 and 1, a class a sample
    and its partners do not show is 0)."""
    root = _class_coded(tmp_path / "set", n=6)
    val = segmentation.val_pipeline(root, split="val", batch_size=3, image_size=30, num_threads=1,
                                    presence_classes=K)
    got = np.concatenate([t.numpy() for _, t in Loader(val.pipe, val.output_map, val.reader_name, train=False)])
    want = np.stack([[float((np.asarray(Image.open(f)) == c).any()) for c in range(1, K)] for f in val.masks])
    np.testing.assert_array_equal(got, want)
    recipe = dm.MixRecipe(methods=[], num_classes=K - 1, label_format="multi_hot")
    train = segmentation.train_pipeline(root, batch_size=3, image_size=30, recipe=recipe, num_threads=1,
                                        labels="presence", scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3))
    for images, targets in Loader(train.pipe, train.output_map, train.reader_name, multi_label=True):
        # whole-image crops (area 1, the images' own aspect), no mixing: the classes the pixels show
        pixels = images.numpy().transpose(0, 2, 3, 1) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
        shown = np.abs(pixels[..., None, :] - PALETTE.astype(np.float64)).max(-1).argmin(-1)
        want = np.stack([[float((s == c).any()) for c in range(1, K)] for s in shown])
        np.testing.assert_array_equal(targets.numpy(), want)
    with pytest.raises(ValueError, match="label_format='multi_hot'"):
        segmentation.train_pipeline(root, batch_size=3, image_size=30, recipe=dm.MixRecipe(num_classes=K - 1),
                                    labels="presence")
