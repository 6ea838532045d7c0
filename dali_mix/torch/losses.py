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


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, smoothing: float = 0.0,
                         target_threshold: float | None = None, weight: torch.Tensor | None = None,
                         pos_weight: torch.Tensor | float | None = None, reduction: str = "mean",
                         sum_classes: bool = False, smooth_dense: bool = False) -> torch.Tensor:
    """Binary cross-entropy over the C classes, timm's `BinaryCrossEntropy` as a function.

    targets: dense (N, C) (the pipeline's mixed "targets", multi-label or not: used as they
    are, smoothing having been applied in the pipeline), or (N,) / (N, 1) class ids, then
    one-hot with off = smoothing / C and on = 1 - smoothing + smoothing / C. smooth_dense: also
    smooth dense targets, towards 0.5: t (1 - smoothing) + smoothing / 2. target_threshold:
    binarise the targets (1 where > threshold, else 0) after smoothing. weight ((C,)), pos_weight
    ((C,) or a number) and reduction ("mean", "sum", "none") as in
    `F.binary_cross_entropy_with_logits`; sum_classes: the sum over classes, averaged over the
    batch (reduction ignored). Note timm's class defaults to smoothing=0.1, which only changes
    class-id targets. Computed in float32.
    """
    if not 0.0 <= float(smoothing) < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    logits = logits.float()
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got {tuple(logits.shape)}")
    N, C = logits.shape
    if targets.shape[0] != N:
        raise ValueError(f"targets {tuple(targets.shape)} and logits {tuple(logits.shape)} differ in batch size")
    if targets.shape != logits.shape:
        ids = targets.reshape(-1).long()
        if ids.numel() != N:
            raise ValueError(f"targets must be dense (N, C) = {(N, C)} or class ids (N,), got {tuple(targets.shape)}")
        if bool(((ids < 0) | (ids >= C)).any()):
            raise ValueError(f"class id(s) {sorted(set(ids[(ids < 0) | (ids >= C)].tolist()))[:10]} "
                             f"outside [0, {C}) in targets")
        off = float(smoothing) / C
        targets = torch.full((N, C), off, device=logits.device).scatter_(1, ids[:, None], 1.0 - smoothing + off)
    else:
        targets = targets.float()
        if smooth_dense and smoothing:
            targets = targets * (1.0 - smoothing) + 0.5 * smoothing
    if target_threshold is not None:
        targets = targets.gt(target_threshold).float()
    if pos_weight is not None and not isinstance(pos_weight, torch.Tensor):
        pos_weight = torch.tensor(float(pos_weight), device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, targets, weight, pos_weight=pos_weight,
                                              reduction="none" if sum_classes else reduction)
    return loss.sum(-1).mean() if sum_classes else loss
