"""Value tests of the DALI side of MixMo (`dali_mix.mixmo`, `pipelines.mixmo`), on the CPU.

Test batches hold constant-colour images (sample i has its own colour) with label i, so every
output tells which input it came from. Images are non-square (20x28) and both layouts are covered.

Checked: kappa ~ Beta(2, 2) (KS); Cut-MixMo masks are 0/1 single rectangles (official clipped
boxes, or with box="inside" fully inside with the torch reference's box size and within one pixel
row/column of the drawn kappa), their mean is the output kappa exactly; about half are swapped;
the choice and the swap are per batch (per sample on request), the same masks with and without
image_size; the cut frequency follows p_cut (binomial), also from an external source; partners and their labels;
smoothed one-hot targets; batch repetition (b copies, b different partners, never a copy of
itself); determinism; the mask at feature resolution (torch `resize_mask`) keeps its mean within
one ring of feature cells; an ImageFolder pipeline feeding `MixMoNet` + `mixmo_loss`.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def
from PIL import Image
from scipy import stats

import dali_mix as dm
from dali_mix.schedule import BatchClock
from dali_mix.mixmo import (CutProbSchedule, check_mixmo_args, mixmo_inputs, repeat_batch,
                            repetition_pairing)
from dali_mix.torch import Loader
from dali_mix.torch.mixmo import MixMoNet, mixmo_loss, mixmo_p_schedule, resize_mask
from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD
from pipelines.mixmo import mixmo_train_pipeline

H, W, C = 20, 28, 3
N = 16
EXTRA = ("kappa_drawn", "swapped", "labels0", "labels1")


def colour(i: int) -> np.ndarray:
    return np.array([1 + i, 100 + i, 200 - i], dtype=np.float32)


def constant_images(n=N, layout="CHW", h=H, w=W):
    out = []
    for i in range(n):
        img = np.broadcast_to(colour(i), (h, w, C)).copy()
        out.append(np.ascontiguousarray(img.transpose(2, 0, 1)) if layout == "CHW" else img)
    return out


def to_np(tl):
    return np.stack([np.asarray(tl[i]) for i in range(len(tl))])


def run(n=N, iters=1, seed=0, layout="CHW", h=H, w=W, **kw):
    """Run mixmo_inputs over constant images (label = index); returns a list (per batch) of
    dicts name -> array with the output names plus EXTRA."""
    images = constant_images(n, layout, h, w)
    names = dm.output_names(mixmo=True, num_classes=kw.get("num_classes"))

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)], batch=True)
        mm = mixmo_inputs(x, y, layout=layout, **kw)
        assert len(mm.outputs()) == len(names)
        return (*mm.outputs(), *(getattr(mm, e) for e in EXTRA))

    p = pipe()
    p.build()
    return [dict(zip(names + list(EXTRA), (to_np(o) for o in p.run()))) for _ in range(iters)]


def cat(batches, name):
    return np.concatenate([b[name] for b in batches])


def test_one_output_names_for_random_mix_and_mixmo():
    """`dm.output_names` names mixmo_inputs' outputs too (the targets by `num_classes`), and
    refuses an ambiguous call."""
    assert dm.output_names(mixmo=True, num_classes=10) == [
        "images0", "images1", "targets0", "targets1", "kappa", "mask", "use_cut"]
    assert dm.output_names(mixmo=True) == ["images0", "images1", "labels0", "labels1", "kappa", "mask", "use_cut"]
    recipe = dm.MixRecipe(num_classes=10)
    assert dm.output_names(recipe) == ["images", "targets"]
    with pytest.raises(ValueError, match="give one of them"):
        dm.output_names(recipe, mixmo=True)
    with pytest.raises(ValueError, match="needs the recipe"):
        dm.output_names()
    with pytest.raises(ValueError, match="num_classes is mixmo_inputs'"):
        dm.output_names(recipe, num_classes=10)


def sample_index(images, layout):
    """Index i of the constant colour of each image (asserts the image is constant)."""
    first = images[:, :, 0, 0] if layout == "CHW" else images[:, 0, 0, :]
    idx = (first[:, 0] - 1).astype(int)
    for k, i in enumerate(idx):
        np.testing.assert_array_equal(first[k], colour(i))
        assert np.all(images[k] == (first[k][:, None, None] if layout == "CHW" else first[k]))
    return idx


def mask_hw(mask, layout):
    return mask[:, 0] if layout == "CHW" else mask[..., 0]


def box_of(m, value):
    """Bounding box (y0, y1, x0, x1) of the pixels equal to `value` in a 2-D array, or None."""
    ys, xs = np.nonzero(m == value)
    if len(ys) == 0:
        return None
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


# ------------------------------------------------------------------------------------------------
# kappa, cut flag, mask
# ------------------------------------------------------------------------------------------------

def test_kappa_is_beta_2_2():
    batches = run(n=64, iters=40, p_cut=0.0)  # 2560 samples, all Linear-MixMo
    k = cat(batches, "kappa")
    assert k.dtype == np.float32 and k.shape == (2560,)
    np.testing.assert_array_equal(k, cat(batches, "kappa_drawn"))  # linear: the drawn kappa
    assert stats.kstest(k, stats.beta(2, 2).cdf).pvalue > 1e-3
    # the KS test has power: Beta(1, 1) and Beta(4, 4) are rejected at this size
    assert stats.kstest(k, stats.beta(1, 1).cdf).pvalue < 1e-6
    assert stats.kstest(k, stats.beta(4, 4).cdf).pvalue < 1e-6


@pytest.mark.parametrize("layout,box,image_size", [("CHW", "official", None), ("HWC", "official", (H, W)),
                                                   ("CHW", "inside", (H, W)), ("HWC", "inside", None)])
def test_cut_masks_are_rectangles_with_exact_kappa(layout, box, image_size):
    batches = run(n=32, iters=8, p_cut=1.0, layout=layout, box=box, image_size=image_size,
                  per_sample=True)
    mask = np.concatenate([mask_hw(b["mask"], layout) for b in batches])
    kappa, k0 = cat(batches, "kappa"), cat(batches, "kappa_drawn")
    swapped, use_cut = cat(batches, "swapped"), cat(batches, "use_cut")
    assert mask.dtype == np.uint8 and mask.shape == (256, H, W)
    assert batches[0]["mask"].shape == ((32, 1, H, W) if layout == "CHW" else (32, H, W, 1))
    assert use_cut.dtype == np.bool_ and use_cut.all()
    assert set(np.unique(mask)) <= {0, 1}
    for m, k, kd, sw in zip(mask, kappa, k0, swapped):
        # kappa = the exact mask mean (float32 of the exact ratio)
        assert k == np.float32(m.mean(dtype=np.float64))
        # a single rectangle of `box_val`, the rest the other value
        box_val = 0 if sw else 1
        found = box_of(m, box_val)
        if found is None:
            continue
        y0, y1, x0, x1 = found
        assert np.all(m[y0:y1, x0:x1] == box_val)
        assert (m == box_val).sum() == (y1 - y0) * (x1 - x0)
        if box == "inside":
            # box size as the torch reference: bh = round(sqrt(k) H), bw = round(k H W / bh)
            bh = int(np.floor(np.sqrt(np.float64(kd)) * H + 0.5))
            bw = min(W, int(np.floor(np.float64(kd) * H * W / bh + 0.5)))
            assert abs((y1 - y0) - bh) <= 1 and abs((x1 - x0) - bw) <= 1  # float32 ties only
            # within one pixel row / column of the drawn kappa
            target = 1 - kd if sw else kd
            assert abs(float(k) - float(target)) <= max(H, W) / (H * W) + 1e-6
        else:
            # the official clipped box: at most 2 * (side // 2) of int(sqrt(k) * side) per axis
            cut_h, cut_w = int(np.sqrt(kd) * H), int(np.sqrt(kd) * W)
            assert y1 - y0 <= 2 * (cut_h // 2) and x1 - x0 <= 2 * (cut_w // 2)
    # the roles are swapped about half of the time
    assert stats.binomtest(int(swapped.sum()), len(swapped), 0.5).pvalue > 1e-3
    assert 0 < swapped.sum() < len(swapped)


@pytest.mark.parametrize("box", ["official", "inside"])
def test_masks_same_with_and_without_image_size(box):
    """The graph's scaling of the unit draws (no image_size) gives the numpy boxes exactly."""
    kw = dict(n=16, iters=3, p_cut=0.5, box=box, seed=11)
    for a, b in zip(run(image_size=None, **kw), run(image_size=(H, W), **kw)):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_choice_and_swap_once_per_batch():
    """Official: one batch seed decides Cut-MixMo vs Linear-MixMo and the role swap for the
    whole batch; per_sample=True draws them per sample."""
    batches = run(n=16, iters=40, p_cut=0.5)
    for b in batches:
        assert len(set(b["use_cut"])) == 1 and len(set(b["swapped"])) == 1
    cuts = np.array([b["use_cut"][0] for b in batches])
    swaps = np.array([b["swapped"][0] for b in batches])
    assert stats.binomtest(int(cuts.sum()), len(cuts), 0.5).pvalue > 1e-3
    assert stats.binomtest(int(swaps.sum()), len(swaps), 0.5).pvalue > 1e-3
    per = run(n=16, iters=4, p_cut=0.5, per_sample=True)
    assert any(len(set(b["use_cut"])) == 2 for b in per)
    assert any(len(set(b["swapped"])) == 2 for b in per)


