"""Fault handling: bad labels, extreme alphas, awkward batch sizes, awkward image files. CPU.

Each test fails if the handling it names breaks:

* a label >= num_classes (label 11, num_classes 10, through a user pipeline with
  `fn.readers.file(file_list=...)` and `dali_mix.random_mix`) makes `Loader(num_classes=...)`
  raise, where without the check the batch silently carries target rows that do not sum to 1
  (shown too, so the test proves the check is what catches it); `train_pipeline` /
  `val_pipeline` with fewer classes than the data raise a ValueError when built;
* alphas 0.01 and 100 for mixup, cutmix and fmix never give NaN/Inf in images, lam or targets;
  lam stays in [0, 1] and the targets are exactly lam onehot(a) + (1 - lam) onehot(b);
* batch sizes 1, 3 and 7 run RandomMix with valid targets (rows sum to 1) and valid pairs;
* grayscale JPEG, CMYK JPEG, RGBA PNG, palette PNG and 16x16 PNG decode to RGB batches of the
  configured size through the train (random_resized, 64 px) and val pipelines; a grayscale image
  has R = G = B after de-normalisation; each format decodes to the same pixels as PIL's
  `convert("RGB")` (val, no resize).
"""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

import dali_mix as dm
from dali_mix.torch import Loader
from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD
from pipelines.classification import train_pipeline, val_pipeline

MEAN = np.array(IMAGENET_MEAN, dtype=np.float64)
STD = np.array(IMAGENET_STD, dtype=np.float64)


def denorm(chw) -> np.ndarray:
    """Normalised CHW -> HWC float64 in 0..255 units."""
    return np.asarray(chw, dtype=np.float64).transpose(1, 2, 0) * STD + MEAN


def run_once(built) -> dict:
    """One run of a built pipeline -> {name: (N, ...) numpy array}."""
    outs = built.pipe.run()
    return {name: np.stack([np.asarray(t[i]) for i in range(len(t))])
            for name, t in zip(built.output_map, outs)}


def check_mixed_batch(o: dict, num_classes: int, smoothing: float = 0.0) -> None:
    """Finite images / lam / targets, lam in [0, 1], targets = the exact mix of the two labels."""
    images, targets = o["images"], o["targets"]
    lam = o["lam"].reshape(-1).astype(np.float64)
    a, b = o["labels_a"].reshape(-1), o["labels_b"].reshape(-1)
    n = len(lam)
    assert np.isfinite(images).all(), "NaN/Inf in images"
    assert np.isfinite(lam).all(), f"NaN/Inf in lam: {lam}"
    assert np.isfinite(targets).all(), "NaN/Inf in targets"
    assert ((lam >= 0) & (lam <= 1)).all(), f"lam outside [0, 1]: {lam}"
    assert targets.shape == (n, num_classes)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    eye = np.eye(num_classes)
    want = (1 - smoothing) * (lam[:, None] * eye[a] + (1 - lam[:, None]) * eye[b]) + smoothing / num_classes
    np.testing.assert_allclose(targets, want, atol=2e-6)
    assert ((a >= 0) & (a < num_classes) & (b >= 0) & (b < num_classes)).all()


# --------------------------------------------------------------------------- labels >= num_classes


def _write_file_list(tmp_path, labels) -> str:
    rng = np.random.default_rng(0)
    lines = []
    for i, label in enumerate(labels):
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / name)
        lines.append(f"{name} {label}")
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


LABELS_WITH_11 = [0, 1, 2, 3, 11, 5, 6, 7]  # 11 >= num_classes = 10


def _user_pipe(file_list, recipe, executor="auto"):
    """A user pipeline: file list -> decode -> resize -> normalise to CHW float -> random_mix
    (the recipe must say layout="CHW")."""
    @pipeline_def(batch_size=len(LABELS_WITH_11), num_threads=1, device_id=None, seed=5)
    def pipe():
        jpegs, labels = fn.readers.file(file_list=file_list, random_shuffle=False, name="Reader")
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        images = fn.resize(images, size=[16, 16])
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                          mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
        return dm.random_mix(images, labels, recipe, image_size=16, executor=executor).outputs()

    return pipe()


@pytest.mark.parametrize("methods,executor", [(["mixup", "cutmix", "resizemix", "fmix"], "dali"), ([], "auto")],
                         ids=["randommix-dali-operators", "no-mixing"])
