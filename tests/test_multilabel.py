"""Multi-label targets (`MixRecipe.label_format` "multi_hot" / "ids") mixed by the plan, by value.

Test images are constant colours, one per sample, as float CHW (so a Mixup pixel is exactly
lam c_i + (1 - lam) c_j); every sample has its own set of classes (the empty set and the full
set among them). The re-statement reads the sources and their shares from the output pixels
alone (paste methods: the pixel count of each sample's colour; Mixup: the partner j and lam
solving pixel = lam c_i + (1 - lam) c_j) and builds (1 - eps) sum_k share_k y_k + off, then the
threshold, from the input sets: it must equal the pipeline's targets for every sample, on both
executors, odd batch sizes, Mixup, CutMix, ResizeMix, FMix, RICAP, Mosaic, several modes. The
targets also equal sum_k shares_k * labels_k from the MixResult (the plan's own shares). With a
threshold (and with timm's own smoothing towards 0.5) they equal timm's `mixup_target`
followed by timm's `BinaryCrossEntropy` binarisation (skipped without timm). Ids (also from
DALI's COCO reader) and multi-hot inputs give the same targets; bad labels stop the Loader
naming the sample and the cause. The loss equals timm's `BinaryCrossEntropy` and a
re-statement; mAP equals a hand re-statement (and scikit-learn's when installed).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def

import dali_mix as dm
from dali_mix import native
from dali_mix.evaluation import average_precision, mean_average_precision
from dali_mix.torch import Loader, binary_cross_entropy, check_batch
from dali_mix.torch.loader import LabelError

H, W, C = 8, 10, 6
SETS = [[0, 2], [], [1], [0, 1, 2, 3, 4, 5], [3, 5], [4], [2, 3, 5], [1, 4], [0]]  # sample i: SETS[i % 9]
THRESHOLD = 0.3


def class_set(i: int) -> list[int]:
    return SETS[i % len(SETS)]


def multi_hot(i: int, dtype=np.float32) -> np.ndarray:
    v = np.zeros(C, dtype)
    v[class_set(i)] = 1
    return v


def colour(i: int) -> np.ndarray:
    """Sample i's colour, (3,) float64, distinct for every sample and channel."""
    return np.array([1.0 + 3.0 * i, 50.0 - 7.0 * i, 11.0 * i * i - 20.0])


def images_of(n: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.broadcast_to(colour(i)[:, None, None], (3, H, W)), np.float32) for i in range(n)]


def labels_of(n: int, label_format: str, dtype=np.float32) -> list[np.ndarray]:
    if label_format == "ids":
        return [np.array(class_set(i), np.int32) for i in range(n)]
    if label_format == "index":
        return [np.array([i % C], np.int32) for i in range(n)]
    return [multi_hot(i, dtype) for i in range(n)]