def test_box_sizes_match_torch_reference_formula():
    """box="inside", extreme kappas: empty box, full image, thin boxes; the mean never leaves
    [0, 1]."""
    from dali_mix import draws
    from dali_mix.mixmo import cut_mixmo_mask

    kappas = [0.0, 1e-6, 0.001, 0.02, 0.5, 0.97, 0.999, 1.0]
    n = len(kappas)
    centres = list(np.ascontiguousarray(draws.cut_mixmo_centres(np.random.default_rng(1), n).T))

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=1)
    def pipe():
        x = fn.external_source(source=lambda: constant_images(n), batch=True, layout="CHW")
        k = fn.external_source(source=lambda: [np.float32(v) for v in kappas], batch=True)
        c = fn.external_source(source=lambda: centres, batch=True)
        unswapped = fn.external_source(source=lambda: [np.array(False)] * n, batch=True)
        m, kt = cut_mixmo_mask(x, k, c, unswapped, box="inside")
        return m, kt

    p = pipe()
    p.build()
    m, kt = (to_np(o) for o in p.run())
    for i, kd in enumerate(kappas):
        bh = int(np.floor(np.sqrt(kd) * H + 0.5))
        bw = 0 if bh == 0 else min(W, int(np.floor(kd * H * W / bh + 0.5)))
        assert m[i].sum() == bh * bw, (kd, m[i].sum(), bh, bw)
        assert kt[i] == np.float32(bh * bw / (H * W))
    assert kt[0] == 0 and kt[-1] == 1


