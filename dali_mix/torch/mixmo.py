"""MixMo, the PyTorch side: two-input two-output networks with a feature-mixing block.

MixMo (Ramé, Sun, Cord, ICCV 2021; official code ``alexrame/mixmo-pytorch``) trains M = 2
subnetworks inside one network. Two inputs ``x0``, ``x1`` go through two first-layer encoders;
their features ``l0``, ``l1`` are mixed by the *mixing block*; one shared core processes the
mixed features; two heads predict the two labels ``y0``, ``y1``.

Mixing blocks (``mixing_blocks.mix_manifolds`` in the official code)::

    Linear-MixMo   2 * [k * l0 + (1 - k) * l1]                 k a per-sample scalar
    Cut-MixMo      2 * [M * l0 + (1 - M) * l1]                 M a binary rectangle mask, k = mean(M)

The loss weights each head by MixMo's balancing function (``r = 3``)::

    w_i = 2 * k_i^(1/r) / (k_0^(1/r) + k_1^(1/r)),   k_0 = k,  k_1 = 1 - k

At inference the same image is fed to both encoders and the features are *summed* (the official
code takes their mean and multiplies by M = 2; Linear-MixMo with k = 0.5 gives the same), and the
two heads' logits are averaged (official ``dict_output["logits"]``; the official metrics take the
softmax of these averaged logits). :meth:`MixMoNet.predict_proba` offers both that and the average
of the two heads' probabilities.

In dali-mix the DALI pipeline draws ``kappa`` (Beta(2, 2)), the per-sample Cut-MixMo flag and the
Cut-MixMo mask at *image* resolution; this module resizes the mask to the feature map, mixes and
reports the kappa actually used (the feature-resolution mask mean), which is what the loss must
weight with, as in the official code. :func:`cut_mixmo_mask` makes the pipeline's masks in torch
(tests, torch-only training): the boxes of the one sampler, `dali_mix.draws.cut_mixmo_boxes`.

Everything here is torch (torchvision only inside :meth:`MixMoNet.from_torchvision`; the box
arithmetic of :func:`cut_mixmo_mask` is numpy, on the CPU); all functions follow the device of
their inputs.
"""
from __future__ import annotations

import copy
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dali_mix import draws

__all__ = [
    "MixMoNet",
    "cut_mixmo",
    "cut_mixmo_mask",
    "linear_mixmo",
    "mixmo_loss",
    "mixmo_loss_weights",
    "mixmo_p_schedule",
    "resize_mask",
    "RATIO_EPOCH_DECREASE",
]

#: Fraction of training after which the Cut-MixMo probability decays linearly to 0 (official
#: ``cfg.RATIO_EPOCH_DECREASE = 11/12``).
RATIO_EPOCH_DECREASE = 11.0 / 12.0

_REQUIRED_ATTRS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                   "avgpool", "fc")


# --------------------------------------------------------------------------------------------
# Weights, schedule
# --------------------------------------------------------------------------------------------

def mixmo_loss_weights(kappa: Tensor, r: float = 3.0) -> Tensor:
    """MixMo's balancing weights of the two heads.

    ``w_i = 2 * k_i^(1/r) / (k_0^(1/r) + k_1^(1/r))`` with ``k_0 = kappa``, ``k_1 = 1 - kappa``.
    The weights sum to 2; ``kappa = 0.5`` gives (1, 1); ``r = 1`` gives ``(2k, 2(1-k))``;
    ``r -> inf`` gives (1, 1) for every kappa in (0, 1).

    Args:
        kappa: (N,) float tensor in [0, 1] (any float dtype, any device): the proportion of
            input 0 in the mixed features (for Cut-MixMo the mask mean at feature resolution).
            Values are clamped to [0, 1]; 0 and 1 are fine (weights (0, 2) and (2, 0), no NaN).
            Treated as a constant (detached): the weights carry no gradient.
        r: root of the balancing function, > 0 (paper: 3).

    Returns:
        (N, 2) float32 tensor on ``kappa.device``: column 0 weights head 0 (target 0).
    """
    r = float(r)
    if not (r > 0 and math.isfinite(r)):
        raise ValueError(f"r must be a finite positive number, got {r}")
    k = torch.as_tensor(kappa).detach().to(torch.float32).reshape(-1).clamp(0.0, 1.0)
    a = k.pow(1.0 / r)
    b = (1.0 - k).pow(1.0 / r)
    # a + b >= 2 * 0.5^(1/r) > 0 for every k in [0, 1]: no division by zero
    return 2.0 * torch.stack([a, b], dim=1) / (a + b).unsqueeze(1)