def run(methods, executor: str, n: int = 7, batches: int = 2, labels=None, label_format: str = "multi_hot",
        seed: int = 4, device: str = "cpu", **fields):
    """Batches of `methods` over the constant-colour images: dicts of numpy outputs (images,
    targets, lam, labels_b, and labels / shares when the plan has more than two slots)."""
    if executor == "fused":
        native.load()  # fails (not skips) with the cause when the operator cannot be built
    recipe = dm.MixRecipe(methods=methods, num_classes=C, layout="CHW", label_format=label_format, **fields)
    images = images_of(n)
    labels = labels if labels is not None else labels_of(n, label_format)
    four = dm.mix.label_slots(recipe) > 2

    @pipeline_def(batch_size=n, num_threads=1, device_id=0 if device == "gpu" else None, seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
        x = x.gpu() if device == "gpu" else x
        y = fn.external_source(source=lambda: labels, batch=True)
        out = dm.random_mix(x, y, recipe, image_size=(H, W), executor=executor)
        extra = (out.labels, out.shares) if four else ()
        return (*out.outputs(), out.lam, out.labels_b) + extra

    p = pipe()
    p.build()
    names = dm.output_names(recipe) + ["lam", "labels_b"] + (["labels", "shares"] if four else [])
    out = []
    for _ in range(batches):
        got = p.run()
        got = [t.as_cpu() if hasattr(t, "as_cpu") else t for t in got]
        out.append({k: np.stack([np.asarray(t[i]) for i in range(n)]) for k, t in zip(names, got)})
    return recipe, out


def shares_from_pixels(image: np.ndarray, i: int, n: int, blend: bool) -> np.ndarray:
    """(n,) float64 share of every sample in output image i ((3, H, W) float32), from the
    pixels alone: pasted pixels show one sample's colour each; a blend is lam c_i + (1 - lam) c_j."""
    colours = np.stack([colour(j) for j in range(n)])  # (n, 3)
    pix = image.reshape(3, -1).T.astype(np.float64)  # (H W, 3)
    shares = np.zeros(n)
    if not blend:
        dist = np.abs(pix[:, None, :] - colours[None]).max(-1)  # (H W, n)
        assert dist.min(1).max() < 1e-3, "a pixel shows no sample's colour"
        np.add.at(shares, dist.argmin(1), 1.0 / pix.shape[0])
        return shares
    p = pix.mean(0)
    assert np.abs(pix - p).max() < 1e-3  # a blend of constant images is constant
    best = None
    for j in range(n):
        if j == i:
            continue
        d = colours[i] - colours[j]
        lam = float(np.clip(d @ (p - colours[j]) / (d @ d), 0.0, 1.0))
        residual = np.abs(lam * colours[i] + (1 - lam) * colours[j] - p).max()
        if best is None or residual < best[0]:
            best = (residual, j, lam)
    residual, j, lam = best
    assert residual < 1e-3, "the pixel is no blend of two samples' colours"
    shares[i] += lam
    shares[j] += 1 - lam
    return shares


def restated(shares: np.ndarray, n: int, eps: float = 0.0, off: float | None = None,
             threshold: float | None = None) -> np.ndarray:
    """(1 - eps) sum_j shares_j y_j + off (default eps / C), then > threshold, (C,) float64."""
    y = np.stack([multi_hot(j, np.float64) for j in range(n)])
    t = (1.0 - eps) * (shares @ y) + (eps / C if off is None else off)
    return (t > threshold).astype(np.float64) if threshold is not None else t


EXECUTORS = ["fused", "dali"]
METHODS = [["mixup"], ["cutmix"], ["ricap"], ["mosaic"], ["resizemix", "fmix"], ["mixup", "cutmix", "ricap"]]


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("methods", METHODS, ids="+".join)
def test_targets_are_the_shares_of_the_pixels_times_the_classes(methods, executor):
    n, eps = 7, 0.1
    recipe, batches = run(methods, executor, n=n, label_smoothing=eps)
    blends = 0
    for b in batches:
        assert b["targets"].dtype == np.float32 and b["targets"].shape == (n, C)
        for i in range(n):
            image = b["images"][i]
            pasted = np.abs(image.reshape(3, -1) - image.reshape(3, -1)[:, :1]).max() > 1e-3
            blend = not pasted and b["lam"][i] < 1.0
            blends += blend
            shares = shares_from_pixels(image, i, n, blend)
            np.testing.assert_allclose(shares.sum(), 1.0, atol=1e-6)
            np.testing.assert_allclose(b["targets"][i], restated(shares, n, eps), atol=2e-5)
            # and the MixResult's own slots: lam / labels_b, or labels / shares
            if "shares" in b:
                mine = b["shares"][i] @ b["labels"][i]
            else:
                mine = b["lam"][i] * multi_hot(i) + (1 - b["lam"][i]) * b["labels_b"][i]
            np.testing.assert_allclose(b["targets"][i], (1 - eps) * mine + eps / C, atol=1e-6)
    if "mixup" in methods:
        assert blends > 0


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("methods", [["mixup"], ["cutmix"], ["ricap"]], ids="+".join)
def test_threshold_and_half_smoothing_follow_the_restatement(methods, executor):
    n, eps = 9, 0.2
    _, batches = run(methods, executor, n=n, label_smoothing=eps, target_threshold=THRESHOLD,
                     multi_label_smoothing="half", mode="batch" if methods == ["cutmix"] else "sample", seed=7)
    _, soft = run(methods, executor, n=n, label_smoothing=eps, multi_label_smoothing="half",
                  mode="batch" if methods == ["cutmix"] else "sample", seed=7)
    for b, s in zip(batches, soft):
        assert set(np.unique(b["targets"])) <= {0.0, 1.0}
        np.testing.assert_array_equal(b["targets"], (s["targets"] > THRESHOLD).astype(np.float32))
        for i in range(n):
            image = b["images"][i]
            pasted = np.abs(image.reshape(3, -1) - image.reshape(3, -1)[:, :1]).max() > 1e-3
            shares = shares_from_pixels(image, i, n, blend=not pasted and b["lam"][i] < 1.0)
            want = restated(shares, n, eps, off=eps / 2)
            np.testing.assert_allclose(s["targets"][i], want, atol=2e-5)
            far = np.abs(want - THRESHOLD) > 1e-4  # rounding cannot flip these
            np.testing.assert_array_equal(b["targets"][i][far], (want[far] > THRESHOLD))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_ids_uint8_and_float_multi_hot_give_the_same_targets(executor):
    n = 7
    _, ids = run(["mixup", "cutmix", "ricap"], executor, n=n, label_format="ids", label_smoothing=0.1)
    _, hot = run(["mixup", "cutmix", "ricap"], executor, n=n, label_smoothing=0.1)
    _, u8 = run(["mixup", "cutmix", "ricap"], executor, n=n, label_smoothing=0.1,
                labels=labels_of(n, "multi_hot", np.uint8))
    # ids as (L, 1) columns with a repeated id: the same sets
    cols = [np.array(class_set(i) + class_set(i)[:1], np.int64)[:, None] for i in range(n)]
    _, col = run(["mixup", "cutmix", "ricap"], executor, n=n, label_format="ids", label_smoothing=0.1, labels=cols)
    for a, b, c, d in zip(ids, hot, u8, col):
        assert not np.array_equal(a["targets"], np.broadcast_to(a["targets"][:1], a["targets"].shape))
        np.testing.assert_array_equal(a["targets"], b["targets"])
        np.testing.assert_array_equal(a["targets"], c["targets"])
        np.testing.assert_array_equal(a["targets"], d["targets"])


@pytest.mark.gpu
@pytest.mark.parametrize("label_format", ["multi_hot", "ids"])
def test_gpu_images_give_the_cpu_targets_on_the_gpu(label_format):
    """The GPU graph is the CPU graph with the images on the GPU: the same targets, moved there."""
    fields = dict(label_format=label_format, label_smoothing=0.1, target_threshold=None)
    _, cpu = run(["mixup", "cutmix", "ricap"], "dali", **fields)
    _, gpu = run(["mixup", "cutmix", "ricap"], "dali", device="gpu", **fields)
    for a, b in zip(cpu, gpu):
        np.testing.assert_array_equal(a["targets"], b["targets"])
        np.testing.assert_allclose(a["images"], b["images"], atol=1e-4)


@pytest.mark.parametrize("label_format", ["multi_hot", "ids"])
def test_unmixed_recipe_gives_the_smoothed_multi_hot(label_format):
    n, eps = 5, 0.1
    _, batches = run([], "dali", n=n, batches=1, label_format=label_format, label_smoothing=eps)
    want = np.stack([multi_hot(i) for i in range(n)]) * (1 - eps) + eps / C
    np.testing.assert_allclose(batches[0]["targets"], want, atol=1e-7)
    np.testing.assert_array_equal(batches[0]["lam"], 1.0)
    _, batches = run([], "dali", n=n, batches=1, label_format=label_format, target_threshold=0.5)
    np.testing.assert_array_equal(batches[0]["targets"], np.stack([multi_hot(i) for i in range(n)]))


def test_index_labels_with_a_threshold_binarise_the_soft_targets():
    n, eps = 7, 0.1
    _, soft = run(["mixup", "cutmix"], "dali", n=n, label_format="index", label_smoothing=eps, seed=3)
    _, hard = run(["mixup", "cutmix"], "dali", n=n, label_format="index", label_smoothing=eps, seed=3,
                  target_threshold=THRESHOLD)
    for s, h in zip(soft, hard):
        np.testing.assert_allclose(s["targets"].sum(1), 1.0, atol=1e-5)  # the soft ones are today's
        np.testing.assert_array_equal(h["targets"], (s["targets"] > THRESHOLD).astype(np.float32))
        assert 0 < h["targets"].sum() < h["targets"].size


# ---- timm -----------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("label_format", ["index", "multi_hot"])
def test_thresholded_targets_equal_timms(label_format, executor):
    """timm: `mixup_target` (index labels: one-hot off eps / C; `multi_label=True`: smoothed
    towards 0.5) of each sample and its partner at the plan's lam, binarised as
    `BinaryCrossEntropy(target_threshold=...)` does (`target.gt(threshold)`)."""
    mixup = pytest.importorskip("timm.data.mixup")
    n, eps = 9, 0.1
    fields = dict(label_smoothing=eps, target_threshold=THRESHOLD, seed=11)
    if label_format == "multi_hot":
        fields["multi_label_smoothing"] = "half"
    _, batches = run(["mixup", "cutmix"], executor, n=n, label_format=label_format, **fields)
    for b in batches:
        for i in range(n):
            lam = float(b["lam"][i])
            if label_format == "index":
                j = int(b["labels_b"][i])  # labels are i % C and n > C: find the partner by its label
                pair = torch.tensor([i % C, j])
                want = mixup.mixup_target(pair, C, lam, eps)[0]
            else:
                pair = torch.from_numpy(np.stack([multi_hot(i), b["labels_b"][i]]))
                want = mixup.mixup_target(pair, C, lam, eps, multi_label=True)[0]
            want = want.gt(THRESHOLD).float().numpy()
            np.testing.assert_array_equal(b["targets"][i], want)


def test_from_timm_maps_the_bce_arguments():
    r = dm.MixRecipe.from_timm(mixup_alpha=0.8, cutmix_alpha=1.0, bce_loss=True, bce_target_thresh=0.2,
                               num_classes=10)
    assert r.target_threshold == 0.2 and r.target == "dense" and r.label_format == "index"
    assert dm.MixRecipe.from_timm(bce_loss=True, num_classes=10).target_threshold is None
    ml = dm.MixRecipe.from_timm(multi_label=True, num_classes=10)
    assert (ml.label_format, ml.multi_label_smoothing, ml.label_smoothing) == ("multi_hot", "half", 0.1)
    assert dm.MixRecipe.from_timm(multi_label=True, num_classes=10, label_format="ids").label_format == "ids"
    with pytest.raises(ValueError, match="bce_target_thresh.*bce_loss"):
        dm.MixRecipe.from_timm(bce_target_thresh=0.2)
    with pytest.raises(ValueError, match="bce_loss.*dense"):
        dm.MixRecipe.from_timm(bce_loss=True, target="sparse")


def test_recipe_refuses_what_multi_label_cannot_do():
    with pytest.raises(ValueError, match="sparse.*label_format"):
        dm.MixRecipe(label_format="ids", target="sparse")
    with pytest.raises(ValueError, match="target_threshold.*dense"):
        dm.MixRecipe(target_threshold=0.2, target="sparse")
    with pytest.raises(ValueError, match="multi_label_smoothing"):
        dm.MixRecipe(multi_label_smoothing="half")
    with pytest.raises(ValueError, match="label_format"):
        dm.MixRecipe(label_format="one_hot")
    assert dm.MixRecipe(label_format="ids").multi_label and not dm.MixRecipe().multi_label


# ---- bad labels ------------------------------------------------------------------------------

def hot_with(i: int, values) -> list[np.ndarray]:
    labels = labels_of(7, "multi_hot")
    labels[i] = np.asarray(values, np.float32)
    return labels


BAD = {
    "id >= C": ("ids", lambda: [np.array([C], np.int32) if i == 3 else np.array(class_set(i), np.int32)
                                for i in range(7)], 3, "class id outside"),
    "negative id": ("ids", lambda: [np.array([1, -1], np.int32) if i == 5 else np.array(class_set(i), np.int32)
                                    for i in range(7)], 5, "class id outside"),
    "long vector": ("multi_hot", lambda: hot_with(2, [1] + [0] * C), 2, "length is not num_classes"),
    "short vector": ("multi_hot", lambda: hot_with(0, [1] * (C - 1)), 0, "length is not num_classes"),
    "non-binary": ("multi_hot", lambda: hot_with(4, [0.5] + [0] * (C - 1)), 4, "other than 0 and 1"),
    "NaN": ("multi_hot", lambda: hot_with(1, [0, np.nan] + [1] * (C - 2)), 1, "other than 0 and 1"),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_labels_are_named_never_a_silent_row(case, executor):
    label_format, labels, row, cause = BAD[case]
    _, batches = run(["mixup", "cutmix", "ricap"], executor, n=7, batches=1, label_format=label_format,
                     labels=labels(), label_smoothing=0.1)
    targets = torch.from_numpy(batches[0]["targets"])
    with pytest.raises(LabelError, match=rf"targets rows \[{row}\].*{cause}"):
        check_batch({"targets": targets}, C, multi_label=True)
    good = [i for i in range(7) if i != row]
    assert bool((targets[good] >= 0).all())  # only the bad sample's row is marked


def test_bad_labels_stop_the_loader_naming_the_cause(tmp_path):
    """A user's pipeline with a reader (for the epoch size) and multi-label labels."""
    files = []
    for i in range(7):
        (tmp_path / f"{i}.bin").write_bytes(bytes([i]))
        files.append(str(tmp_path / f"{i}.bin"))
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=C, layout="CHW", label_format="ids")

    def loader(labels, num_classes=C):
        @pipeline_def(batch_size=7, num_threads=1, device_id=None, seed=2)
        def pipe():
            _, index = fn.readers.file(files=files, name="Reader")
            x = fn.external_source(source=lambda: images_of(7), batch=True, layout="CHW")
            y = fn.external_source(source=lambda: labels, batch=True)
            return (*dm.random_mix(x, y, recipe, image_size=(H, W), executor="dali").outputs(), index)

        return Loader(pipe(), dm.output_names(recipe) + ["index"], num_classes=num_classes, multi_label=True)

    (images, targets, _), = list(loader(labels_of(7, "ids")))
    assert targets.shape == (7, C) and bool((targets >= 0).all()) and bool((targets <= 1).all())
    bad = labels_of(7, "ids")
    bad[6] = np.array([2, 9], np.int32)
    with pytest.raises(LabelError, match=r"targets rows \[6\].*class id outside"):
        list(loader(bad))
    with pytest.raises(LabelError, match=r"targets rows \[6\].*class id outside"):
        list(loader(bad, num_classes=None))  # multi_label=True alone finds the marked rows
    # a multi-label batch checked as single-label targets is named for what it is
    with pytest.raises(LabelError, match="multi_label=True"):
        check_batch({"targets": targets}, C)


# ---- the loss --------------------------------------------------------------------------------

def bce_restated(logits, targets, smoothing=0.0, threshold=None, pos_weight=None, weight=None,
                 reduction="mean", sum_classes=False, smooth_dense=False):
    """-[p y log s(x) + (1 - y) log(1 - s(x))] w, p the positive weight, in float64."""
    x = logits.double()
    N, Cn = x.shape
    if targets.shape != x.shape:
        off = smoothing / Cn
        y = torch.full((N, Cn), off, dtype=torch.float64)
        y[torch.arange(N), targets.long().reshape(-1)] = 1 - smoothing + off
    else:
        y = targets.double()
        if smooth_dense:
            y = y * (1 - smoothing) + 0.5 * smoothing
    if threshold is not None:
        y = (y > threshold).double()
    p = 1.0 if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float64)
    w = 1.0 if weight is None else weight.double()
    log_s = -torch.log1p(torch.exp(-x))
    log_1s = -x + log_s
    loss = -(p * y * log_s + (1 - y) * log_1s) * w
    if sum_classes:
        return loss.sum(1).mean()
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


