"""Losses for mixed targets. All take logits (N, C) (any float dtype; computed in float32)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c targets[n, c] * log_softmax(logits)[n, c].

    targets: (N, C) float32 soft targets (rows sum to 1), e.g. dense mixed targets from the
    pipeline. Same as timm's `SoftTargetCrossEntropy`.
    """
    if targets.shape != logits.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match logits {tuple(logits.shape)}")
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(targets.float() * logp).sum(dim=-1).mean()


def mixed_cross_entropy(logits: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor,
                        lam: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Sparse-target loss: mean of lam * CE(y_a) + (1 - lam) * CE(y_b), with label smoothing.

    labels_a, labels_b: (N,) int64 class ids; lam: (N,) float32. Equal to
    `soft_target_cross_entropy` against the dense target with the same smoothing, without
    building an (N, C) tensor (for very many classes).
    """
    logits = logits.float()
    ce_a = F.cross_entropy(logits, labels_a.long(), reduction="none", label_smoothing=smoothing)
    ce_b = F.cross_entropy(logits, labels_b.long(), reduction="none", label_smoothing=smoothing)
    lam = lam.float().reshape(-1)
    return (lam * ce_a + (1.0 - lam) * ce_b).mean()


def slot_cross_entropy(logits: torch.Tensor, slot_labels: torch.Tensor, slot_weights: torch.Tensor,
                       smoothing: float = 0.0) -> torch.Tensor:
    """Sparse-target loss of S label slots (RICAP, Mosaic: S = 4): mean over the batch of
    sum_k w_k * CE(y_k), with label smoothing.

    slot_labels: (N, S) int64 class ids; slot_weights: (N, S) float32 shares (rows sum to 1),
    the pipeline's "slot_labels" / "slot_weights" outputs (`dali_mix.output_names`). Equal to
    `soft_target_cross_entropy` against the dense target with the same smoothing; with S = 2
    it is `mixed_cross_entropy`.
    """
    logits = logits.float()
    labels = slot_labels.long()
    if labels.ndim != 2 or slot_weights.shape != labels.shape or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"slot_labels {tuple(labels.shape)} and slot_weights "
                         f"{tuple(slot_weights.shape)} must both be (N, S) with N = {logits.shape[0]}")
    N, S = labels.shape
    ce = F.cross_entropy(logits.repeat_interleave(S, 0), labels.reshape(-1), reduction="none",
                         label_smoothing=smoothing).reshape(N, S)
    return (slot_weights.float() * ce).sum(1).mean()


def mixed_segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, masks_b: torch.Tensor,
                            mask_weight: torch.Tensor, ignore_index: int = 255,
                            label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-pixel loss of mixed segmentation masks: w * CE(logits, masks) + (1 - w) * CE(logits,
    masks_b) at every pixel, pixels equal to `ignore_index` left out, averaged over the
    weighted pixels that count (with w = 1 everywhere: `F.cross_entropy(logits, masks,
    ignore_index=...)`, its mean over the non-ignored pixels).

    logits: (N, C, H, W) float (computed in float32); masks, masks_b: (N, H, W) int64 class
    maps (`MixResult.masks` / `masks_b`); mask_weight: (N,) float32 (`MixResult.mask_weight`).
    """
    if masks.shape != masks_b.shape or logits.ndim != 4 or masks.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"masks {tuple(masks.shape)} and masks_b {tuple(masks_b.shape)} must both be (N, H, W) "
                         f"of the logits {tuple(logits.shape)} (N, C, H, W)")
    logits = logits.float()
    w = mask_weight.float().reshape(-1, 1, 1)
    total = torch.zeros((), device=logits.device)
    counted = torch.zeros((), device=logits.device)
    for mask, weight in ((masks, w), (masks_b, 1.0 - w)):
        ce = F.cross_entropy(logits, mask.long(), reduction="none", ignore_index=ignore_index,
                             label_smoothing=label_smoothing)
        valid = (mask != ignore_index).float()
        total = total + (weight * ce * valid).sum()
        counted = counted + (weight * valid).sum()
    return total / counted.clamp_min(torch.finfo(torch.float32).tiny)