def mixmo_p_schedule(epoch: float, total_epochs: int, p: float = 0.5) -> float:
    """Probability of Cut-MixMo (vs Linear-MixMo) at a point of training.

    ``p`` while ``epoch / total_epochs < 11/12``, then linear decay to 0 at the end of training:
    ``p * max(0, (1 - ratio) / (1 - 11/12))``. Same as the official
    ``get_mixmo_mix_method_at_ratio_epoch``; note the official loop calls it with the 1-based
    epoch number ``e`` in 1..E (ratio ``e / E``), so the last epoch trains with p = 0 there.
    Pass ``epoch = e + 1`` for a 0-based epoch counter ``e`` to reproduce that exactly, or a
    fractional epoch (``e + step / steps_per_epoch``) for a per-step schedule.

    Args:
        epoch: training progress in epochs (float, >= 0).
        total_epochs: total number of epochs (> 0).
        p: the probability before the decay, in [0, 1] (paper: 0.5).

    Returns:
        Python float in [0, p].
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    ratio = float(epoch) / float(total_epochs)
    if ratio < RATIO_EPOCH_DECREASE:
        return float(p)
    return float(p) * max(0.0, (1.0 - ratio) / (1.0 - RATIO_EPOCH_DECREASE))


# --------------------------------------------------------------------------------------------
# Mixing blocks
# --------------------------------------------------------------------------------------------

def _per_sample(kappa: Union[Tensor, float], like: Tensor) -> Tensor:
    """kappa as a tensor of ``like``'s dtype/device shaped (N, 1, 1, ...) to broadcast."""
    k = torch.as_tensor(kappa, device=like.device)
    if k.dim() == 0:
        k = k.expand(like.shape[0])
    k = k.reshape(-1)
    if k.shape[0] != like.shape[0]:
        raise ValueError(f"kappa has {k.shape[0]} values for a batch of {like.shape[0]}")
    return k.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _kappa_vector(kappa: Union[Tensor, float], n: int, device: torch.device) -> Tensor:
    """kappa as an (n,) float32 tensor on ``device``."""
    k = torch.as_tensor(kappa, device=device).to(torch.float32)
    if k.dim() == 0:
        k = k.expand(n)
    return k.reshape(-1)


def linear_mixmo(l0: Tensor, l1: Tensor, kappa: Union[Tensor, float]) -> Tensor:
    """Linear-MixMo mixing block: ``2 * [k * l0 + (1 - k) * l1]``.

    Args:
        l0, l1: (N, C, H, W) features of the two encoders (same shape, dtype and device).
        kappa: (N,) per-sample proportion of ``l0`` (or a scalar), broadcast over (C, H, W).
            Cast to the features' dtype for the product (so fp16/bf16 features stay so); keep
            your own float32 copy for the loss.

    Returns:
        (N, C, H, W) tensor, dtype and device of ``l0``.
    """
    if l0.shape != l1.shape:
        raise ValueError(f"feature shapes differ: {tuple(l0.shape)} vs {tuple(l1.shape)}")
    k = _per_sample(kappa, l0)
    return 2.0 * (k * l0 + (1.0 - k) * l1)


def resize_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Resize a Cut-MixMo mask to a feature map's spatial size, nearest neighbour.

    Uses ``mode="nearest-exact"`` (feature cell i samples the image pixel
    ``floor((i + 0.5) * H_img / H_feat)``, i.e. the centre of the cell it covers, so the box is
    not shifted by half a cell). With an integer stride ``s`` and the box edges on multiples of
    ``s`` the resized mask has exactly the same mean; otherwise each resized box side is within
    one feature cell of ``side / s``, so the mean moves by less than
    ``(box_h/s + box_w/s + 1) / (H_feat * W_feat)`` (one ring of feature cells; e.g. <= 3.6 % for a
    224 image and stride 4). That is why the kappa used for the loss must be recomputed at feature
    resolution (:func:`cut_mixmo` returns it), as the official code does.

    Args:
        mask: (N, 1, H, W) or (N, H, W) tensor, bool / integer / float in {0, 1}, any device.
        size: (H_feat, W_feat).

    Returns:
        (N, 1, H_feat, W_feat) float32 tensor of 0/1 on ``mask.device`` (no copy of the values
        beyond the dtype cast when the size already matches).
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (N, 1, H, W) or (N, H, W), got {tuple(mask.shape)}")
    m = mask.to(torch.float32)
    size = (int(size[0]), int(size[1]))
    if tuple(m.shape[-2:]) != size:
        m = F.interpolate(m, size=size, mode="nearest-exact")
    return m