CASES = [dict(), dict(smoothing=0.1), dict(threshold=0.2), dict(pos_weight=2.0), dict(reduction="sum"),
         dict(reduction="none"), dict(sum_classes=True), dict(smoothing=0.2, smooth_dense=True),
         dict(pos_weight="vector", weight="vector", threshold=0.3)]


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_binary_cross_entropy_equals_timm_and_the_restatement(case, dense):
    g = torch.Generator().manual_seed(case)
    kw = dict(CASES[case])
    logits = torch.randn(9, C, generator=g) * 3
    targets = torch.rand(9, C, generator=g) if dense else torch.randint(0, C, (9,), generator=g)
    for key in ("pos_weight", "weight"):
        if kw.get(key) == "vector":
            kw[key] = torch.rand(C, generator=g) + 0.5
    ours = dict(kw)
    if "threshold" in ours:
        ours["target_threshold"] = ours.pop("threshold")
    got = binary_cross_entropy(logits, targets, **ours)
    torch.testing.assert_close(got.double(), bce_restated(logits, targets, **kw), atol=1e-5, rtol=1e-5)
    timm_loss = pytest.importorskip("timm.loss")
    timm_kw = dict(ours)
    timm_kw.setdefault("smoothing", 0.0)
    want = timm_loss.BinaryCrossEntropy(**timm_kw)(logits, targets)
    torch.testing.assert_close(got, want)


