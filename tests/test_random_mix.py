"""dm.random_mix: method choice (per sample / pair / batch), prob, targets, determinism, batch
sizes, pairing, sparse targets, plain and class-based pipelines without conditionals, a user's
own pipeline with the torch Loader.

Every test runs on each kind of input and executor (the `kind` fixture): uint8 HWC images on
DALI's operators without normalisation ("dali-uint8", output uint8 HWC, Mixup rounded),
normalised float CHW images on DALI's operators ("dali-chw"), uint8 HWC with `normalize` on
DALI's operators ("dali-normalize") and on the fused C++ operator ("fused"), uint8 HWC and float
CHW on the fused operator without normalisation ("fused-uint8", "fused-chw"), and uint8 HWC with
`normalize` on a GPU ("gpu", DALI's operators; skipped without one). The normalisation is the identity
(mean 0, std 1), so output values are the mixed pixel values, CHW float32."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nvidia.dali import Pipeline, fn, ops, pipeline_def, types
from scipy import stats

import dali_mix as dm
from dali_mix import native
from dali_mix.torch import Loader, mixed_cross_entropy, soft_target_cross_entropy

SIGNIFICANCE = 1e-3
S = 8  # small images keep these tests fast
C = 3
IDENTITY = dm.Normalization(mean=(0.0,) * C, std=(1.0,) * C)
KINDS = {  # kind -> (input layout, input dtype, executor, normalize, device)
    "dali-uint8": ("HWC", np.uint8, "dali", False, "cpu"),
    "dali-chw": ("CHW", np.float32, "dali", False, "cpu"),
    "dali-normalize": ("HWC", np.uint8, "dali", True, "cpu"),
    "fused": ("HWC", np.uint8, "fused", True, "cpu"),
    "fused-uint8": ("HWC", np.uint8, "fused", False, "cpu"),
    "fused-chw": ("CHW", np.float32, "fused", False, "cpu"),
    "gpu": ("HWC", np.uint8, "dali", True, "gpu"),
}
PATH = dict(zip(("layout", "dtype", "executor", "normalize", "device"), KINDS["fused"]))


@pytest.fixture(params=[pytest.param(k, marks=pytest.mark.gpu) if k == "gpu" else k for k in KINDS],
                autouse=True)
def kind(request, monkeypatch):
    """Run each test on every kind of input and executor (see the module docstring)."""
    if request.param.startswith("fused"):
        native.load()  # fails (not skips) with the cause when the operator cannot be built
    for key, value in zip(("layout", "dtype", "executor", "normalize", "device"), KINDS[request.param]):
        monkeypatch.setitem(PATH, key, value)
    return request.param


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def colour(i, c):
    """Channel c of sample i's colour: distinct for every sample (uint8 where the input is)."""
    if PATH["dtype"] == np.uint8:
        return float((1 + i + 50 * c) % 256)
    return 1.0 + i + 1000.0 * c


def constant_images(n, s=S):
    out = []
    for i in range(n):
        img = np.broadcast_to(np.array([colour(i, c) for c in range(C)], PATH["dtype"]), (s, s, C))
        out.append(np.ascontiguousarray(img.transpose(2, 0, 1) if PATH["layout"] == "CHW" else img))
    return out


def out_layout():
    """Layout of random_mix's output images (normalised: CHW)."""
    return "CHW" if PATH["normalize"] else PATH["layout"]


def as_output(images):
    """The batch `images` as random_mix returns it unmixed."""
    x = np.stack(images)
    if PATH["normalize"]:
        return x.transpose(0, 3, 1, 2).astype(np.float32)
    return x


def out_shape(n):
    return (n, S, S, C) if out_layout() == "HWC" else (n, C, S, S)


def to_np(tl):
    if hasattr(tl, "as_cpu"):
        tl = tl.as_cpu()
    return np.stack([np.asarray(tl[i]) for i in range(len(tl))])


FIELDS = ("images", "labels_a", "labels_b", "lam", "method", "targets")