def test_label_beyond_num_classes_raises_in_loader(tmp_path, methods, executor):
    """DALI's one_hot makes a label >= C an all-zero row without a word: the Loader's check
    (with num_classes) refuses such a batch."""
    file_list = _write_file_list(tmp_path, LABELS_WITH_11)
    recipe = dm.MixRecipe(methods=methods, num_classes=10, layout="CHW")
    names = dm.output_names(recipe)
    # without the check, the batch goes through and carries broken target rows
    unchecked = Loader(_user_pipe(file_list, recipe, executor), names, "Reader")
    _, targets = next(iter(unchecked))
    assert targets.shape == (8, 10)
    assert not np.allclose(targets.sum(dim=1).numpy(), 1.0, atol=1e-4)
    # with num_classes, the Loader refuses the batch
    checked = Loader(_user_pipe(file_list, recipe, executor), names, "Reader", num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        next(iter(checked))


def test_label_beyond_num_classes_stops_the_fused_operator_naming_the_sample(tmp_path):
    """The fused CPU operator makes the pair targets itself: a label >= C stops the batch in the
    pipeline, naming the sample and the label, before any Loader check."""
    file_list = _write_file_list(tmp_path, LABELS_WITH_11)
    recipe = dm.MixRecipe(num_classes=10, layout="CHW")
    loader = Loader(_user_pipe(file_list, recipe, "fused"), dm.output_names(recipe), "Reader")
    with pytest.raises(RuntimeError, match=r"the label of sample 4 is 11, outside \[0, 10\)"):
        next(iter(loader))


def test_clean_labels_pass_the_loader_check(tmp_path):
    """The same pipeline with labels < 10 passes (the check does not reject good batches)."""
    file_list = _write_file_list(tmp_path, [0, 1, 2, 3, 9, 5, 6, 7])
    recipe = dm.MixRecipe(num_classes=10, layout="CHW")
    loader = Loader(_user_pipe(file_list, recipe), dm.output_names(recipe), "Reader", num_classes=10)
    images, targets = next(iter(loader))
    assert images.shape == (8, 3, 16, 16)
    np.testing.assert_allclose(targets.sum(dim=1).numpy(), 1.0, atol=1e-5)


def test_too_few_classes_raise_at_build(fmnist_small):
    root = str(fmnist_small.train_dir)
    with pytest.raises(ValueError, match=r"num_classes=5 .*labels up to 9"):
        train_pipeline(root, batch_size=4, image_size=28, crop="pad", num_classes=5)
    with pytest.raises(ValueError, match=r"num_classes=5 .*labels up to 9"):
        train_pipeline(root, batch_size=4, image_size=28, crop="pad", num_classes=5,
                       recipe=dm.MixRecipe(num_classes=5))
    with pytest.raises(ValueError, match=r"num_classes=5 .*labels up to 9"):
        val_pipeline(str(fmnist_small.val_dir), batch_size=4, image_size=28, crop="none", num_classes=5)
    with pytest.raises(ValueError, match=r"recipe.num_classes=5 .*10 classes"):
        train_pipeline(root, batch_size=4, image_size=28, crop="pad", recipe=dm.MixRecipe(num_classes=5))


def test_file_list_label_beyond_num_classes_raises_at_build(tmp_path):
    file_list = _write_file_list(tmp_path, LABELS_WITH_11)
    with pytest.raises(ValueError, match="num_classes"):
        train_pipeline(file_list, batch_size=4, image_size=16, crop="pad", num_classes=10,
                       recipe=dm.MixRecipe(num_classes=10))


# --------------------------------------------------------------------------- extreme alphas


@pytest.mark.parametrize("alpha", [0.01, 100.0])
def test_extreme_alphas_stay_finite(fmnist_small, alpha):
    recipe = dm.MixRecipe(num_classes=10, mixup_alpha=alpha, cutmix_alpha=alpha, fmix_alpha=alpha,
                          label_smoothing=0.1)
    built = train_pipeline(str(fmnist_small.train_dir), batch_size=32, image_size=28, crop="pad",
                           recipe=recipe, explain=True, seed=1)
    built.pipe.build()
    lams = {m: [] for m in recipe.candidates}
    for _ in range(3):
        o = run_once(built)
        check_mixed_batch(o, 10, smoothing=0.1)
        for m, lam in zip(o["method"].reshape(-1), o["lam"].reshape(-1)):
            lams[recipe.candidates[int(m)]].append(float(lam))
    for m in ("mixup", "cutmix", "fmix"):
        assert len(lams[m]) >= 5, f"{m} drawn only {len(lams[m])} times in 96 samples"
    mix = np.array(lams["mixup"])
    if alpha == 0.01:  # Beta(0.01, 0.01): almost always at an end
        assert np.mean((mix < 0.01) | (mix > 0.99)) > 0.8
    else:  # Beta(100, 100): close to 1/2
        assert np.all(np.abs(mix - 0.5) < 0.2)


# --------------------------------------------------------------------------- batch sizes


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_small_and_odd_batches(fmnist_small, batch_size):
    recipe = dm.MixRecipe(num_classes=10)  # RandomMix, mixup/cutmix/resizemix/fmix
    built = train_pipeline(str(fmnist_small.train_dir), batch_size=batch_size, image_size=28, crop="pad",
                           recipe=recipe, explain=True, seed=2)
    loader = Loader(built.pipe, built.output_map, built.reader_name, num_classes=10)
    for k, batch in enumerate(loader):
        o = {name: t.numpy() for name, t in zip(built.output_map, batch)}
        assert o["images"].shape == (batch_size, 3, 28, 28)
        check_mixed_batch(o, 10)
        if batch_size == 1:  # a lone sample can only be paired with itself
            assert (o["labels_b"] == o["labels_a"]).all()
        if k == 2:
            break
    else:
        pytest.fail("fewer than 3 batches")


# --------------------------------------------------------------------------- image formats


FORMATS = ("a_gray.jpg", "b_cmyk.jpg", "c_rgba.png", "d_palette.png", "e_small16.png")


def _colour(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_formats(folder, rng, size=None):
    """One image of each awkward format in `folder`; `size` (h, w) for all but the 16x16 one."""
    folder.mkdir(parents=True, exist_ok=True)
    hw = lambda default: size or default  # noqa: E731
    h, w = hw((80, 96))
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(folder / FORMATS[0], quality=95)
    h, w = hw((90, 70))
    Image.fromarray(_colour(rng, h, w)).convert("CMYK").save(folder / FORMATS[1], quality=95)
    h, w = hw((72, 100))
    alpha = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([_colour(rng, h, w), alpha], axis=2), "RGBA").save(folder / FORMATS[2])
    h, w = hw((100, 80))
    Image.fromarray(_colour(rng, h, w)).convert("P", palette=Image.ADAPTIVE, colors=32).save(folder / FORMATS[3])
    Image.fromarray(_colour(rng, 16, 16)).save(folder / FORMATS[4])


@pytest.fixture
def formats_tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "formats"
    for c in ("class0", "class1"):
        _write_formats(root / c, rng)
    modes = sorted(Image.open(p).mode for p in (root / "class0").iterdir())
    assert modes == sorted(["L", "CMYK", "RGBA", "P", "RGB"])
    return root


def _grey(hwc, tol=1e-3) -> bool:
    return bool(np.abs(hwc[..., 0] - hwc[..., 1]).max() < tol and np.abs(hwc[..., 0] - hwc[..., 2]).max() < tol)


def test_awkward_formats_through_val_pipeline(formats_tree):
    n = 2 * len(FORMATS)
    built = val_pipeline(str(formats_tree), batch_size=n, image_size=64)  # centre crop
    built.pipe.build()
    o = run_once(built)
    images, labels = o["images"], o["labels"].reshape(-1)
    assert images.shape == (n, 3, 64, 64) and images.dtype == np.float32
    assert np.isfinite(images).all()
    assert labels.tolist() == [0] * len(FORMATS) + [1] * len(FORMATS)
    for i in range(n):  # stored order: the formats, class by class
        hwc = denorm(images[i])
        assert hwc.min() > -0.5 and hwc.max() < 255.5
        assert _grey(hwc) == (FORMATS[i % len(FORMATS)] == "a_gray.jpg"), FORMATS[i % len(FORMATS)]


def test_awkward_formats_through_train_pipeline(formats_tree):
    n = 2 * len(FORMATS)
    plain = train_pipeline(str(formats_tree), batch_size=n, image_size=64)  # random_resized
    plain.pipe.build()
    o = run_once(plain)  # one epoch = every file once
    assert o["images"].shape == (n, 3, 64, 64) and np.isfinite(o["images"]).all()
    grey = [_grey(denorm(x)) for x in o["images"]]
    assert sum(grey) == 2, "exactly the two grayscale JPEGs must come out with R = G = B"
    assert sorted(o["labels"].reshape(-1).tolist()) == [0] * len(FORMATS) + [1] * len(FORMATS)

    mixed = train_pipeline(str(formats_tree), batch_size=n, image_size=64,
                           recipe=dm.MixRecipe(num_classes=2), explain=True)
    mixed.pipe.build()
    for _ in range(2):
        o = run_once(mixed)
        assert o["images"].shape == (n, 3, 64, 64)
        check_mixed_batch(o, 2)


def test_awkward_formats_decode_like_pil(tmp_path):
    """At the output size (no resize, no crop) every format gives PIL's convert("RGB") pixels."""
    root = tmp_path / "exact"
    _write_formats(root / "c", np.random.default_rng(1), size=(64, 64))
    (root / "c" / FORMATS[4]).unlink()  # 16x16 is resized: not comparable pixel for pixel
    files = sorted((root / "c").iterdir())
    built = val_pipeline(str(root), batch_size=len(files), image_size=64, crop="none")
    built.pipe.build()
    o = run_once(built)
    for x, f in zip(o["images"], files):
        ref = np.asarray(Image.open(f).convert("RGB"), dtype=np.float64)
        err = np.abs(denorm(x) - ref)
        assert err.max() < 0.01, f"{f.name}: max |DALI - PIL| = {err.max():.3f}"