@pytest.mark.parametrize("p_cut", [0.3, 0.8])
def test_use_cut_frequency_matches_p_cut(p_cut):
    batches = run(n=64, iters=10, p_cut=p_cut, per_sample=True)
    use_cut = cat(batches, "use_cut")
    assert stats.binomtest(int(use_cut.sum()), len(use_cut), p_cut).pvalue > 1e-3
    # linear samples keep the drawn kappa; cut samples carry the mask mean
    kappa, kd = cat(batches, "kappa"), cat(batches, "kappa_drawn")
    np.testing.assert_array_equal(kappa[~use_cut], kd[~use_cut])
    means = np.concatenate([b["mask"].mean(axis=(1, 2, 3), dtype=np.float64) for b in batches])
    np.testing.assert_array_equal(kappa[use_cut], means[use_cut].astype(np.float32))


def test_p_cut_from_external_source():
    n = 12
    flags = np.array([i % 3 == 0 for i in range(n)])
    batches = run(n=n, iters=3, p_cut=lambda info: flags)
    for b in batches:
        np.testing.assert_array_equal(b["use_cut"], flags)
    seen = []

    def probs(info):
        seen.append(info.iteration)
        return np.full(n, 0.0 if info.iteration == 0 else 1.0, np.float32)

    batches = run(n=n, iters=2, p_cut=probs)
    assert not batches[0]["use_cut"].any() and batches[1]["use_cut"].all()