def device_id():
    return 0 if PATH["device"] == "gpu" else None


def inputs(images, labels):
    """External sources of the images (on the kind's device) and labels."""
    x = fn.external_source(source=lambda: images, batch=True, layout=PATH["layout"])
    if PATH["device"] == "gpu":
        x = x.gpu()
    return x, fn.external_source(source=lambda: labels, batch=True)


def build(recipe, images, labels, *, seed=0, conditionals=False):
    n = len(images)

    @pipeline_def(batch_size=n, num_threads=1, device_id=device_id(), seed=seed,
                  enable_conditionals=conditionals)
    def pipe():
        x, y = inputs(images, labels)
        out = dm.random_mix(x, y, recipe, **path_args(recipe))
        outs = [out.images, out.labels_a, out.labels_b, out.lam, out.method]
        if out.targets is not None:
            outs.append(out.targets)
        return tuple(outs)

    p = pipe()
    p.build()
    return p


def path_args(recipe):
    """random_mix keywords for the current kind."""
    return {"image_size": (S, S), "executor": PATH["executor"],
            "normalize": IDENTITY if PATH["normalize"] else None}


def run(pipe, iters=1):
    """List (per iteration) of dicts of numpy outputs."""
    return [dict(zip(FIELDS, (to_np(o) for o in pipe.run()))) for _ in range(iters)]


def index_labels(n):
    """Reader-like labels: (1,) int32, label = sample index (so labels_b names the partner)."""
    return [np.array([i], np.int32) for i in range(n)]


def recipe_for(n_classes, **kw):
    kw.setdefault("fmix_size", (S, S))
    kw.setdefault("fmix_bank_size", 16)
    kw.setdefault("layout", PATH["layout"])
    return dm.MixRecipe(num_classes=n_classes, **kw)


def check_pixels(batch, recipe):
    """Every sample's pixels agree with its method, lam and partner (labels = sample index)."""
    layout = out_layout()
    # Mixup on uint8 without normalisation is rounded to the nearest uint8
    mixup_atol = 0.5 + 1e-3 if batch["images"].dtype == np.uint8 else 1e-4
    names = recipe.candidates
    imgs = batch["images"] if layout == "HWC" else batch["images"].transpose(0, 2, 3, 1)
    n = imgs.shape[0]
    for i in range(n):
        a, b = int(batch["labels_a"][i]), int(batch["labels_b"][i])
        lam = float(batch["lam"][i])
        m = int(batch["method"][i])
        ci = np.array([colour(a, c) for c in range(C)])
        cj = np.array([colour(b, c) for c in range(C)])
        name = names[m] if m < len(names) else "none"
        if name == "none":
            assert lam == 1.0
            assert np.all(np.abs(imgs[i] - ci) <= 1e-20)
        elif name == "mixup":
            np.testing.assert_allclose(imgs[i], np.broadcast_to(lam * ci + (1 - lam) * cj, imgs[i].shape),
                                       rtol=1e-5, atol=mixup_atol)
        elif name in ("cutmix", "resizemix", "fmix"):
            # exact but for the partner's share of 1e-30 or less in a Mixup-capable DALI graph
            own = np.all(np.abs(imgs[i] - ci) <= 1e-20, axis=-1)
            other = np.all(np.abs(imgs[i] - cj) <= 1e-20, axis=-1)
            assert np.all(own | other), (i, name, np.unique(imgs[i].reshape(-1, C), axis=0), ci, cj)
            if a != b:
                assert abs(own.mean() - lam) < 1e-6, (i, name, own.mean(), lam)
        else:
            raise AssertionError(f"unexpected method {name}")


def expected_targets(la, lb, lam, num_classes, eps):
    eye = np.eye(num_classes)
    return ((1 - eps) * (lam[:, None] * eye[la] + (1 - lam[:, None]) * eye[lb]) + eps / num_classes)


# ------------------------------------------------------------------------------------------------
# method choice
# ------------------------------------------------------------------------------------------------

