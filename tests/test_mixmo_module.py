"""Tests of the torch side of MixMo (dali_mix/torch/mixmo.py). CPU only, small models."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dali_mix import draws
from dali_mix.torch.mixmo import (
    MixMoNet,
    cut_mixmo,
    cut_mixmo_mask,
    linear_mixmo,
    mixmo_loss,
    mixmo_loss_weights,
    mixmo_p_schedule,
    resize_mask,
)

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MixMoNet.from_torchvision("resnet18", NUM_CLASSES, small_images=True)


# ---------------------------------------------------------------- weights

def test_weights_formula():
    k = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.8, 1.0])
    w = mixmo_loss_weights(k, r=3.0)
    assert w.shape == (6, 2) and w.dtype == torch.float32
    a, b = k.double() ** (1 / 3), (1 - k.double()) ** (1 / 3)
    expected = torch.stack([2 * a / (a + b), 2 * b / (a + b)], 1)
    torch.testing.assert_close(w.double(), expected, atol=1e-6, rtol=0)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(1), torch.full((6,), 2.0))
    torch.testing.assert_close(w[3], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(w[0], torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(w[-1], torch.tensor([2.0, 0.0]))


def test_weights_monotone_and_r1():
    k = torch.linspace(0, 1, 101)
    w = mixmo_loss_weights(k)
    # kappa -> 1 favours input 0
    assert (w[51:, 0] > w[51:, 1]).all() and (w[:50, 0] < w[:50, 1]).all()
    assert (w[1:, 0] >= w[:-1, 0]).all()
    # r = 1: plain proportions
    torch.testing.assert_close(mixmo_loss_weights(k, r=1.0), torch.stack([2 * k, 2 * (1 - k)], 1))
    # r = 3 is flatter than r = 1
    assert (w[60:-1, 0] < 2 * k[60:-1]).all()
    with pytest.raises(ValueError):
        mixmo_loss_weights(k, r=0.0)


# ---------------------------------------------------------------- p schedule

def test_p_schedule():
    E = 120
    assert mixmo_p_schedule(0, E) == 0.5
    assert mixmo_p_schedule(109.9, E) == 0.5
    assert mixmo_p_schedule(110, E) == pytest.approx(0.5)      # decay starts at 11/12
    assert mixmo_p_schedule(115, E) == pytest.approx(0.25)
    assert mixmo_p_schedule(120, E) == pytest.approx(0.0)
    assert mixmo_p_schedule(130, E) == 0.0
    assert mixmo_p_schedule(115, E, p=1.0) == pytest.approx(0.5)
    vals = [mixmo_p_schedule(e, E) for e in range(E + 1)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    with pytest.raises(ValueError):
        mixmo_p_schedule(1, 0)
    with pytest.raises(ValueError):
        mixmo_p_schedule(1, 10, p=1.5)


# ---------------------------------------------------------------- masks

@pytest.mark.parametrize("hw", [(28, 28), (32, 32), (24, 40), (224, 224)])
def test_cut_mask_mean_matches_kappa(hw):
    H, W = hw
    g = torch.Generator().manual_seed(1)
    kappa = torch.distributions.Beta(2.0, 2.0).sample((64,))
    mask, k_true = cut_mixmo_mask(kappa, H, W, generator=g, swap=False, box="inside")
    assert mask.shape == (64, 1, H, W) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(k_true, mask.mean(dim=(1, 2, 3)), atol=0, rtol=0)
    # within one pixel row / column of the image
    assert ((k_true - kappa).abs() <= max(H, W) / (H * W) + 1e-6).all()
    # a single rectangle: ones are a full box
    for m in mask[:8, 0]:
        rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
        if len(rows):
            box = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert bool(box.all())


def test_cut_mask_swap_and_clip():
    g = torch.Generator().manual_seed(2)
    kappa = torch.full((400,), 0.3)
    mask, k_true = cut_mixmo_mask(kappa, 32, 32, generator=g, swap=True, box="inside")
    torch.testing.assert_close(k_true, mask.mean(dim=(1, 2, 3)), atol=0, rtol=0)
    near_k = (k_true - 0.3).abs() < 0.04
    near_1mk = (k_true - 0.7).abs() < 0.04
    assert bool((near_k | near_1mk).all())
    assert 120 < int(near_1mk.sum()) < 280            # about half swapped
    # official clipped sampling: mean never above kappa (before swap), exact mask mean returned
    mask, k_true = cut_mixmo_mask(kappa, 32, 32, generator=g, swap=False, box="official")
    torch.testing.assert_close(k_true, mask.mean(dim=(1, 2, 3)), atol=0, rtol=0)
    assert (k_true <= 0.3 + 1e-6).all() and (k_true < 0.25).any()
    # determinism
    a = cut_mixmo_mask(kappa, 32, 32, generator=torch.Generator().manual_seed(5), box="inside")[0]
    b = cut_mixmo_mask(kappa, 32, 32, generator=torch.Generator().manual_seed(5), box="inside")[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("box", ["official", "inside"])
def test_cut_mask_boxes_are_the_pipeline_sampler_s(box):
    """The torch masks are the boxes of `dali_mix.draws.cut_mixmo_boxes` (the sampler of
    `mixmo_inputs`) at the generator's unit positions, swapped where the third draw < 1/2."""
    kappa = torch.distributions.Beta(2.0, 2.0).sample((64,))
    mask, k_true = cut_mixmo_mask(kappa, 24, 40, generator=torch.Generator().manual_seed(6), box=box)
    u = torch.rand(64, 3, generator=torch.Generator().manual_seed(6)).numpy()
    y, x, h, w = draws.cut_mixmo_boxes(None, 64, 24, 40, kappa.numpy(), box, centres=u[:, :2].T)
    want = np.zeros((64, 24, 40), np.float32)
    for i in range(64):
        want[i, y[i]:y[i] + h[i], x[i]:x[i] + w[i]] = 1
    want = np.where(u[:, 2, None, None] < 0.5, 1 - want, want)
    np.testing.assert_array_equal(mask[:, 0].numpy(), want)
    np.testing.assert_allclose(k_true.numpy(), want.mean((1, 2), dtype=np.float64), rtol=0, atol=1e-7)