def test_p_cut_from_a_data_node():
    """A DataNode p_cut is compared in the graph with the sampler's u: 0/1 flags give exactly
    those flags, a constant 0.5 a per-batch choice."""
    n = 12
    flags = np.array([i % 3 == 0 for i in range(n)], np.float32)
    images = constant_images(n)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=2)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)], batch=True)
        p = fn.external_source(source=lambda: list(flags), batch=True)
        mm = mixmo_inputs(x, y, p_cut=p)
        return mm.use_cut, mm.kappa, mm.mask

    p = pipe()
    p.build()
    for _ in range(3):
        np.testing.assert_array_equal(to_np(p.run()[0]), flags.astype(bool))


def test_cut_prob_schedule():
    clock = BatchClock(runs_per_epoch=10)
    s = CutProbSchedule(8, total_epochs=12, p=0.5, clock=clock)
    # official: 1-based epochs; p until 11/12, the last epoch 0
    assert [s.probability(e) for e in (0, 9, 10, 11)] == [0.5, 0.5, 0.5, 0.0]
    s = CutProbSchedule(8, total_epochs=12, p=0.5, clock=clock, per_step=True)
    assert s.probability(11, 5) == pytest.approx(mixmo_p_schedule(11.5, 12, 0.5)) == 0.25

    class Info:  # DALI counts runs over the pipeline's life: run 110 = epoch 11, step 0
        epoch_idx, iteration = 0, 110

    out = s(Info())
    assert out.shape == (8,) and out.dtype == np.float32 and np.all(out == 0.5)
    Info.iteration = 115
    assert np.all(s(Info()) == pytest.approx(0.25))
    with pytest.raises(ValueError, match="total_epochs"):
        CutProbSchedule(8, total_epochs=0)


# ------------------------------------------------------------------------------------------------
# partners, targets, repetition
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_partners_and_labels(layout):
    for b in run(n=N, iters=3, layout=layout):
        i0 = sample_index(b["images0"], layout)
        i1 = sample_index(b["images1"], layout)
        np.testing.assert_array_equal(i0, np.arange(N))
        np.testing.assert_array_equal(b["labels0"], i0)
        np.testing.assert_array_equal(b["labels1"], i1)  # images1 are the partners, labels match
        assert b["labels0"].dtype == np.int64 and b["labels1"].dtype == np.int64
        assert sorted(i1) == list(range(N))  # a permutation
        assert np.all(i1 != i0)  # no self-pairs
        assert b["images1"].dtype == np.float32


def test_dense_targets_smoothed():
    eps, n_cls = 0.1, 20
    b = run(n=N, num_classes=n_cls, smoothing=eps)[0]
    for name, lab in (("targets0", "labels0"), ("targets1", "labels1")):
        t = b[name]
        assert t.shape == (N, n_cls) and t.dtype == np.float32
        ref = np.full((N, n_cls), eps / n_cls, np.float32)
        ref[np.arange(N), b[lab]] = 1 - eps + eps / n_cls
        np.testing.assert_allclose(t, ref, atol=1e-7)
        np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    b = run(n=N, num_classes=n_cls)[0]
    np.testing.assert_array_equal(b["targets1"], np.eye(n_cls, dtype=np.float32)[b["labels1"]])


@pytest.mark.parametrize("b_rep,n", [(2, 12), (4, 20), (3, 24)])
def test_batch_repetition(b_rep, n):
    seen = collections.Counter()
    for b in run(n=n, iters=6, batch_repetition=b_rep, seed=b_rep):
        i0 = sample_index(b["images0"], "CHW")
        i1 = sample_index(b["images1"], "CHW")
        np.testing.assert_array_equal(b["labels0"], i0)
        np.testing.assert_array_equal(b["labels1"], i1)
        m = n // b_rep
        c0, c1 = collections.Counter(i0), collections.Counter(i1)
        assert len(c0) == m and set(c0.values()) == {b_rep}  # m distinct, b copies each
        assert c1 == c0  # partners are again b copies of each distinct image
        for img in c0:
            partners = i1[i0 == img]
            assert len(set(partners)) == b_rep  # b different partners
            assert img not in partners  # never a copy of itself
        # block layout: position r*m + i holds distinct sample i
        np.testing.assert_array_equal(i0.reshape(b_rep, m), np.tile(i0[:m], (b_rep, 1)))
        seen.update(c0)
    assert len(seen) > n // b_rep  # the kept subset changes from batch to batch