def test_per_sample_method_frequencies_match_weights():
    n = 256
    weights = {"mixup": 1, "cutmix": 2, "resizemix": 1, "fmix": 4}
    recipe = recipe_for(n, methods=weights)
    assert recipe.candidates == ("mixup", "cutmix", "resizemix", "fmix")
    batches = run(build(recipe, constant_images(n), index_labels(n), seed=3), iters=12)
    methods = np.concatenate([b["method"] for b in batches])
    assert methods.size >= 3000
    assert set(np.unique(methods)) <= set(range(4))
    counts = np.bincount(methods, minlength=4)
    w = np.array([weights[m] for m in recipe.candidates], float)
    assert stats.chisquare(counts, w / w.sum() * methods.size).pvalue > SIGNIFICANCE
    # and each sample got what its method says
    for b in batches[:3]:
        check_pixels(b, recipe)


def test_per_sample_mode_mixes_methods_within_a_batch():
    n = 32
    recipe = recipe_for(n, methods=["mixup", "cutmix", "fmix"])
    b, = run(build(recipe, constant_images(n), index_labels(n), seed=5))
    assert len(np.unique(b["method"])) > 1


def test_batch_mode_one_method_per_batch():
    n = 6
    weights = {"mixup": 1, "cutmix": 1, "fmix": 2}
    recipe = recipe_for(n, methods=weights, mode="batch")
    batches = run(build(recipe, constant_images(n), index_labels(n), seed=7), iters=240)
    per_batch = []
    for b in batches:
        assert np.all(b["method"] == b["method"][0]), b["method"]
        per_batch.append(int(b["method"][0]))
    for b in batches[:20]:
        check_pixels(b, recipe)
    counts = np.bincount(per_batch, minlength=3)
    w = np.array([weights[m] for m in recipe.candidates], float)
    assert stats.chisquare(counts, w / w.sum() * len(per_batch)).pvalue > SIGNIFICANCE


def test_batch_mode_with_prob_leaves_whole_batches_untouched():
    n = 5
    recipe = recipe_for(n, methods=["mixup", "cutmix"], mode="batch", prob=0.5)
    batches = run(build(recipe, constant_images(n), index_labels(n), seed=9), iters=120)
    untouched = 0
    for b in batches:
        assert np.all(b["method"] == b["method"][0])
        if b["method"][0] == len(recipe.candidates):
            untouched += 1
            assert np.all(b["lam"] == 1.0)
    assert stats.binomtest(untouched, len(batches), 0.5).pvalue > SIGNIFICANCE


def test_prob_leaves_the_right_fraction_untouched():
    n, prob, eps = 128, 0.3, 0.1
    recipe = recipe_for(n, methods=["mixup", "cutmix", "resizemix", "fmix"], prob=prob,
                        label_smoothing=eps)
    images = constant_images(n)
    batches = run(build(recipe, images, index_labels(n), seed=11), iters=8)
    K = len(recipe.candidates)
    untouched = total = 0
    for b in batches:
        check_pixels(b, recipe)
        keep = b["method"] == K
        untouched += int(keep.sum())
        total += keep.size
        idx = np.nonzero(keep)[0]
        np.testing.assert_array_equal(b["images"][idx], as_output(images)[idx])
        np.testing.assert_array_equal(b["lam"][idx], np.ones(len(idx), np.float32))
        onehot = (1 - eps) * np.eye(n)[b["labels_a"][idx]] + eps / n
        np.testing.assert_allclose(b["targets"][idx], onehot, atol=1e-6)
    assert stats.binomtest(untouched, total, 1 - prob).pvalue > SIGNIFICANCE