def test_binary_cross_entropy_names_bad_class_ids():
    with pytest.raises(ValueError, match=r"class id\(s\) \[6\] outside \[0, 6\)"):
        binary_cross_entropy(torch.zeros(2, C), torch.tensor([1, 6]))


# ---- mAP -------------------------------------------------------------------------------------

def ap_restated(scores: list[float], positive: list[bool]) -> float:
    """Average precision of one class, written as its definition: over the distinct scores t in
    decreasing order, (recall(>= t) - recall(> previous t)) * precision(>= t)."""
    total = sum(positive)
    ap, last_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        chosen = [p for s, p in zip(scores, positive) if s >= t]
        recall = sum(chosen) / total
        ap += (recall - last_recall) * sum(chosen) / len(chosen)
        last_recall = recall
    return ap


def test_map_equals_the_definition_and_sklearn():
    g = torch.Generator().manual_seed(0)
    N, K = 40, 7
    scores = torch.randint(0, 6, (N, K), generator=g).float()  # many ties
    targets = (torch.rand(N, K, generator=g) < 0.3).float()
    targets[:, 5] = 0  # a class without positives: left out
    targets[:, 6] = 1  # a class of positives only: AP 1
    ap = average_precision(scores, targets)
    for c in range(K):
        if c == 5:
            assert math.isnan(float(ap[c]))
            continue
        assert float(ap[c]) == pytest.approx(ap_restated(scores[:, c].tolist(), (targets[:, c] > 0).tolist()),
                                             abs=1e-12)
    assert float(ap[6]) == pytest.approx(1.0)
    value, classes = mean_average_precision(scores, targets)
    assert classes == K - 1
    assert value == pytest.approx(100 * float(ap[[0, 1, 2, 3, 4, 6]].mean()))
    # a perfect ranking scores 100, the reversed ranking of one positive among N scores 100 / N
    perfect = targets[:, :5] * 2 - 1
    assert mean_average_precision(perfect, targets[:, :5])[0] == pytest.approx(100.0)
    one = torch.zeros(N, 1)
    one[0] = 1
    assert mean_average_precision(-torch.arange(N, dtype=torch.float32)[:, None].flip(0), one)[0] == \
        pytest.approx(100.0 / N)
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(scores, torch.zeros(N, K))
    try:
        from sklearn.metrics import average_precision_score
    except ImportError:
        return
    for c in [0, 1, 2, 3, 4, 6]:
        assert float(ap[c]) == pytest.approx(average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()))