def test_feature_kappa_is_resized_mask_mean():
    torch.manual_seed(0)
    N, C, H, W = 16, 4, 224, 224
    kappa = torch.distributions.Beta(2.0, 2.0).sample((N,))
    mask, k_img = cut_mixmo_mask(kappa, H, W, generator=torch.Generator().manual_seed(3), box="inside")
    l0, l1 = torch.randn(N, C, 56, 56), torch.randn(N, C, 56, 56)
    mixed, k_feat = cut_mixmo(l0, l1, mask.bool())
    m = resize_mask(mask, (56, 56))
    assert m.shape == (N, 1, 56, 56)
    torch.testing.assert_close(k_feat, m.mean(dim=(1, 2, 3)), atol=0, rtol=0)
    torch.testing.assert_close(mixed, 2 * (m * l0 + (1 - m) * l1))
    # within one ring of feature cells of the image-resolution kappa
    assert ((k_feat - k_img).abs() <= (56 + 56 + 1) / 56 ** 2).all()
    # a box aligned to the stride keeps its mean exactly
    aligned = torch.zeros(1, 1, 224, 224)
    aligned[..., 40:120, 16:200] = 1
    _, k_al = cut_mixmo(l0[:1], l1[:1], aligned)
    assert float(k_al) == pytest.approx(float(aligned.mean()), abs=1e-7)
    # same-size mask is used as is
    _, k_same = cut_mixmo(l0, l1, m)
    torch.testing.assert_close(k_same, k_feat)


# ---------------------------------------------------------------- linear mixing

def test_linear_mixmo_formula():
    l0 = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    l1 = -torch.ones(2, 3, 2, 2)
    kappa = torch.tensor([0.25, 1.0])
    out = linear_mixmo(l0, l1, kappa)
    expected = torch.empty_like(l0)
    for n, k in enumerate([0.25, 1.0]):
        expected[n] = 2 * (k * l0[n] + (1 - k) * l1[n])
    torch.testing.assert_close(out, expected)
    # k = 0.5 gives the sum (= inference mixing); scalar kappa broadcasts
    torch.testing.assert_close(linear_mixmo(l0, l1, 0.5), l0 + l1)
    # half-precision features stay half precision
    assert linear_mixmo(l0.half(), l1.half(), kappa).dtype == torch.float16


# ---------------------------------------------------------------- model

def test_model_structure(net):
    assert len(net.encoders) == 2 and len(net.heads) == 2
    assert net.encoders[0][0] is not net.encoders[1][0]
    assert not torch.equal(net.encoders[0][0].weight, net.encoders[1][0].weight)
    assert net.encoders[0][0].kernel_size == (3, 3) and net.encoders[0][0].stride == (1, 1)
    assert isinstance(net.encoders[0][3], torch.nn.Identity)
    assert net.heads[0].out_features == NUM_CLASSES
    # no parameter shared between the two encoders / heads
    ids0 = {id(p) for p in net.encoders[0].parameters()} | {id(p) for p in net.heads[0].parameters()}
    ids1 = {id(p) for p in net.encoders[1].parameters()} | {id(p) for p in net.heads[1].parameters()}
    assert not ids0 & ids1