def cut_mixmo(l0: Tensor, l1: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Cut-MixMo mixing block: ``2 * [M * l0 + (1 - M) * l1]``.

    Args:
        l0, l1: (N, C, h, w) features of the two encoders.
        mask: (N, 1, H, W) or (N, H, W) binary mask (bool / int / float) at image resolution
            (or already at feature resolution); 1 where ``l0`` is kept. Resized to (h, w) with
            :func:`resize_mask`.

    Returns:
        ``(mixed, kappa)``: ``mixed`` (N, C, h, w) in ``l0``'s dtype and device; ``kappa`` (N,)
        float32 = the mean of the resized mask, the proportion of input 0 actually used, which
        is what :func:`mixmo_loss` should be given (official code: ``lam = mask.mean()``).
    """
    if l0.shape != l1.shape:
        raise ValueError(f"feature shapes differ: {tuple(l0.shape)} vs {tuple(l1.shape)}")
    m = resize_mask(mask.to(l0.device), l0.shape[-2:])
    if m.shape[0] != l0.shape[0]:
        raise ValueError(f"mask has {m.shape[0]} samples for a batch of {l0.shape[0]}")
    kappa = m.mean(dim=(1, 2, 3))
    mf = m.to(l0.dtype)
    return 2.0 * (mf * l0 + (1.0 - mf) * l1), kappa


def cut_mixmo_mask(kappa: Tensor, height: int, width: int,
                   generator: Optional[torch.Generator] = None, swap: bool = True,
                   box: str = "official") -> Tuple[Tensor, Tensor]:
    """Cut-MixMo masks in torch (tests, torch-only training), the boxes of the one sampler
    `dali_mix.draws.cut_mixmo_boxes` (what the pipeline's `mixmo_inputs` draws).

    For each sample, a rectangle meant to cover ``kappa * H * W`` pixels is set to 1 (input 0),
    the rest 0; with ``swap`` the roles of the two inputs are then exchanged with probability
    1/2 (``mask -> 1 - mask``, so the returned kappa is about ``1 - kappa``), as the official code
    shuffles ``(lam, mask)`` pairs. The returned kappa is always the exact mask mean.

    Box sampling (`dali_mix.draws.cut_mixmo_boxes`):

    * ``box="official"`` (default): the official ``_rand_bbox_of_area_lam``: sides
      ``int(sqrt(k) * H)``, ``int(sqrt(k) * W)``, centre uniform over the image, corners
      ``centre -/+ side // 2`` clipped to the image. Boxes near the border are cut, so the mean
      is often well below ``k`` (the official code then uses the mean, as we do).
    * ``box="inside"``: box height ``bh = round(sqrt(k) * H)``, width ``bw = round(k * H * W / bh)``
      (clamped to W), placed uniformly *inside* the image. The mask mean is ``k`` up to rounding
      (error < ``max(H, W) / (2 H W)``, half a pixel row/column).

    Args:
        kappa: (N,) float tensor in [0, 1] (any device): target proportion of input 0
            (pipeline default: Beta(2, 2)).
        height, width: mask size (image resolution).
        generator: optional ``torch.Generator``; random draws are made on its device (CPU if
            None) and moved to ``kappa.device``.
        swap: exchange the roles of the inputs with probability 1/2 per sample.
        box: "official" or "inside" (see above).

    Returns:
        ``(mask, kappa_true)``: mask (N, 1, H, W) float32 of 0/1 and kappa_true (N,) float32
        = mask mean, both on ``kappa.device``.
    """
    H, W = int(height), int(width)
    if H <= 0 or W <= 0:
        raise ValueError(f"height and width must be > 0, got {H}x{W}")
    k = torch.as_tensor(kappa).detach().to(torch.float32).reshape(-1)
    if torch.any((k < 0) | (k > 1)) or not torch.all(torch.isfinite(k)):
        raise ValueError("kappa must be in [0, 1]")
    device = k.device
    n = k.shape[0]
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, 3, generator=generator, device=gdev).cpu()
    centres = u[:, :2].T.numpy()  # unit positions (y, x), as draws.cut_mixmo_centres gives them
    y1, x1, bh, bw = (torch.from_numpy(np.asarray(v, np.int64)).to(device).view(-1, 1, 1) for v in
                      draws.cut_mixmo_boxes(None, n, H, W, k.cpu().numpy(), box, centres=centres))
    rows = torch.arange(H, device=device).view(1, H, 1)
    cols = torch.arange(W, device=device).view(1, 1, W)
    inside = (rows >= y1) & (rows < y1 + bh) & (cols >= x1) & (cols < x1 + bw)
    if swap:
        inside = inside ^ (u[:, 2] < 0.5).to(device).view(-1, 1, 1)
    mask = inside.to(torch.float32).unsqueeze(1)
    return mask, mask.mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------

def _cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Per-sample CE, float32, for int class ids (N,) or dense soft targets (N, C)."""
    logits = logits.float()
    if target.dim() == 1:
        if target.is_floating_point():
            raise ValueError("1-D targets must be integer class ids (got a float tensor)")
        return F.cross_entropy(logits, target.long(), reduction="none")
    if target.dim() == 2:
        if target.shape != logits.shape:
            raise ValueError(f"soft targets {tuple(target.shape)} do not match logits "
                             f"{tuple(logits.shape)}")
        return -(target.float() * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    raise ValueError(f"targets must be (N,) int64 or (N, C) float, got {tuple(target.shape)}")


def mixmo_loss(logits: Tensor, targets0: Tensor, targets1: Tensor, kappa: Tensor,
               r: float = 3.0) -> Tensor:
    """MixMo training loss: ``mean_n sum_i w_i(n) * CE(logits[n, i], targets_i[n])``.

    Equivalent to the official code, which multiplies the (one-hot / soft) targets by the
    weights and sums the two heads' batch-mean soft cross-entropies.

    Args:
        logits: (N, 2, C) logits of the two heads (any float dtype; computed in float32).
        targets0, targets1: targets of input 0 / head 0 and input 1 / head 1, each either int64
            class ids (N,) or dense soft targets (N, C) float (e.g. from an MSDA on the inputs).
        kappa: (N,) float proportion of input 0 in the mixed features, *as used* by the model
            (``MixMoNet.forward(..., return_kappa=True)`` returns it).
        r: root of the balancing function (paper: 3).

    Returns:
        0-dim float32 tensor on ``logits.device``.
    """
    if logits.dim() != 3 or logits.shape[1] != 2:
        raise ValueError(f"logits must be (N, 2, C), got {tuple(logits.shape)}")
    w = mixmo_loss_weights(kappa.to(logits.device), r)
    if w.shape[0] != logits.shape[0]:
        raise ValueError(f"kappa has {w.shape[0]} values for a batch of {logits.shape[0]}")
    ce0 = _cross_entropy(logits[:, 0], targets0.to(logits.device))
    ce1 = _cross_entropy(logits[:, 1], targets1.to(logits.device))
    return (w[:, 0] * ce0 + w[:, 1] * ce1).mean()


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

def _reinit_(module: nn.Module) -> None:
    """Re-initialise like torchvision's ResNet: conv kaiming-normal fan_out, BN (1, 0),
    Linear default ``reset_parameters``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            m.reset_parameters()


class MixMoNet(nn.Module):
    """A torchvision ResNet-family classifier turned into a MixMo (M = 2) network.

    Works with any model exposing ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``
    (torchvision resnet18/34/50/101/152, wide_resnet50_2/101_2, resnext*).

    Structure:

    * ``encoders``: ``nn.ModuleList`` of two ``nn.Sequential(conv1, bn1, relu, maxpool)``. Each
      encoder has its own conv1 and bn1 (own BN statistics). The max-pool is parameter-free and
      is applied *in each encoder, before the mixing block*, so the shared core receives exactly
      ``2 [k l0 + (1-k) l1]`` / ``2 [M l0 + (1-M) l1]`` (a max-pool after a cut would let the
      pooling window read across the box border and a max-pool after a linear mix is not the
      mix of the pooled features), and the mask is resized to the max-pool output (stride 4 for
      ImageNet-style stems, stride 1 with ``small_images``).
    * ``core``: shared ``layer1..layer4, avgpool, flatten`` -> (N, F).
    * ``heads``: ``nn.ModuleList`` of two ``nn.Linear(F, num_classes)``.

    Args:
        base: the classification model; its modules are reused (encoder 0, core, head 0) and
            deep-copied (encoder 1, head 1). Do not keep using ``base`` on its own afterwards.
        num_classes: if given and different from ``base.fc.out_features``, both heads are new
            ``nn.Linear(F, num_classes)`` layers.
        reinit_copies: re-initialise encoder 1 and head 1 independently (torchvision's
            scheme) instead of starting them as exact copies of encoder 0 / head 0, as the
            official code initialises the M encoders and heads independently. Pass False when
            ``base`` is pretrained to give both subnetworks the pretrained stem.
    """

    num_members = 2

    def __init__(self, base: nn.Module, num_classes: Optional[int] = None,
                 reinit_copies: bool = True):
        super().__init__()
        missing = [a for a in _REQUIRED_ATTRS if not hasattr(base, a)]
        if missing:
            raise ValueError(f"base model lacks {missing}: MixMoNet needs a torchvision "
                             f"ResNet-family model ({', '.join(_REQUIRED_ATTRS)})")
        if not isinstance(base.fc, nn.Linear):
            raise ValueError(f"base.fc must be nn.Linear, got {type(base.fc).__name__}")
        in_features = base.fc.in_features
        if num_classes is None:
            num_classes = base.fc.out_features
        if int(num_classes) <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.num_classes = int(num_classes)

        enc0 = nn.Sequential(base.conv1, base.bn1, base.relu, base.maxpool)
        enc1 = copy.deepcopy(enc0)
        if num_classes != base.fc.out_features:
            head0 = nn.Linear(in_features, self.num_classes)
            head1 = nn.Linear(in_features, self.num_classes)
        else:
            head0 = base.fc
            head1 = copy.deepcopy(base.fc)
            if reinit_copies:
                _reinit_(head1)
        if reinit_copies:
            _reinit_(enc1)
        self.encoders = nn.ModuleList([enc0, enc1])
        self.core = nn.Sequential(base.layer1, base.layer2, base.layer3, base.layer4,
                                  base.avgpool, nn.Flatten(1))
        self.heads = nn.ModuleList([head0, head1])

    @classmethod
    def from_torchvision(cls, name: str, num_classes: int, small_images: bool = False,
                         weights=None, **kwargs) -> "MixMoNet":
        """Build from a torchvision model name (``torchvision.models.get_model``).

        Args:
            name: e.g. ``"resnet18"``, ``"resnet50"``, ``"wide_resnet50_2"``,
                ``"resnext50_32x4d"``.
            num_classes: number of classes of both heads.
            small_images: for 28x28 / 32x32 inputs: conv1 becomes a 3x3 stride-1 padding-1
                conv (no bias) and the max-pool an identity (CIFAR-style stem).
            weights: torchvision weights (default None: random init, independent encoders and
                heads). With weights, the encoders start as copies of the pretrained stem and
                the heads are new if ``num_classes`` differs from the pretrained one.
            **kwargs: passed to ``get_model``.
        """
        import torchvision  # local: the rest of this module is pure torch

        if weights is None:
            base = torchvision.models.get_model(name, weights=None, num_classes=num_classes,
                                                **kwargs)
        else:
            base = torchvision.models.get_model(name, weights=weights, **kwargs)
        if small_images:
            out_ch = base.conv1.out_channels
            in_ch = base.conv1.in_channels
            base.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(base.conv1.weight, mode="fan_out", nonlinearity="relu")
            base.maxpool = nn.Identity()
        return cls(base, num_classes=num_classes, reinit_copies=weights is None)

    # -- pieces --------------------------------------------------------------------------

    def encode(self, x0: Tensor, x1: Tensor) -> Tuple[Tensor, Tensor]:
        """Features of the two encoders: (N, C_stem, h, w) each."""
        return self.encoders[0](x0), self.encoders[1](x1)

    def _heads(self, feats: Tensor) -> Tensor:
        return torch.stack([self.heads[0](feats), self.heads[1](feats)], dim=1)

    def forward_heads(self, x: Tensor) -> Tensor:
        """Inference logits of each head, (N, 2, num_classes): the same image ``x`` to both
        encoders, features summed (``l0 + l1``), shared core, both heads."""
        l0, l1 = self.encode(x, x)
        return self._heads(self.core(l0 + l1))

    # -- forward -------------------------------------------------------------------------

    def forward(self, x0: Tensor, x1: Optional[Tensor] = None, kappa: Optional[Tensor] = None,
                mask: Optional[Tensor] = None, use_cut: Optional[Tensor] = None,
                return_kappa: bool = False):
        """Training (two inputs) or inference (one input) forward.

        Training, ``forward(x0, x1, kappa=..., mask=..., use_cut=...)``:

        * ``mask`` None: Linear-MixMo with ``kappa`` for the whole batch.
        * ``mask`` given, ``use_cut`` None: Cut-MixMo for the whole batch (``kappa`` ignored).
        * ``mask`` and ``use_cut`` given: per sample, Cut-MixMo where ``use_cut`` else
          Linear-MixMo with ``kappa`` (the mask of linear samples is ignored).

        Inference, ``forward(x)``: see :meth:`forward_heads`; returns the mean of the two heads'
        logits (the official ensemble; :meth:`predict_proba` for probabilities).

        Args:
            x0, x1: (N, 3, H, W) float images (the two independent inputs), same device as the
                model.
            kappa: (N,) float proportion of input 0 (Linear-MixMo weight), e.g. Beta(2, 2).
            mask: (N, 1, H, W) or (N, H, W) bool / int / float binary mask at image (or
                feature) resolution, 1 where input 0 is kept; resized to the feature map with
                :func:`resize_mask`.
            use_cut: (N,) bool, per-sample choice of Cut-MixMo (needs ``mask`` and ``kappa``).
            return_kappa: also return the kappa actually used, (N,) float32: ``kappa`` for
                linear samples, the mask mean at feature resolution for cut samples. Give this
                one to :func:`mixmo_loss`.

        Returns:
            training: (N, 2, num_classes) logits (head 0 predicts ``y0``, head 1 ``y1``), or
            ``(logits, kappa_used)`` with ``return_kappa``; inference: (N, num_classes).
        """
        if x1 is None:
            if kappa is not None or mask is not None or use_cut is not None:
                raise ValueError("kappa / mask / use_cut need two inputs (x0, x1)")
            logits = self.forward_heads(x0).mean(dim=1)
            return logits
        if x0.shape != x1.shape:
            raise ValueError(f"inputs differ in shape: {tuple(x0.shape)} vs {tuple(x1.shape)}")
        n = x0.shape[0]
        l0, l1 = self.encode(x0, x1)
        if mask is None:
            if use_cut is not None:
                raise ValueError("use_cut needs a mask")
            if kappa is None:
                raise ValueError("training forward needs kappa (Linear-MixMo) or mask "
                                 "(Cut-MixMo)")
            mixed = linear_mixmo(l0, l1, kappa)
            k_used = _kappa_vector(kappa, n, l0.device)
        else:
            cut, k_cut = cut_mixmo(l0, l1, mask)
            if use_cut is None:
                mixed, k_used = cut, k_cut
            else:
                if kappa is None:
                    raise ValueError("use_cut needs kappa for the Linear-MixMo samples")
                sel = torch.as_tensor(use_cut, device=l0.device).reshape(-1).bool()
                if sel.shape[0] != n:
                    raise ValueError(f"use_cut has {sel.shape[0]} values for a batch of {n}")
                lin = linear_mixmo(l0, l1, kappa)
                mixed = torch.where(sel.view(-1, 1, 1, 1), cut, lin)
                k_lin = _kappa_vector(kappa, n, l0.device)
                k_used = torch.where(sel, k_cut, k_lin)
        logits = self._heads(self.core(mixed))
        if return_kappa:
            return logits, k_used.to(torch.float32)
        return logits

    @torch.no_grad()
    def predict_proba(self, x: Tensor, ensemble: str = "logits") -> Tensor:
        """Ensemble class probabilities, (N, num_classes) float32 on ``x.device``.

        Args:
            x: (N, 3, H, W) images.
            ensemble: ``"logits"`` (default, official code): softmax of the mean of the two
                heads' logits; ``"probs"``: mean of the two heads' softmax probabilities (the
                usual deep-ensemble average; slightly different, usually a little better
                calibrated).
        """
        logits = self.forward_heads(x).float()
        if ensemble == "logits":
            return logits.mean(dim=1).softmax(dim=-1)
        if ensemble == "probs":
            return logits.softmax(dim=-1).mean(dim=1)
        raise ValueError(f"ensemble must be 'logits' or 'probs', got {ensemble!r}")