def test_prob_zero_leaves_everything_untouched():
    n = 6
    recipe = recipe_for(n, prob=0.0, label_smoothing=0.2)
    images = constant_images(n)
    b, = run(build(recipe, images, index_labels(n), seed=1))
    np.testing.assert_array_equal(b["images"], as_output(images))
    np.testing.assert_array_equal(b["lam"], np.ones(n, np.float32))
    np.testing.assert_allclose(b["targets"], 0.8 * np.eye(n)[b["labels_a"]] + 0.2 / n, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_targets_match_the_formula(eps):
    n, num_classes = 16, 7
    labels = [np.array([i % 5], np.int32) for i in range(n)]  # repeated labels: some a == b pairs
    recipe = recipe_for(num_classes, methods=["mixup", "cutmix", "resizemix", "fmix"], label_smoothing=eps)
    batches = run(build(recipe, constant_images(n), labels, seed=13), iters=6)
    same_pairs = 0
    for b in batches:
        t = b["targets"]
        assert t.dtype == np.float32 and t.shape == (n, num_classes)
        assert np.all(t >= 0)
        np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(t.min(axis=1), eps / num_classes, atol=1e-7)
        la, lb, lam = b["labels_a"], b["labels_b"], b["lam"].astype(np.float64)
        np.testing.assert_array_equal(la, np.arange(n) % 5)
        np.testing.assert_allclose(t, expected_targets(la, lb, lam, num_classes, eps), atol=1e-6)
        same = la == lb
        same_pairs += int(same.sum())
        np.testing.assert_allclose(t[same], (1 - eps) * np.eye(num_classes)[la[same]] + eps / num_classes,
                                   atol=1e-6)
        assert np.all(b["lam"] >= 0) and np.all(b["lam"] <= 1)
    assert same_pairs > 0


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------

def test_same_seed_same_batches_other_seed_differs():
    n = 8
    recipe = recipe_for(n, methods={"mixup": 1, "cutmix": 1, "resizemix": 1, "fmix": 1,
                                    "cutout": 1, "random_erasing": 1},
                        cutout_length=4, erasing_prob=1.0, label_smoothing=0.1)
    images = constant_images(n)

    def batches(seed):
        return run(build(recipe, images, index_labels(n), seed=seed), iters=4)

    first, second, other = batches(21), batches(21), batches(22)
    for x, y in zip(first, second):
        for k in FIELDS:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    assert any(not np.array_equal(x["images"], z["images"]) for x, z in zip(first, other))
    assert any(not np.array_equal(x["targets"], z["targets"]) for x, z in zip(first, other))


# ------------------------------------------------------------------------------------------------
# batch sizes and pairing
# ------------------------------------------------------------------------------------------------

def test_odd_batch_size():
    n = 7
    recipe = recipe_for(n, methods=["mixup", "cutmix", "resizemix", "fmix"], label_smoothing=0.1)
    for b in run(build(recipe, constant_images(n), index_labels(n), seed=17), iters=5):
        assert b["images"].shape == out_shape(n)
        assert np.all(b["labels_b"] != b["labels_a"])
        np.testing.assert_array_equal(np.sort(b["labels_b"]), np.arange(n))  # a permutation
        check_pixels(b, recipe)
        np.testing.assert_allclose(
            b["targets"], expected_targets(b["labels_a"], b["labels_b"], b["lam"].astype(float), n, 0.1),
            atol=1e-6)


def test_batch_size_one_pairs_with_itself():
    recipe = recipe_for(4, methods=["mixup", "cutmix", "resizemix", "fmix"], label_smoothing=0.1)
    images = constant_images(1)
    for b in run(build(recipe, images, [np.array([2], np.int32)], seed=19), iters=6):
        np.testing.assert_array_equal(b["labels_a"], [2])
        np.testing.assert_array_equal(b["labels_b"], [2])
        np.testing.assert_allclose(b["images"], as_output(images), rtol=1e-6)
        np.testing.assert_allclose(b["targets"], [0.9 * np.eye(4)[2] + 0.1 / 4], atol=1e-6)


@pytest.mark.parametrize("no_self_pairs", [True, False])
def test_no_self_pairs(no_self_pairs):
    n = 6
    recipe = recipe_for(n, methods=["mixup", "cutmix"], no_self_pairs=no_self_pairs)
    batches = run(build(recipe, constant_images(n), index_labels(n), seed=23), iters=25)
    fixed = 0
    for b in batches:
        np.testing.assert_array_equal(b["labels_a"], np.arange(n))
        np.testing.assert_array_equal(np.sort(b["labels_b"]), np.arange(n))
        fixed += int(np.sum(b["labels_b"] == b["labels_a"]))
    if no_self_pairs:
        assert fixed == 0
    else:
        assert fixed > 0  # a plain permutation has fixed points now and then


# ------------------------------------------------------------------------------------------------
# sparse targets
# ------------------------------------------------------------------------------------------------

def test_sparse_targets_and_losses_agree():
    n, num_classes, eps = 12, 5, 0.1
    recipe = recipe_for(num_classes, methods=["mixup", "cutmix", "fmix"], target="sparse",
                        label_smoothing=eps)
    assert dm.output_names(recipe) == ["images", "labels_a", "labels_b", "lam"]
    images = constant_images(n)
    labels = [np.array([i % num_classes], np.int32) for i in range(n)]

    @pipeline_def(batch_size=n, num_threads=1, device_id=device_id(), seed=29)
    def pipe():
        x, y = inputs(images, labels)
        out = dm.random_mix(x, y, recipe, **path_args(recipe))
        assert out.targets is None
        outs = out.outputs()
        assert len(outs) == 4
        return outs

    p = pipe()
    p.build()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        imgs, la, lb, lam = (to_np(o) for o in p.run())
        dense = expected_targets(la.reshape(-1), lb.reshape(-1), lam.reshape(-1).astype(float),
                                 num_classes, eps).astype(np.float32)
        assert imgs.shape == out_shape(n)
        assert la.dtype == np.int64 and lb.dtype == np.int64 and lam.dtype == np.float32
        la, lb, lam = la.reshape(-1), lb.reshape(-1), lam.reshape(-1)
        assert np.any(lam < 1)
        logits = torch.randn(n, num_classes, generator=g) * 3
        sparse_loss = mixed_cross_entropy(logits, torch.from_numpy(la), torch.from_numpy(lb),
                                          torch.from_numpy(lam), smoothing=eps)
        dense_loss = soft_target_cross_entropy(logits, torch.from_numpy(dense))
        assert torch.isfinite(dense_loss)
        torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# a user's own pipeline (the README example)
# ------------------------------------------------------------------------------------------------

def make_image_folder(root, classes=3, per_class=8, size=(40, 32)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True)
        for k in range(per_class):
            arr = np.clip(rng.normal(60 + 70 * c, 20, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"img_{k}.{'jpg' if k % 2 else 'png'}")
    return root


def test_users_own_pipeline_with_loader(tmp_path):
    """The README example, with a small image size and a CPU decoder (GPU: the mixed decoder)."""
    root = make_image_folder(tmp_path / "train")
    num_classes, eps, batch = 3, 0.1, 8
    mean, std = [0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]
    kind = dict(PATH)
    recipe = dm.MixRecipe(methods=["mixup", "cutmix", "resizemix", "fmix"],
                          num_classes=num_classes, label_smoothing=eps, layout=kind["layout"])

    @pipeline_def
    def train_pipe(root):
        jpegs, labels = fn.readers.file(file_root=root, random_shuffle=True, name="Reader")
        images = fn.decoders.image_random_crop(jpegs, device="mixed" if kind["device"] == "gpu" else "cpu")
        images = fn.resize(images, size=[24, 24])
        flip = fn.random.coin_flip()
        if kind["normalize"]:
            norm = dm.Normalization(mean=mean, std=std, mirror=flip)
            return dm.random_mix(images, labels, recipe, image_size=24, normalize=norm,
                                 executor=kind["executor"]).outputs()
        if kind["layout"] == "CHW":  # a pipeline that keeps its crop_mirror_normalize
            images = fn.crop_mirror_normalize(images, mirror=flip, dtype=types.FLOAT, mean=mean, std=std)
        return dm.random_mix(images, labels, recipe, image_size=24, executor=kind["executor"]).outputs()

    loader = Loader(train_pipe(str(root), batch_size=batch, num_threads=1, device_id=device_id(), seed=1),
                    dm.output_names(recipe), reader_name="Reader", num_classes=num_classes)
    assert len(loader) == 24 // batch
    device = "cuda" if kind["device"] == "gpu" else "cpu"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 24 * 24, num_classes)).to(device)
    for epoch in range(2):
        seen = 0
        for images, targets in loader:
            seen += 1
            assert images.device.type == device and targets.device.type == device
            if kind["dtype"] == np.uint8 and not kind["normalize"]:
                assert images.shape == (batch, 24, 24, 3) and images.dtype == torch.uint8
                images = images.permute(0, 3, 1, 2).float() / 255
            assert images.shape == (batch, 3, 24, 24) and images.dtype == torch.float32
            assert targets.dtype == torch.float32 and targets.shape == (batch, num_classes)
            torch.testing.assert_close(targets.sum(dim=1).cpu(), torch.ones(batch), atol=1e-5, rtol=0)
            assert float(targets.min()) >= eps / num_classes - 1e-6
            # a mixed row has at most two classes above the smoothing floor
            assert int(((targets > eps / num_classes + 1e-6).sum(dim=1) > 2).sum()) == 0
            loss = soft_target_cross_entropy(model(images), targets)
            assert torch.isfinite(loss)
            loss.backward()
        assert seen == len(loader)


