"""Value tests of pipelines/ (train and val classification pipelines, data sources) and of
`dali_mix.torch.Loader`, on the CPU.

What is checked (values, not only shapes):

* val "center": equals a PIL reference (decode, antialiased bilinear resize of the shorter side
  to round(size / 0.875), centre crop, ImageNet normalisation) on real-photo JPEGs;
  val "none" on Fashion-MNIST equals the idx pixels normalised;
* train "random_resized": from images whose pixels encode their coordinates, the crop box is
  recovered and must lie inside the image with an area fraction in `scale`; train "pad": a
  shifted copy with zero fill outside, shifts of at most `pad` px;
* sharding: val shards are disjoint and cover the set exactly once; train shards are disjoint
  within an epoch and drop the incomplete last batch;
* ImageFolder vs webdataset give the same (image, label) multiset; ASCII labels 1..4 digits;
* Loader length / reset / second epoch; ValueErrors naming the offending path or field.

Tolerances (all in 0..255 pixel units, after de-normalisation):

* val centre crop vs PIL: DALI's decoder output equals PIL's exactly (both libjpeg-turbo, checked
  separately while writing this test). DALI's default resize is a triangular (linear,
  antialiased) filter, i.e. PIL's BILINEAR with its support widened on reduction (BICUBIC,
  HAMMING, LANCZOS and BOX all differ by a mean of 0.8..2.5); but DALI keeps the exact scale
  factor (`subpixel_scale=True`): the rounded output size (e.g. 500x375 -> 97x73) maps onto a
  centred, fractional input ROI (498.3 x 375), which the reference reproduces with
  `Image.resize(box=...)` (without it: mean up to 1.0, max up to 17 after the crop). The centre crop anchor is
  rounded half up (97 - 64 = 33 -> x0 = 17, 73 - 64 = 9 -> y0 = 5; Python's round() would give
  16 and 4). With both, the only difference left is the uint8 rounding of the resized image:
  measured mean |err| 0.065..0.10, max exactly 1. Asserted: mean < 0.25 and max <= 1 (+1e-3 for
  float32 normalisation round trip); a crop shifted by one pixel has mean 0.8..20 and must fail
  the mean bound (and be > 3x the unshifted error), so the test pins the crop position.
* train crop boxes: read from min/max of the decoded coordinates; image_size (256) >= every
  crop, so the crop is only ever upscaled and its edge pixels are reproduced to +-1 px: area
  fractions are checked within 3 % relative (1 px per side on the smallest 72 px crop).
"""
from __future__ import annotations

import collections
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dali_mix.data.fashion_mnist import DEFAULT_IDX_DIR, load_split, prepare_fashion_mnist
from dali_mix.data.imagenet_like import build_imagenet_like
from dali_mix.torch import Loader
from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD
from pipelines.classification import train_pipeline, val_pipeline
from dali_mix.data.sources import resolve_source

MEAN = np.array(IMAGENET_MEAN, dtype=np.float64)
STD = np.array(IMAGENET_STD, dtype=np.float64)

