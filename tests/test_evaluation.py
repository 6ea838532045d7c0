"""dali_mix.evaluation: every metric against values known by construction, on the CPU."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dali_mix.evaluation import (ECE_BINS, PixelScale, Robustness, Tally, evaluate_model, fgsm, gaussian_noise,
                                 metric_key, occlude)

PIXELS = PixelScale(mean=(0.485 * 255, 0.456 * 255, 0.406 * 255), std=(0.229 * 255, 0.224 * 255, 0.225 * 255))


def logits_with_confidence(conf: float, predicted: int, num_classes: int) -> torch.Tensor:
    """One row of logits whose softmax gives `conf` to `predicted` and shares the rest evenly."""
    rest = (1 - conf) / (num_classes - 1)
    p = torch.full((num_classes,), rest, dtype=torch.float64)
    p[predicted] = conf
    return p.log().float()


def test_ece_and_nll_equal_their_definitions_on_hand_built_logits():
    # 10 samples, 4 classes: confidences chosen in distinct bins, correctness known
    confs = [0.95, 0.95, 0.95, 0.95, 0.55, 0.55, 0.55, 0.55, 0.30, 0.30]
    correct = [1, 1, 1, 0, 1, 1, 0, 0, 0, 1]
    labels = torch.zeros(10, dtype=torch.long)
    rows = [logits_with_confidence(c, 0 if ok else 1, 4) for c, ok in zip(confs, correct)]
    t = Tally(torch.device("cpu"))
    t.add(torch.stack(rows), labels, full=True)
    r = t.result(full=True)
    # bins: conf 0.95 (acc 3/4), 0.55 (acc 2/4), 0.30 (acc 1/2)
    ece = 0.4 * abs(0.95 - 0.75) + 0.4 * abs(0.55 - 0.5) + 0.2 * abs(0.30 - 0.5)
    assert r["ece"] == pytest.approx(100 * ece, abs=1e-3)
    p_true = [c if ok else (1 - c) / 3 for c, ok in zip(confs, correct)]
    assert r["nll"] == pytest.approx(float(np.mean([-math.log(p) for p in p_true])), abs=1e-5)
    assert r["top1"] == pytest.approx(60.0)
    assert r["top5"] == pytest.approx(100.0)  # 4 classes: top-5 holds every class


def test_ece_bin_edges_are_lower_exclusive_upper_inclusive():
    # a confidence exactly on an edge (2/15) belongs to the bin below it
    t = Tally(torch.device("cpu"))
    conf = 2 / ECE_BINS
    t.add(logits_with_confidence(conf, 0, 16)[None], torch.tensor([0]), full=True)
    counts = t.sums[4:4 + ECE_BINS]
    assert int(counts.argmax()) == 1 and float(counts.sum()) == 1.0


def test_fgsm_on_a_linear_model_equals_the_closed_form():
    torch.manual_seed(0)
    n, c, h, w, k = 6, 3, 4, 5, 7
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, k))
    x01 = torch.rand(n, c, h, w)
    labels = torch.randint(0, k, (n,))
    (adv,) = fgsm(model, x01, labels, PIXELS, [0.03])
    # d CE / d x01 = (W^T (softmax - onehot)) / std, per sample: its sign is FGSM's step
    weight = model[1].weight.detach()
    with torch.no_grad():
        p = model(PIXELS.from_unit(x01)).softmax(1)
    g = (p - nn.functional.one_hot(labels, k).float()) @ weight
    std = torch.tensor(PIXELS.std).view(1, -1, 1, 1) / 255
    expected = PIXELS.from_unit((x01 + 0.03 * (g.view(n, c, h, w) / std).sign()).clamp(0, 1))
    torch.testing.assert_close(adv, expected)


def test_corruptions_are_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 20, 16)
    out = occlude(x, 0.25, g)
    side = round(0.25 * 16)
    zeroed = (out == 0) & (x != 0)
    for i in range(5):
        ys, xs = torch.nonzero(zeroed[i, 0], as_tuple=True)
        assert ys.numel() == side * side
        assert int(ys.max() - ys.min()) + 1 == side and int(xs.max() - xs.min()) + 1 == side
        assert torch.equal(zeroed[i, 0], zeroed[i, 2])  # every channel
    x01 = torch.rand(4, 3, 8, 8)
    noisy = gaussian_noise(x01, 0.1, torch.Generator().manual_seed(3))
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1
    # where nothing was clipped the difference is 0.1 times the generator's own normal draws
    draws = torch.randn(x01.shape, generator=torch.Generator().manual_seed(3))
    inside = (noisy > 0) & (noisy < 1)
    torch.testing.assert_close(noisy[inside], (x01 + 0.1 * draws)[inside])


class ToyNet(nn.Module):
    """Small conv net; with `heads` > 1 it answers like a MixMoNet (forward_heads)."""

    def __init__(self, k=4, heads=1):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.heads = nn.ModuleList(nn.Linear(32, k) for _ in range(heads))

    def forward_heads(self, x):
        f = self.body(x)
        return torch.stack([hd(f) for hd in self.heads], dim=1)


def toy_loader(seed=0, batches=3, n=8, k=4):
    g = torch.Generator().manual_seed(seed)
    return [(PIXELS.from_unit(torch.rand(n, 3, 12, 12, generator=g)), torch.randint(0, k, (n, 1), generator=g))
            for _ in range(batches)]


def test_zero_strength_corruptions_equal_clean_and_the_seed_fixes_the_draws():
    net = ToyNet()
    loader = toy_loader()
    spec = Robustness(fgsm_eps=(0.0, 0.1), noise_sigma=(0.0, 0.2), occlusion=(0.0, 0.5), seed=4)
    r = evaluate_model(net.forward_heads, loader, torch.device("cpu"), pixels=PIXELS, robustness=spec)
    clean = r["clean"]["top1"]
    assert r["fgsm"]["0"] == clean and r["noise"]["0"] == clean and r["occlusion"]["0"] == clean
    assert r["samples"] == 24
    again = evaluate_model(net.forward_heads, loader, torch.device("cpu"), pixels=PIXELS, robustness=spec)
    assert again == r
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    x = torch.randn(4, 3, 12, 12)
    assert torch.equal(occlude(x, 0.5, g1), occlude(x, 0.5, g2))


def test_fgsm_lowers_accuracy_of_a_confident_model():
    # a model that reads one pixel: FGSM moves that pixel against the label
    class Threshold(nn.Module):
        def forward_heads(self, x):
            v = PIXELS.to_unit(x)[:, 0, 0, 0]
            return torch.stack([(0.5 - v) * 100, (v - 0.5) * 100], dim=1)[:, None]

    x01 = torch.tensor([0.45, 0.47, 0.53, 0.55]).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    labels = torch.tensor([0, 0, 1, 1])
    loader = [(PIXELS.from_unit(x01), labels)]
    spec = Robustness(fgsm_eps=(0.01, 0.04), noise_sigma=(), occlusion=())
    r = evaluate_model(Threshold().forward_heads, loader, torch.device("cpu"), pixels=PIXELS, robustness=spec)
    assert r["clean"]["top1"] == 100.0
    assert r["fgsm"]["0.01"] == 100.0  # 0.03 and 0.05 from the threshold: not enough to cross
    assert r["fgsm"]["0.04"] == 50.0  # the two samples 0.03 away flip


def test_heads_ensemble_is_the_mean_of_the_logits():
    net = ToyNet(heads=2)
    loader = toy_loader(seed=2)
    r = evaluate_model(net.forward_heads, loader, torch.device("cpu"), pixels=PIXELS)
    assert set(r["heads"]) == {"head0", "head1", "ensemble"}
    assert r["heads"]["ensemble"]["clean"] == r["clean"]
    with torch.no_grad():
        for h in (0, 1):
            hits = sum(int((net.forward_heads(x)[:, h].argmax(1) == y.view(-1)).sum()) for x, y in loader)
            assert r["heads"][f"head{h}"]["clean"]["top1"] == pytest.approx(100 * hits / 24, abs=1e-3)


def test_keys_and_spec_checks():
    assert [metric_key(v) for v in Robustness().fgsm_eps] == ["0.0039", "0.0078", "0.0157", "0.0314"]
    assert [metric_key(v) for v in (0.04, 0.5, 0.0)] == ["0.04", "0.5", "0"]
    with pytest.raises(ValueError, match="fgsm_eps: -0.1"):
        Robustness(fgsm_eps=(-0.1,))
    with pytest.raises(ValueError, match="occlusion: 1.5"):
        Robustness(occlusion=(1.5,))


@pytest.mark.gpu
def test_gpu_evaluation_equals_the_cpu_one():
    # the corruptions are drawn on the CPU: the same images whatever the device
    net = ToyNet()
    loader = toy_loader(seed=5)
    spec = Robustness(fgsm_eps=(0.05,), noise_sigma=(0.1,), occlusion=(0.5,), seed=1)
    cpu = evaluate_model(net.forward_heads, loader, torch.device("cpu"), pixels=PIXELS, robustness=spec)
    gpu_net = ToyNet().cuda()
    gpu = evaluate_model(gpu_net.forward_heads, loader, torch.device("cuda"), pixels=PIXELS, robustness=spec)
    assert gpu["samples"] == cpu["samples"]
    for kind in ("fgsm", "noise", "occlusion"):
        for key in cpu[kind]:
            assert gpu[kind][key] == pytest.approx(cpu[kind][key], abs=100 / 24 + 1e-6)  # at most one sample flips
    assert gpu["clean"]["nll"] == pytest.approx(cpu["clean"]["nll"], rel=1e-4)