def test_repetition_pairing_constant():
    assert repetition_pairing(6, 2) == [1, 2, 0, 5, 3, 4]
    with pytest.raises(ValueError, match="batch_repetition=4 needs batch_size >= b"):
        repetition_pairing(16, 4)
    with pytest.raises(ValueError, match="must divide"):
        repetition_pairing(10, 3)


def test_repeat_outside_then_mixmo_inputs():
    """`repeat_batch` before (per-copy) augmentation + `repeat=False` gives the same structure."""
    n, b_rep = 12, 3
    images = constant_images(n)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=5)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)], batch=True)
        x, y = repeat_batch(x, y, batch_repetition=b_rep)
        x = x + fn.random.uniform(range=[0, 0.5])  # a per-copy "augmentation"
        mm = mixmo_inputs(x, y, batch_repetition=b_rep, repeat=False)
        return mm.images0, mm.images1, mm.labels0, mm.labels1

    p = pipe()
    p.build()
    x0, x1, l0, l1 = (to_np(o) for o in p.run())
    np.testing.assert_array_equal(np.floor(x0[:, 0, 0, 0]).astype(int) - 1, l0)
    np.testing.assert_array_equal(np.floor(x1[:, 0, 0, 0]).astype(int) - 1, l1)
    assert len(set(x0[:, 0, 0, 0])) == n  # copies differ (own augmentation)
    for img in set(l0):
        assert (l0 == img).sum() == b_rep
        partners = l1[l0 == img]
        assert len(set(partners)) == b_rep and img not in partners


def test_deterministic_with_seed():
    kw = dict(n=N, iters=3, p_cut=0.5, num_classes=N, batch_repetition=2)
    a, b, c = run(seed=7, **kw), run(seed=7, **kw), run(seed=8, **kw)
    for x, y in zip(a, b):
        for name in x:
            np.testing.assert_array_equal(x[name], y[name])
    assert any(not np.array_equal(x["kappa"], z["kappa"]) for x, z in zip(a, c))


@pytest.mark.parametrize("size,feat", [((32, 32), (8, 8)), ((20, 28), (6, 9))])
def test_mask_at_feature_resolution(size, feat):
    h, w = size
    hf, wf = feat
    batches = run(n=32, iters=4, p_cut=1.0, h=h, w=w)
    mask = torch.from_numpy(np.concatenate([b["mask"] for b in batches]))
    kappa = torch.from_numpy(cat(batches, "kappa"))
    sw = cat(batches, "swapped")
    m = resize_mask(mask, (hf, wf))
    assert m.shape == (len(kappa), 1, hf, wf)
    kf = m.mean(dim=(1, 2, 3))
    for i in range(len(kappa)):
        box = box_of(mask[i, 0].numpy(), 0 if sw[i] else 1)
        bh, bw = (0, 0) if box is None else (box[1] - box[0], box[3] - box[2])
        ring = (bh * hf / h + bw * wf / w + 1) / (hf * wf)  # one ring of feature cells
        assert abs(float(kf[i]) - float(kappa[i])) <= ring + 1e-6