needs_idx = pytest.mark.skipif(
    not (DEFAULT_IDX_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)


# --------------------------------------------------------------------------- helpers


def denorm(chw) -> np.ndarray:
    """A normalised CHW float image (tensor or array) -> HWC float64 in 0..255 units."""
    a = np.asarray(chw, dtype=np.float64)
    return a.transpose(1, 2, 0) * STD + MEAN


def run_all(built, train: bool):
    """Iterate one epoch through `Loader`; returns (list of image batches, list of label batches)."""
    loader = Loader(built.pipe, built.output_map, built.reader_name, train=train,
                    num_classes=built.num_classes)
    images, labels = [], []
    for batch in loader:
        images.append(batch[0].numpy())
        labels.append(batch[1].numpy())
    return images, labels


def write_const_tree(root: Path, n: int, classes: int = 3, size: int = 4) -> dict[int, int]:
    """ImageFolder of `n` tiny grayscale PNGs, image i constant value 10 + 5 * i, class i % classes.

    Returns {pixel value: label}."""
    expected = {}
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
    for i in range(n):
        value, label = 10 + 5 * i, i % classes
        Image.fromarray(np.full((size, size), value, np.uint8), mode="L").save(
            root / f"c{label}" / f"img_{i:03d}.png")
        expected[value] = label
    return expected


def const_values(images: np.ndarray) -> list[int]:
    """Recover the constant pixel value of each (normalised, CHW) image in a batch."""
    out = []
    for im in images:
        px = denorm(im)
        value = float(np.median(px[..., 0]))
        out.append(int(round(value)))
    return out


@pytest.fixture(scope="module")
def const_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("const") / "tree"
    return root, write_const_tree(root, 37)


@pytest.fixture(scope="module")
def fmnist():
    """Real Fashion-MNIST, 2000 train + 2000 val samples (default cache ~/.cache/dali-mix)."""
    if not (DEFAULT_IDX_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    return prepare_fashion_mnist(limit=2000, install=False)


# --------------------------------------------------------------------------- val values


EDGE_PAD = 16


def _pil_reference(path: str, size: int, crop_fraction: float = 0.875,
                   shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """PIL: decode, antialiased bilinear resize of the shorter side to round(size / fraction)
    keeping DALI's exact scale (centred fractional ROI), centre crop with DALI's rounding
    (anchor = floor(0.5 * (extent - size) + 0.5), i.e. half up), HWC float64 0..255."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    shorter = round(size / crop_fraction)
    scale = shorter / min(w, h)
    ow, oh = (shorter, round(h * scale)) if w <= h else (round(w * scale), shorter)
    roi_w, roi_h = ow / scale, oh / scale  # input extent that maps onto the rounded output size
    # The ROI may stick out by a fraction of a pixel (rounding up the output size): DALI
    # clamps source coordinates to the border, i.e. replicates the edge pixels.
    m = EDGE_PAD
    padded = Image.fromarray(np.pad(np.asarray(im), ((m, m), (m, m), (0, 0)), mode="edge"))
    box = ((w - roi_w) / 2 + m, (h - roi_h) / 2 + m, (w + roi_w) / 2 + m, (h + roi_h) / 2 + m)
    resized = np.asarray(padded.resize((ow, oh), Image.Resampling.BILINEAR, box=box),
                         dtype=np.float64)
    y0 = int(np.floor(0.5 * (oh - size) + 0.5)) + shift[0]
    x0 = int(np.floor(0.5 * (ow - size) + 0.5)) + shift[1]
    return resized[y0:y0 + size, x0:x0 + size]


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    return build_imagenet_like(tmp_path_factory.mktemp("inl") / "inl", num_images=12, num_classes=4)


def test_val_center_crop_matches_pil_reference(imagenet_like):
    size = 64
    built = val_pipeline(str(imagenet_like), batch_size=12, image_size=size)
    built.pipe.build()
    images, labels = built.pipe.run()
    files, want_labels = built.source.files, built.source.labels
    sizes = [Image.open(f).size for f in files]
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes), \
        f"want both landscape and portrait photos to check the shorter-side logic, got {sizes}"
    for i, path in enumerate(files):
        out = denorm(images.at(i))
        assert out.shape == (size, size, 3)
        assert int(np.asarray(labels.at(i))[0]) == want_labels[i]
        ref = _pil_reference(path, size)
        err = np.abs(out - ref)
        assert err.mean() < 0.25, (path, sizes[i], err.mean())
        assert err.max() <= 1 + 1e-3, (path, sizes[i], err.max())
        # The tolerance is tight enough to pin the crop position: a 1 px shift fails.
        for shift in ((1, 0), (0, 1), (-1, 0), (0, -1)):
            shifted = _pil_reference(path, size, shift=shift)
            if shifted.shape == ref.shape:
                off = np.abs(out - shifted).mean()
                assert off > 0.25 and off > 3 * err.mean(), (path, shift, off)


@needs_idx
def test_val_none_crop_is_exact_on_fashion_mnist(fmnist):
    """28x28 -> 28x28 resize is the identity: every output is its idx image, normalised."""
    idx_images, idx_labels = load_split(DEFAULT_IDX_DIR, "val")
    built = val_pipeline(str(fmnist.val_dir), batch_size=256, image_size=28, crop="none")
    images, labels = run_all(built, train=False)  # val: stored order = source.files
    images, labels = np.concatenate(images), np.concatenate(labels)
    index = np.array([int(Path(p).stem) for p in built.source.files])  # file name = idx index
    assert len(images) == len(index) == fmnist.num_val
    assert images.shape[1:] == (3, 28, 28) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, idx_labels[index])
    assert len(set(labels.tolist())) == 10
    px = np.repeat(idx_images[index][:, None].astype(np.float32), 3, axis=1)
    want = (px - np.asarray(MEAN, np.float32)[:, None, None]) / np.asarray(STD, np.float32)[:, None, None]
    np.testing.assert_allclose(images, want, rtol=0, atol=1e-5)
    # de-normalised and rounded: exactly the idx bytes, in every channel
    back = np.rint(images * STD[:, None, None] + MEAN[:, None, None]).astype(np.int64)
    np.testing.assert_array_equal(back, np.repeat(idx_images[index][:, None], 3, axis=1))


# --------------------------------------------------------------------------- train crops


def _coord_tree(root: Path, size: int) -> Path:
    """One RGB PNG size x size with R = x, G = y, B = 200 (B marks 'inside the image')."""
    (root / "a").mkdir(parents=True)
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([x, y, np.full_like(x, 200)], -1).astype(np.uint8)
    Image.fromarray(img).save(root / "a" / "coords.png")
    return root


@pytest.fixture(scope="module")
def coord256(tmp_path_factory):
    return _coord_tree(tmp_path_factory.mktemp("coord") / "c256", 256)


def _crop_boxes(coord_root, scale, batches: int, seed: int = 3):
    built = train_pipeline(str(coord_root), batch_size=32, image_size=256, scale=scale, seed=seed,
                           recipe=None)
    built.pipe.build()
    boxes, mirrors = [], []
    for _ in range(batches):
        images, _ = built.pipe.run()
        for k in range(len(images)):
            px = denorm(images.at(k))
            r, g, b = px[..., 0], px[..., 1], px[..., 2]
            # every output pixel comes from inside the image (B == 200 there), nothing else
            assert np.abs(b - 200).max() < 1e-3
            # an axis-aligned crop: R depends only on the column, G only on the row
            assert np.abs(r - r[:1]).max() < 1e-3 and np.abs(g - g[:, :1]).max() < 1e-3
            row, col = r[0], g[:, 0]
            assert np.all(np.diff(col) >= 0), "rows are never flipped vertically"
            mirrored = row[0] > row[-1]
            assert np.all(np.diff(row) <= 0) if mirrored else np.all(np.diff(row) >= 0)
            mirrors.append(mirrored)
            boxes.append(np.rint((row.min(), col.min(), row.max(), col.max())))  # x0, y0, x1, y1 inclusive
    return np.array(boxes), np.array(mirrors)


def _area_fractions(boxes, size=256):
    x0, y0, x1, y1 = boxes.T
    assert x0.min() >= 0 and y0.min() >= 0 and x1.max() <= size - 1 and y1.max() <= size - 1
    return (x1 - x0 + 1) * (y1 - y0 + 1) / size ** 2


def test_train_random_resized_crop_covers_scale_range(coord256):
    boxes, mirrors = _crop_boxes(coord256, (0.08, 1.0), batches=4)
    frac = _area_fractions(boxes)
    assert frac.min() >= 0.08 * 0.97 and frac.max() <= 1.0 + 1e-9, (frac.min(), frac.max())
    # the fractions span most of the range (uniform in area over 128 samples)
    assert (frac < 0.2).any() and (frac > 0.8).any(), sorted(frac)
    assert np.ptp(frac) > 0.7
    # both mirrored and unmirrored crops occur (coin flip p = 0.5)
    assert 0.2 < mirrors.mean() < 0.8
    # aspect ratios inside [3/4, 4/3] (within 1 px per side)
    x0, y0, x1, y1 = boxes.T
    w, h = x1 - x0 + 1, y1 - y0 + 1
    assert ((w + 1) / (h - 1) >= 3 / 4).all() and ((w - 1) / (h + 1) <= 4 / 3).all()


def test_train_random_resized_crop_narrow_scale(coord256):
    boxes, _ = _crop_boxes(coord256, (0.5, 0.6), batches=2, seed=5)
    frac = _area_fractions(boxes)
    assert frac.min() >= 0.5 * 0.97 and frac.max() <= 0.6 * 1.03, (frac.min(), frac.max())
    assert frac.min() < 0.53 and frac.max() > 0.57  # and it is not collapsed onto one value


PAD_SIZE, PAD = 32, 4


@pytest.fixture(scope="module")
def pad_shifts(tmp_path_factory):
    """Train pipeline crop="pad" on a 32x32 coordinate image (image_size 32: resize is the
    identity). Checks every output is the normalised image, maybe mirrored, shifted by an integer
    (dy, dx), with 0 (normalised) outside; returns the (dy, dx) of 128 samples."""
    size = PAD_SIZE
    root = _coord_tree(tmp_path_factory.mktemp("coord") / "c32", size)
    img = np.asarray(Image.open(root / "a" / "coords.png"), dtype=np.float64)
    norm = (img - MEAN) / STD  # HWC, what the pipeline normalises to before shifting
    built = train_pipeline(str(root), batch_size=32, image_size=size, crop="pad", pad=PAD,
                           recipe=None, seed=1)
    built.pipe.build()
    shifts, margin = [], 4 * PAD
    for _ in range(4):
        images, _ = built.pipe.run()
        for k in range(len(images)):
            got = np.asarray(images.at(k), dtype=np.float64).transpose(1, 2, 0)
            inside = np.abs(got[..., 2]) > 1e-3  # B = 200 inside the image, 0 in the fill
            assert inside.any(), f"sample {k}: no pixel of the image left"
            i, j = np.argwhere(inside)[0]
            px = denorm(got.transpose(2, 0, 1))[i, j]
            row = denorm(got.transpose(2, 0, 1))[i, :, 0][inside[i]]
            mirrored = len(row) > 1 and row[0] > row[-1]
            dy = int(round(px[1])) - i
            dx = (size - 1 - int(round(px[0])) - j) if mirrored else int(round(px[0])) - j
            src = norm[:, ::-1] if mirrored else norm
            padded = np.zeros((size + 2 * margin, size + 2 * margin, 3))
            padded[margin:margin + size, margin:margin + size] = src
            want = padded[margin + dy:margin + dy + size, margin + dx:margin + dx + size]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4,
                                       err_msg=f"sample {k}: not a shifted, zero-filled copy")
            shifts.append((dy, dx))
    return np.array(shifts)


def test_train_pad_crop_is_a_shifted_zero_filled_copy(pad_shifts):
    # the fixture checked the values; here: the shifts go both ways on both axes, up to pad
    for axis in (0, 1):
        assert pad_shifts[:, axis].min() <= -PAD and pad_shifts[:, axis].max() >= PAD, \
            sorted(set(pad_shifts[:, axis].tolist()))


def test_train_pad_crop_shifts_at_most_pad(pad_shifts):
    for axis in (0, 1):
        values = sorted(set(pad_shifts[:, axis].tolist()))
        assert values == list(range(-PAD, PAD + 1)), f"axis {axis}: shifts {values}, pad={PAD}"


# --------------------------------------------------------------------------- sharding


def test_val_shards_are_disjoint_and_cover_every_sample_once(const_tree):
    root, expected = const_tree
    n, batch = len(expected), 8
    seen = []
    for shard in range(2):
        built = val_pipeline(str(root), batch_size=batch, image_size=4, crop="none", shard_id=shard,
                             num_shards=2)
        loader = Loader(built.pipe, built.output_map, built.reader_name, train=False,
                        num_classes=built.num_classes)
        shard_size = n * (shard + 1) // 2 - n * shard // 2
        assert len(loader) == -(-shard_size // batch)
        values = []
        for images, labels in loader:
            vs = const_values(images.numpy())
            assert [expected[v] for v in vs] == labels.tolist()
            values += vs
        assert len(values) == shard_size, (shard, len(values))
        assert len(set(values)) == len(values), f"shard {shard} repeats samples"
        seen.append(set(values))
    assert not seen[0] & seen[1], "val shards overlap"
    assert seen[0] | seen[1] == set(expected), "samples lost"
    assert len(seen[0]) + len(seen[1]) == n


def test_train_shards_are_disjoint_within_an_epoch(const_tree):
    root, expected = const_tree
    n, batch = len(expected), 8
    seen = []
    for shard in range(2):
        built = train_pipeline(str(root), batch_size=batch, image_size=4, shard_id=shard,
                               num_shards=2, seed=7)
        loader = Loader(built.pipe, built.output_map, built.reader_name, train=True,
                        num_classes=built.num_classes)
        shard_size = n * (shard + 1) // 2 - n * shard // 2
        assert len(loader) == shard_size // batch
        values, batches = [], 0
        for images, labels in loader:
            assert images.shape[0] == batch  # full batches only
            vs = const_values(images.numpy())  # any crop of a constant image is constant
            assert all(v in expected for v in vs), vs
            assert [expected[v] for v in vs] == labels.tolist()
            values += vs
            batches += 1
        assert batches == shard_size // batch
        assert len(set(values)) == len(values) == batches * batch
        seen.append(set(values))
    assert not seen[0] & seen[1], "train shards overlap within the first epoch"


# --------------------------------------------------------------------------- sources


@needs_idx
def test_image_folder_and_webdataset_give_same_samples(fmnist):
    def samples(data, **kw):
        built = val_pipeline(data, batch_size=256, image_size=28, crop="none", **kw)
        images, labels = run_all(built, train=False)
        out = collections.Counter()
        for ims, lbs in zip(images, labels):
            for im, lb in zip(ims, lbs):
                out[(np.rint(denorm(im)[..., 0]).astype(np.uint8).tobytes(), int(lb))] += 1
        return out

    folder = samples(str(fmnist.train_dir))
    shards = samples(list(fmnist.train_shards), num_classes=10)
    assert sum(folder.values()) == sum(shards.values()) == fmnist.num_train
    # the same multiset of labels (the idx file's class counts) ...
    assert _labels(folder) == _labels(shards)
    assert sorted(_labels(folder).elements()) == sorted(
        int(lb) for lb in load_split(DEFAULT_IDX_DIR, "train")[1][_kept_indices(fmnist.train_dir)])
    # stronger: the same (image, label) pairs
    assert folder == shards


def _kept_indices(folder: Path) -> np.ndarray:
    """idx positions of the samples in a prepared ImageFolder (file name = idx index)."""
    return np.array(sorted(int(p.stem) for p in Path(folder).glob("*/*.png")), dtype=np.int64)


def _labels(counter):
    out = collections.Counter()
    for (_, lb), c in counter.items():
        out[lb] += c
    return out


def _tar_member(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_ascii_labels_1_to_4_digits(tmp_path):
    labels = [0, 7, 42, 999, 1234, 5, 10, 100, 1000]
    tar_path = tmp_path / "shard-000000.tar"
    expected = {}
    with tarfile.open(tar_path, "w") as tar:
        for i, label in enumerate(labels):
            value = 20 + 20 * i
            buf = io.BytesIO()
            Image.fromarray(np.full((4, 4), value, np.uint8), mode="L").save(buf, format="PNG")
            _tar_member(tar, f"s{i:03d}.png", buf.getvalue())
            _tar_member(tar, f"s{i:03d}.cls", str(label).encode("ascii"))
            expected[value] = label
    assert resolve_source(str(tar_path)).classes == ()  # no classes.txt: num_classes needed
    with pytest.raises(ValueError, match="num_classes"):
        val_pipeline(str(tar_path), batch_size=4, image_size=4, crop="none")
    built = val_pipeline(str(tar_path), batch_size=4, image_size=4, crop="none", num_classes=1235)
    images, got = run_all(built, train=False)
    values = [v for ims in images for v in const_values(ims)]
    got = [int(x) for lbs in got for x in lbs]
    assert len(got) == len(labels)
    assert {v: lb for v, lb in zip(values, got)} == expected


# --------------------------------------------------------------------------- loader


def test_loader_len_reset_and_second_epoch(const_tree):
    root, expected = const_tree
    n, batch = len(expected), 8
    built = val_pipeline(str(root), batch_size=batch, image_size=4, crop="none")
    loader = Loader(built.pipe, built.output_map, built.reader_name, train=False,
                    num_classes=built.num_classes)
    assert len(loader) == -(-n // batch) == 5  # ceil(37 / 8)
    for epoch in range(2):
        sizes, values = [], []
        for images, labels in loader:
            assert labels.dtype.is_floating_point is False and labels.ndim == 1
            sizes.append(images.shape[0])
            values += const_values(images.numpy())
        assert len(sizes) == len(loader), epoch
        assert sizes == [8, 8, 8, 8, 5], epoch  # val keeps every sample, last batch partial
        assert sorted(values) == sorted(expected), epoch  # each exactly once

    built = train_pipeline(str(root), batch_size=batch, image_size=4, seed=2)
    loader = Loader(built.pipe, built.output_map, built.reader_name, train=True,
                    num_classes=built.num_classes)
    assert len(loader) == 4  # floor(37 / 8): the incomplete last batch is dropped
    for epoch in range(2):
        sizes, values = [], []
        for images, _ in loader:
            sizes.append(images.shape[0])
            values += const_values(images.numpy())
        assert sizes == [8] * 4, epoch
        assert len(set(values)) == 32, epoch  # no repeats inside an epoch


# --------------------------------------------------------------------------- bad input


def test_bad_sources_raise_value_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=str(missing)):
        val_pipeline(str(missing), batch_size=2, image_size=8)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=str(empty)):
        train_pipeline(str(empty), batch_size=2, image_size=8)

    tree = tmp_path / "tree"
    write_const_tree(tree, 4, classes=2)
    (tree / "zz_no_images").mkdir()
    (tree / "zz_no_images" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="zz_no_images"):
        val_pipeline(str(tree), batch_size=2, image_size=8)

    lst = tmp_path / "list.txt"
    lst.write_text("c0/img_000.png 0\nc1/img_001.png -1\n")
    with pytest.raises(ValueError, match=r"list\.txt:2"):
        val_pipeline(str(lst), batch_size=2, image_size=8)

    pattern = str(tmp_path / "shards" / "train-*.tar")
    with pytest.raises(ValueError, match=r"train-\*\.tar"):
        val_pipeline(pattern, batch_size=2, image_size=8, num_classes=2)


def test_bad_arguments_raise_value_error_naming_the_field(const_tree):
    root, _ = const_tree
    with pytest.raises(ValueError, match="device"):
        val_pipeline(str(root), batch_size=2, image_size=8, device="tpu")
    with pytest.raises(ValueError, match="device"):
        train_pipeline(str(root), batch_size=2, image_size=8, device="cuda")
    for bad in (0, -3, 2.5, "8", True):
        with pytest.raises(ValueError, match="batch_size"):
            val_pipeline(str(root), batch_size=bad, image_size=8)
        with pytest.raises(ValueError, match="batch_size"):
            train_pipeline(str(root), batch_size=bad, image_size=8)


def test_train_pipeline_with_a_recipe_that_never_mixes_normalises(fmnist_small):
    """A recipe without methods (smoothing only, `train.py --mix none`) still yields normalised
    NCHW float images: equal to the no-recipe pipeline's, with smoothed one-hot targets."""
    import dali_mix as dm
    from dali_mix.torch import Loader
    from pipelines.classification import train_pipeline

    outs = []
    for recipe in (None, dm.MixRecipe(methods={}, num_classes=10, label_smoothing=0.1)):
        built = train_pipeline(fmnist_small.train_dir, batch_size=16, image_size=28, crop="pad", seed=3,
                               recipe=recipe, num_classes=10)
        outs.append(next(iter(Loader(built.pipe, built.output_map, built.reader_name, num_classes=10))))
    (x_ref, labels), (x, targets) = outs
    assert x.shape == (16, 3, 28, 28) and x.dtype == torch.float32
    torch.testing.assert_close(x, x_ref)
    expected = torch.full((16, 10), 0.01)
    expected[torch.arange(16), labels] = 0.91
    torch.testing.assert_close(targets, expected)