def test_wrap_plain_resnet_and_bad_base():
    import torchvision

    base = torchvision.models.resnet18(num_classes=5)
    m = MixMoNet(base, num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    assert m(x).shape == (2, 7)
    out, k = m(x, x.flip(0), mask=torch.ones(2, 1, 64, 64), return_kappa=True)
    assert out.shape == (2, 2, 7)
    torch.testing.assert_close(k, torch.ones(2))
    with pytest.raises(ValueError):
        MixMoNet(torch.nn.Linear(3, 3))


def test_inference_equals_hand_computation(net):
    net.eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        out = net(x)
        l0 = net.encoders[0](x)
        l1 = net.encoders[1](x)
        feats = net.core(l0 + l1)
        h0, h1 = net.heads[0](feats), net.heads[1](feats)
        expected = (h0 + h1) / 2
        # linear mixing with k = 0.5 of the same image is the same thing
        heads_half = net(x, x, kappa=torch.full((2,), 0.5))
    assert out.shape == (2, NUM_CLASSES)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(heads_half.mean(1), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net.forward_heads(x), torch.stack([h0, h1], 1))
    p_log = net.predict_proba(x)
    p_prob = net.predict_proba(x, ensemble="probs")
    torch.testing.assert_close(p_log, expected.softmax(-1))
    torch.testing.assert_close(p_prob, (h0.softmax(-1) + h1.softmax(-1)) / 2)
    torch.testing.assert_close(p_prob.sum(-1), torch.ones(2))


def test_training_forward_modes(net):
    net.eval()  # deterministic BN for comparisons
    torch.manual_seed(2)
    x0, x1 = torch.randn(4, 3, 28, 28), torch.randn(4, 3, 28, 28)
    kappa = torch.tensor([0.2, 0.5, 0.7, 0.9])
    mask, k_mask = cut_mixmo_mask(kappa, 28, 28, generator=torch.Generator().manual_seed(0), box="inside")
    use_cut = torch.tensor([True, False, True, False])
    with torch.no_grad():
        lin, k_lin = net(x0, x1, kappa=kappa, return_kappa=True)
        cut, k_cut = net(x0, x1, mask=mask, return_kappa=True)
        mix, k_mix = net(x0, x1, kappa=kappa, mask=mask, use_cut=use_cut, return_kappa=True)
        l0, l1 = net.encoders[0](x0), net.encoders[1](x1)
        by_hand = net.heads[1](net.core(linear_mixmo(l0, l1, kappa)))
    assert lin.shape == (4, 2, NUM_CLASSES)
    torch.testing.assert_close(lin[:, 1], by_hand)
    torch.testing.assert_close(k_lin, kappa)
    torch.testing.assert_close(k_cut, k_mask)    # stride 1: feature res = image res
    torch.testing.assert_close(mix[use_cut], cut[use_cut])
    torch.testing.assert_close(mix[~use_cut], lin[~use_cut])
    torch.testing.assert_close(k_mix, torch.where(use_cut, k_mask, kappa))
    with pytest.raises(ValueError):
        net(x0, x1)
    with pytest.raises(ValueError):
        net(x0, x1, mask=mask, use_cut=use_cut)


# ---------------------------------------------------------------- loss

def test_mixmo_loss_int_and_soft():
    torch.manual_seed(3)
    N, C = 5, 4
    logits = torch.randn(N, 2, C)
    y0, y1 = torch.randint(0, C, (N,)), torch.randint(0, C, (N,))
    kappa = torch.tensor([0.0, 0.2, 0.5, 0.8, 1.0])
    w = mixmo_loss_weights(kappa)
    expected = 0.0
    for n in range(N):
        ce0 = -torch.log_softmax(logits[n, 0], -1)[y0[n]]
        ce1 = -torch.log_softmax(logits[n, 1], -1)[y1[n]]
        expected += w[n, 0] * ce0 + w[n, 1] * ce1
    expected = expected / N
    loss = mixmo_loss(logits, y0, y1, kappa)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected)
    # dense one-hot targets give the same value
    torch.testing.assert_close(
        mixmo_loss(logits, F.one_hot(y0, C).float(), F.one_hot(y1, C).float(), kappa), expected)
    # soft targets (e.g. Mixup on the inputs), mixed with int targets on the other head
    t0 = torch.softmax(torch.randn(N, C), -1)
    expected_soft = (w[:, 0] * -(t0 * torch.log_softmax(logits[:, 0], -1)).sum(-1)
                     + w[:, 1] * F.cross_entropy(logits[:, 1], y1, reduction="none")).mean()
    torch.testing.assert_close(mixmo_loss(logits, t0, y1, kappa), expected_soft)
    # r = 1, kappa = 0.5 -> plain sum of the two CEs
    half = torch.full((N,), 0.5)
    torch.testing.assert_close(
        mixmo_loss(logits, y0, y1, half, r=1.0),
        F.cross_entropy(logits[:, 0], y0) + F.cross_entropy(logits[:, 1], y1))
    with pytest.raises(ValueError):
        mixmo_loss(logits[:, 0], y0, y1, kappa)


# ---------------------------------------------------------------- training sanity

def test_training_step_reduces_loss():
    torch.manual_seed(4)
    model = MixMoNet.from_torchvision("resnet18", NUM_CLASSES, small_images=True)
    model.train()
    x0, x1 = torch.randn(8, 3, 28, 28), torch.randn(8, 3, 28, 28)
    y0, y1 = torch.randint(0, NUM_CLASSES, (8,)), torch.randint(0, NUM_CLASSES, (8,))
    kappa = torch.distributions.Beta(2.0, 2.0).sample((8,))
    mask, _ = cut_mixmo_mask(kappa, 28, 28, generator=torch.Generator().manual_seed(0), box="inside")
    use_cut = torch.arange(8) % 2 == 0
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(8):
        logits, k_used = model(x0, x1, kappa=kappa, mask=mask, use_cut=use_cut,
                               return_kappa=True)
        loss = mixmo_loss(logits, y0, y1, k_used)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
