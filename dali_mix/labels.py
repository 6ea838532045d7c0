"""Soft targets for mixed batches, built in the DALI graph.

Dense: target = (1 - eps) * sum_k share_k * onehot(y_k) + eps / C, float32 (N, C), over the
plan's label slots k (own, partner, ... : `Plan.shares`, each source's share of the output; two
slots: lam * onehot(y_a) + (1 - lam) * onehot(y_b), timm's `mixup_target` with smoothing):
non-negative, rows sum to 1, minimum eps / C. When y_a == y_b the row is the (smoothed)
one-hot of that class, whatever lam.
Sparse: (y_a int64, y_b int64, lam float32) per sample, for very many classes; the loss combines
lam * CE(y_a) + (1 - lam) * CE(y_b) with the same smoothing (`dali_mix.torch.losses`).

`fn.one_hot` turns a label >= C into an all-zero row without a word; the torch loader checks
every batch (`dali_mix.torch.Loader` with `num_classes`), and pipelines built from a file tree
validate labels against the class count when they are built.
"""
from __future__ import annotations

import numpy as np

from nvidia.dali import fn, types


def scalar_labels(labels):
    """Labels of any per-sample shape with one element ((), (1,)) -> int64 scalars (CPU)."""
    return fn.cast(fn.reshape(labels, shape=[]), dtype=types.INT64)


def target_weights(shares: np.ndarray, smoothing: float = 0.0) -> np.ndarray:
    """The weights of the label slots: (N, S) float32 shares (`Plan.shares`; slot 0 the own
    label, slot 1 the partner's, ...) -> (N, S, 1) float32 shares * (1 - eps), computed in
    float32, for `dense_targets`."""
    check_smoothing(smoothing)
    shares = np.asarray(shares, np.float32)
    return (shares * np.float32(1.0 - float(smoothing)))[:, :, None]


def dense_targets(labels, weights, num_classes: int, smoothing: float = 0.0):
    """(N, num_classes) float32 soft targets, see the module docstring, from the int64 scalar
    labels of the S label slots (a list of S DataNodes: own, partner, ...) and
    `target_weights` (an (S, 1) float32 DataNode per sample), all on the CPU: the one-hot rows
    of the slots' labels weighted and summed (four operators)."""
    check_smoothing(smoothing)
    hot = fn.one_hot(fn.stack(*labels), num_classes=int(num_classes), dtype=types.FLOAT)
    targets = fn.reductions.sum(hot * weights, axes=0)
    return targets + float(smoothing) / num_classes if smoothing else targets


def pair_targets(labels_a, perm, weight_a, weight_b, num_classes: int, smoothing: float = 0.0):
    """`dense_targets` of two label slots (own, partner = sample `perm`), the same values bit
    for bit, in three operators: onehot(y_a) * w_a + onehot(y_a)[perm] * w_b (+ eps / C), from
    the int64 scalar labels, the int32 partner and the float32 scalar weights `target_weights`
    gives slot 0 and slot 1, all on the CPU. Each class's value is one weight or the float32
    sum w_a + w_b, as the two-row sum of `dense_targets` rounds it."""
    check_smoothing(smoothing)
    hot = fn.one_hot(labels_a, num_classes=int(num_classes), dtype=types.FLOAT)
    targets = hot * weight_a + fn.permute_batch(hot, indices=perm) * weight_b
    return targets + float(smoothing) / num_classes if smoothing else targets


def onehot_targets(labels, num_classes: int, smoothing: float = 0.0):
    """(N, num_classes) float32 targets of unmixed samples (lam = 1): (1 - eps) * onehot(y) +
    eps / C, from int64 scalar labels on the CPU."""
    check_smoothing(smoothing)
    hot = fn.one_hot(labels, num_classes=int(num_classes), dtype=types.FLOAT)
    if not smoothing:
        return hot
    return hot * (1.0 - float(smoothing)) + float(smoothing) / num_classes


def check_smoothing(smoothing: float) -> None:
    if not 0.0 <= float(smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing}")


class TargetInputs:
    """The targets' unit of the plan feed (`dali_mix.feed.PlanFeed`): `encode(plan)` gives
    (`names`) the dense targets' slot weights (`target_weights`: two slots, "weight_a" and
    "weight_b", (B,) float32 each, for `pair_targets`; more, "weights" (B, S, 1) for
    `dense_targets`), and for plans of S > 2 label slots the samples of slots 2.. ("source_k",
    (B,) int32) and the shares ((B, S) float32); `build` makes the targets in the graph."""

    def __init__(self, recipe, slots: int):
        self.recipe = recipe
        self.slots = int(slots)
        dense = []
        if recipe.target == "dense":
            dense = ["weight_a", "weight_b"] if self.slots == 2 else ["weights"]
        self.names = dense + [f"source_{k}" for k in range(2, self.slots)] + (["shares"] if self.slots > 2 else [])

    def encode(self, plan) -> dict:
        out = {f"source_{k}": np.ascontiguousarray(plan.sources[:, k]) for k in range(2, self.slots)}
        out["shares"] = plan.shares
        if self.recipe.target == "dense":
            weights = target_weights(plan.shares, self.recipe.label_smoothing)
            if self.slots == 2:
                out["weight_a"] = np.ascontiguousarray(weights[:, 0, 0])
                out["weight_b"] = np.ascontiguousarray(weights[:, 1, 0])
            else:
                out["weights"] = weights
        return out

    def build(self, labels_a, perm, ins: dict):
        """(targets (N, C) float32 or None for sparse, labels_b, the slots' labels (S,) int64
        or None, their shares or None), all on the CPU, from the int64 scalar labels and the
        plan's partner `perm`."""
        labels_b = fn.permute_batch(labels_a, indices=perm)
        slots = [labels_a, labels_b] + [fn.permute_batch(labels_a, indices=ins[f"source_{k}"])
                                        for k in range(2, self.slots)]
        targets = None
        if self.recipe.target == "dense" and self.slots == 2:
            targets = pair_targets(labels_a, perm, ins["weight_a"], ins["weight_b"], self.recipe.num_classes,
                                   self.recipe.label_smoothing)
        elif self.recipe.target == "dense":
            targets = dense_targets(slots, ins["weights"], self.recipe.num_classes,
                                    self.recipe.label_smoothing)
        if self.slots > 2:
            return targets, labels_b, fn.stack(*slots), ins["shares"]
        return targets, labels_b, None, None