class ClassBasedPipe(Pipeline):
    """A class-based pipeline with legacy `ops.*` (the shape of DeepLearningExamples'
    HybridTrainPipe): no conditionals can be enabled here."""

    def __init__(self, recipe, images, labels, seed):
        super().__init__(batch_size=len(images), num_threads=1, device_id=device_id(), seed=seed)
        self.recipe = recipe
        self.images = ops.ExternalSource(source=lambda: images, batch=True, layout=PATH["layout"])
        self.labels = ops.ExternalSource(source=lambda: labels, batch=True)

    def define_graph(self):
        x, y = self.images(), self.labels()
        if PATH["device"] == "gpu":
            x = x.gpu()
        out = dm.random_mix(x, y, self.recipe, **path_args(self.recipe))
        return out.images, out.labels_a, out.labels_b, out.lam, out.method, out.targets


@pytest.mark.parametrize("style", ["pipeline_def", "class", "conditionals"])
def test_every_method_in_every_pipeline_style(style):
    """RandomMix over every method (erasing included) runs in a plain @pipeline_def, in a
    class-based Pipeline and in a pipeline that has conditionals enabled for its own use, with
    the right pixels for every pair method."""
    n = 16
    pair_methods = ["mixup", "cutmix", "resizemix", "fmix"]
    recipe = recipe_for(n, methods=pair_methods + ["cutout", "random_erasing"], cutout_length=4,
                        erasing_prob=1.0)
    if style == "class":
        pipe = ClassBasedPipe(recipe, constant_images(n), index_labels(n), seed=4)
        pipe.build()
    else:
        pipe = build(recipe, constant_images(n), index_labels(n), seed=4,
                     conditionals=style == "conditionals")
    seen = set()
    for b in run(pipe, iters=6):
        seen |= set(b["method"].tolist())
        pair = b["method"] < 4
        check_pixels({k: v[pair] for k, v in b.items()}, recipe_for(n, methods=pair_methods))
        erased = ~pair
        assert np.all(b["lam"][erased] == 1.0)
        own = np.stack([np.array([colour(i, c) for c in range(C)]) for i in range(n)])
        imgs = b["images"] if out_layout() == "HWC" else b["images"].transpose(0, 2, 3, 1)
        for i in np.flatnonzero(erased):  # some pixels erased, the rest the sample's own
            kept = np.all(imgs[i] == own[i], axis=-1)
            assert 0 < kept.mean() < 1
    assert seen == set(range(6))