def test_evaluate_multilabel_over_batches():
    from dali_mix.evaluation import evaluate_multilabel, format_table

    g = torch.Generator().manual_seed(1)
    images = torch.randn(30, C, generator=g)
    targets = (torch.rand(30, C, generator=g) < 0.4).float()
    batches = [(images[k:k + 8], targets[k:k + 8]) for k in range(0, 30, 8)]
    result = evaluate_multilabel(lambda x: x * 2.0, batches, torch.device("cpu"))
    value, classes = mean_average_precision(images, targets)
    hamming = 100.0 * float(((images > 0) == (targets > 0.5)).double().mean())  # decisions at probability 0.5
    assert result == {"samples": 30, "clean": {"map": round(value, 3), "map_classes": classes,
                                               "hamming_acc": round(hamming, 3)}}
    assert f"mAP {round(value, 3):7.3f}%" in format_table(result)


def test_dalis_coco_reader_labels_feed_the_ids_format(tmp_path):
    """fn.readers.coco gives each image its boxes' class ids, (L,) int32 numbered from 1
    (categories remapped to consecutive ids), an empty list for an image without boxes: minus 1
    they are the "ids" format; through the Loader the targets are each image's classes."""
    sets = {1: [1, 7], 2: [], 3: [3], 4: [1, 3, 7, 7], 5: [7]}  # COCO category ids of image k
    consecutive = {1: 0, 3: 1, 7: 2}
    images, anns = [], []
    for k, cats in sets.items():
        (tmp_path / f"{k}.jpg").write_bytes(bytes([k]) * 8)  # never decoded here
        images.append({"id": k, "file_name": f"{k}.jpg", "width": W, "height": H})
        anns += [{"id": len(anns) + 1, "image_id": k, "category_id": c, "bbox": [1, 1, 3, 3], "area": 9,
                  "iscrowd": 0} for c in cats]
    import json

    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": c, "name": str(c)} for c in consecutive]}))
    n, classes = 5, len(consecutive)
    for methods in ([], ["mixup"]):
        recipe = dm.MixRecipe(methods=methods, num_classes=classes, layout="CHW", label_format="ids")

        @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=5)
        def pipe():
            _, _, labels, image_ids = fn.readers.coco(file_root=str(tmp_path), image_ids=True, name="Reader",
                                                      annotations_file=str(tmp_path / "ann.json"))
            x = fn.external_source(source=lambda: images_of(n), batch=True, layout="CHW")
            out = dm.random_mix(x, labels - 1, recipe, image_size=(H, W), executor="dali")
            return (*out.outputs(), image_ids, out.lam, out.labels_b)

        names = dm.output_names(recipe) + ["image_ids", "lam", "partner_multi_hot"]
        loader = Loader(pipe(), names, num_classes=classes, multi_label=True)
        (_, targets, image_ids, lam, labels_b), = list(loader)
        hot = {k: np.isin(np.arange(classes), [consecutive[c] for c in cats]).astype(np.float32)
               for k, cats in sets.items()}
        own = np.stack([hot[int(k)] for k in image_ids.reshape(-1)])
        if not methods:
            np.testing.assert_array_equal(targets.numpy(), own)
            continue
        others = {v.tobytes() for v in own}
        for i in range(n):
            assert labels_b[i].numpy().tobytes() in others
            want = float(lam[i]) * own[i] + (1 - float(lam[i])) * labels_b[i].numpy()
            np.testing.assert_allclose(targets[i].numpy(), want, atol=1e-6)


def test_label_cost_benchmark_smoke(tmp_path):
    from benchmarks import label_cost

    out = tmp_path / "label_cost.json"
    assert label_cost.main(["--batch-size", "4", "--classes", "5", "--threads", "1", "--rounds", "1",
                            "--json", str(out)]) == 0
    import json

    res = json.loads(out.read_text())["results"]
    assert set(res) == {f"{m}, C=5, {f}" for m in label_cost.METHODS for f in label_cost.FORMATS}
    assert all(r["cpu_ms"] > 0 and r["wall_ms"] > 0 for r in res.values())