def test_argument_errors():
    with pytest.raises(ValueError, match="p_cut"):
        check_mixmo_args(p_cut=1.5)
    with pytest.raises(ValueError, match="p_cut"):
        check_mixmo_args(p_cut="often")
    with pytest.raises(ValueError, match="mixmo_alpha"):
        check_mixmo_args(alpha=0)
    with pytest.raises(ValueError, match="batch_repetition"):
        check_mixmo_args(batch_repetition=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        check_mixmo_args(smoothing=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        check_mixmo_args(num_classes=0)
    with pytest.raises(ValueError, match="batch_repetition=4"):
        check_mixmo_args(batch_repetition=4, batch_size=16)
    with pytest.raises(ValueError, match="layout"):
        run(layout="NHWC")
    check_mixmo_args(p_cut=lambda info: None, batch_repetition=4, batch_size=20)


# ------------------------------------------------------------------------------------------------
# ImageFolder pipeline -> Loader -> MixMoNet
# ------------------------------------------------------------------------------------------------

def make_folder(root, n_classes=3, per_class=6, size=(36, 30)):
    """ImageFolder of constant-colour PNGs: image k (global index) has red = 10 * k + 5."""
    k = 0
    for c in range(n_classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", size, (10 * k + 5, 40 * c, 128)).save(d / f"{j}.png")
            k += 1
    return root


def test_train_pipeline_feeds_mixmo_net(tmp_path):
    root = make_folder(tmp_path / "data")
    n_cls, bs, b_rep = 3, 8, 2
    built = mixmo_train_pipeline(root, batch_size=bs, image_size=16, device="cpu", device_id=None,
                                 shard_id=0, num_shards=1, seed=0, num_threads=1,
                                 crop="random_resized", p_cut=0.5, batch_repetition=b_rep,
                                 smoothing=0.1)
    assert built.output_map == ["images0", "images1", "targets0", "targets1", "kappa", "mask",
                                "use_cut"]
    loader = Loader(built.pipe, built.output_map, built.reader_name, num_classes=n_cls)
    assert len(loader) == 18 // bs
    torch.manual_seed(0)
    net = MixMoNet.from_torchvision("resnet18", n_cls, small_images=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    steps = 0
    for x0, x1, t0, t1, kappa, mask, use_cut in loader:
        assert x0.shape == x1.shape == (bs, 3, 16, 16) and x0.dtype == torch.float32
        assert t0.shape == t1.shape == (bs, n_cls)
        assert kappa.reshape(-1).shape == (bs,) and mask.shape == (bs, 1, 16, 16)
        assert mask.dtype == torch.uint8 and use_cut.dtype == torch.bool
        # constant images survive crop/flip: red identifies the image; class from the green
        red0 = torch.round((x0[:, 0] * std[:, 0] + mean[:, 0]).mean(dim=(1, 2)))
        red1 = torch.round((x1[:, 0] * std[:, 0] + mean[:, 0]).mean(dim=(1, 2)))
        green1 = torch.round((x1[:, 1] * std[:, 1] + mean[:, 1]).mean(dim=(1, 2)))
        assert torch.equal(t1.argmax(1), (green1 / 40).long())
        assert torch.equal(t0.argmax(1), ((red0 - 5) / 10 // 6).long())
        for img in red0.unique():
            partners = red1[red0 == img]
            assert len(partners) == b_rep and len(partners.unique()) == b_rep
            assert img not in partners
        logits, k_used = net(x0, x1, kappa=kappa.reshape(-1), mask=mask,
                             use_cut=use_cut.reshape(-1), return_kappa=True)
        assert logits.shape == (bs, 2, n_cls)
        # stride 1 with small_images: the kappa used is the pipeline's kappa
        torch.testing.assert_close(k_used, kappa.reshape(-1).float())
        loss = mixmo_loss(logits, t0, t1, k_used)
        assert torch.isfinite(loss)
        loss.backward()
        steps += 1
    assert steps == 2


def test_train_pipeline_argument_errors(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=2, per_class=2)
    common = dict(batch_size=8, image_size=16, device="cpu", device_id=None, shard_id=0,
                  num_shards=1, seed=0, num_threads=1)
    with pytest.raises(ValueError, match="batch_repetition=4"):
        mixmo_train_pipeline(root, batch_repetition=4, **common)
    with pytest.raises(ValueError, match="p_cut"):
        mixmo_train_pipeline(root, p_cut=2.0, **common)
    with pytest.raises(ValueError, match="target"):
        mixmo_train_pipeline(root, target="soft", **common)
    built = mixmo_train_pipeline(root, target="labels", **common)
    assert built.output_map[2:4] == ["labels0", "labels1"]
