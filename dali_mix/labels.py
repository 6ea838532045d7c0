"""Soft targets for mixed batches, built in the DALI graph.

Dense: target = (1 - eps) * sum_k share_k * onehot(y_k) + eps / C, float32 (N, C), over the
plan's label slots k (own, partner, ... : `Plan.shares`, each source's share of the output; two
slots: lam * onehot(y_a) + (1 - lam) * onehot(y_b), timm's `mixup_target` with smoothing):
non-negative, rows sum to 1, minimum eps / C. When y_a == y_b the row is the (smoothed)
one-hot of that class, whatever lam.
Sparse: (y_a int64, y_b int64, lam float32) per sample, for very many classes; the loss combines
lam * CE(y_a) + (1 - lam) * CE(y_b) with the same smoothing (`dali_mix.torch.losses`).

Multi-label (`MixRecipe.label_format` "multi_hot" or "ids"): each sample's labels become a
multi-hot y (C,) float32 (`multi_hot_labels`), and target = (1 - eps) * sum_k share_k * y_k +
off over the same slots and shares, off = eps / C ("classes": a positive class gets
1 - eps + eps / C, timm's BCE smoothing) or eps / 2 ("half", timm's `Mixup(multi_label=True)`):
in [0, 1], rows need not sum to 1, an empty label list gives the row `off`. Smoothing after
mixing equals smoothing each y_k before (the shares sum to 1), as timm does it.
`target_threshold` t (any format): target = 1.0 where target > t, else 0.0, after smoothing.

`fn.one_hot` turns a label >= C into an all-zero row without a word; the torch loader checks
every batch (`dali_mix.torch.Loader` with `num_classes`), and pipelines built from a file tree
validate labels against the class count when they are built. On the CPU the fused operator
makes the pair targets itself (`TargetInputs.in_operator`) and stops a batch with a label
outside [0, C), naming the sample. Multi-label labels are checked in
the graph: a sample whose labels are bad (`LABEL_PROBLEMS`: a class id outside [0, C), a
multi-hot vector of another length than C, a multi-hot value other than 0 and 1) gets the row
-code (every value), which no valid target takes; `dali_mix.torch.Loader` finds such rows in
every batch and raises naming the sample and the cause.
"""
from __future__ import annotations

import numpy as np

from nvidia.dali import fn, types
from nvidia.dali import math as dmath


def scalar_labels(labels):
    """Labels of any per-sample shape with one element ((), (1,)) -> int64 scalars (CPU)."""
    return fn.cast(fn.reshape(labels, shape=[]), dtype=types.INT64)


def own_labels(labels, recipe):
    """(the samples' own labels, their problem codes), on the CPU, as `recipe.label_format`
    says: "index": (int64 scalars, None); multi-label: `multi_hot_labels`."""
    if not recipe.multi_label:
        return scalar_labels(labels), None
    return multi_hot_labels(labels, recipe.label_format, recipe.num_classes)


def unmixed_targets(labels, recipe, problem=None):
    """(N, C) float32 targets of unmixed samples from `own_labels`: the smoothed one-hot
    (`onehot_targets`) or multi-hot (y (1 - eps) + off) rows, then `finish_targets`."""
    if not recipe.multi_label:
        targets = onehot_targets(labels, recipe.num_classes, recipe.label_smoothing)
    else:
        eps, off = float(recipe.label_smoothing), smoothing_off(recipe)
        targets = labels * (1.0 - eps) + off if eps else labels
    return finish_targets(targets, recipe, problem)


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


LABEL_PROBLEMS = {
    1: "a class id outside [0, num_classes) in its list of ids",
    2: "a multi-hot vector whose length is not num_classes",
    3: "a multi-hot value other than 0 and 1",
}
"""Problem code -> cause, of a sample's multi-label labels (`multi_hot_labels`)."""


def multi_hot_labels(labels, label_format: str, num_classes: int):
    """(y (C,) float32 multi-hot, problem int32 scalar: 0 or a `LABEL_PROBLEMS` code) per
    sample, on the CPU, from `labels` of `label_format` "ids" (any integer shape, flattened:
    a list of class ids, repeats allowed, empty = no class) or "multi_hot" (C elements of any
    numeric dtype, flattened, each 0 or 1). y holds the valid part (ids in range; 1 where the
    first C values, zero-padded, are 1), so that a bad sample still gives C finite values to
    the rows it is mixed into; its problem marks its own row."""
    C = int(num_classes)
    flat = fn.reshape(labels, shape=[-1])
    # (bool) * 1: an integer count for the reductions, in the same arithmetic operator
    if label_format == "ids":
        hot = fn.reductions.sum(fn.one_hot(flat, num_classes=C, dtype=types.FLOAT), axes=0)
        outside = fn.reductions.sum(((flat < 0) | (flat >= C)) * 1)
        return dmath.min(hot, 1.0), fn.cast(outside > 0, dtype=types.INT32)  # code 1
    if label_format != "multi_hot":
        raise ValueError(f"label_format must be 'ids' or 'multi_hot' here, got {label_format!r}")
    values = fn.cast(flat, dtype=types.FLOAT)
    hot = fn.slice(values, start=[0], shape=[C], axes=[0], out_of_bounds_policy="pad")
    wrong_length = flat.shape()[0] != C
    not_binary = fn.reductions.sum(((hot != 0) & (hot != 1)) * 1) > 0  # NaN too
    code = wrong_length * 2 + (wrong_length == 0) * not_binary * 3  # the length first
    return (hot == 1) * 1.0, fn.cast(code, dtype=types.INT32)  # exactly 0/1, even for NaN


def multi_label_targets(slots, weights, off: float):
    """(N, C) float32 multi-label targets: sum_k weights_k * y_k + off, from the multi-hot
    vectors of the S label slots (a list of S (C,) float32 DataNodes) and `target_weights`
    ((S, 1) float32 per sample, shares * (1 - eps)), on the CPU."""
    targets = fn.reductions.sum(fn.stack(*slots) * weights, axes=0)
    return targets + float(off) if off else targets


def smoothing_off(recipe) -> float:
    """The value smoothing gives an absent class: eps / C, or eps / 2 for multi-label targets
    smoothed towards 0.5 (`MixRecipe.multi_label_smoothing` "half")."""
    eps = float(recipe.label_smoothing)
    return eps / 2 if recipe.multi_label and recipe.multi_label_smoothing == "half" else eps / recipe.num_classes


def finish_targets(targets, recipe, problem=None):
    """`targets` binarised by `recipe.target_threshold` (1.0 where > t, else 0.0; unchanged when
    None), then every row whose sample's `problem` (int32 scalar, multi-label) is not 0 set to
    -problem (module docstring). The same node when there is nothing to do."""
    if recipe.target_threshold is not None:
        targets = fn.cast(targets > float(recipe.target_threshold), dtype=types.FLOAT)
    if problem is None:
        return targets
    return targets * (problem == 0) - problem * (problem != 0)  # one arithmetic operator, float32


def check_smoothing(smoothing: float) -> None:
    if not 0.0 <= float(smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing}")


class TargetInputs:
    """The targets' unit of the plan feed (`dali_mix.feed.PlanFeed`): `encode(plan)` gives
    (`names`) the dense targets' slot weights (`target_weights`: two slots of class ids,
    "weight_a" and "weight_b", (B,) float32 each, for `pair_targets`; none when `in_operator`;
    more slots or multi-label targets, "weights" (B, S, 1) for `dense_targets` /
    `multi_label_targets`), and for plans of S > 2 label slots the samples of slots 2..
    ("source_k", (B,) int32) and the shares ((B, S) float32); `build` makes the targets in
    the graph.

    in_operator: the images are mixed by the fused CPU operator, which then also makes pair
    targets (`operator_inputs`; the same values as `pair_targets`, in no extra operator) from
    the target weights the fused executor packs into its plan (`FusedExecutor(targets=True)`)."""

    def __init__(self, recipe, slots: int, in_operator: bool = False):
        self.recipe = recipe
        self.slots = int(slots)
        # one-hot targets of two slots take the pair form (`pair_targets`), the rest the slots' sum
        self.pair = recipe.target == "dense" and self.slots == 2 and not recipe.multi_label
        self.in_operator = self.pair and bool(in_operator)
        dense = []
        if recipe.target == "dense" and not self.in_operator:
            dense = ["weight_a", "weight_b"] if self.pair else ["weights"]
        self.names = dense + [f"source_{k}" for k in range(2, self.slots)] + (["shares"] if self.slots > 2 else [])

    def encode(self, plan) -> dict:
        out = {f"source_{k}": np.ascontiguousarray(plan.sources[:, k]) for k in range(2, self.slots)}
        out["shares"] = plan.shares
        if self.recipe.target == "dense" and not self.in_operator:
            weights = target_weights(plan.shares, self.recipe.label_smoothing)
            if self.pair:
                out["weight_a"] = np.ascontiguousarray(weights[:, 0, 0])
                out["weight_b"] = np.ascontiguousarray(weights[:, 1, 0])
            else:
                out["weights"] = weights
        return out

    def operator_inputs(self, labels) -> dict:
        """The fused operator's target keywords (`dali_mix.native.mix`): the samples' labels
        as given to `random_mix` (one class index each, CPU; the operator checks them), C and
        the smoothing offset eps / C (the weights are in the operator's plan)."""
        eps, C = float(self.recipe.label_smoothing), int(self.recipe.num_classes)
        return {"labels": labels, "num_classes": C, "target_offset": eps / C if eps else 0.0}

    def build(self, labels_a, perm, ins: dict, problem=None, made=None):
        """(targets (N, C) float32 or None for sparse, labels_b, the slots' labels (S,) int64
        or None, their shares or None), all on the CPU, from the samples' own labels
        (`own_labels`: int64 scalars; multi-label: (C,) float32 multi-hot, then the slots'
        labels are (S, C) float32) and the plan's partner `perm`; `problem`: the own labels'
        problem codes (multi-label), marked in the targets (`finish_targets`); `made`: the
        fused operator's targets (`in_operator`)."""
        recipe = self.recipe
        labels_b = fn.permute_batch(labels_a, indices=perm)
        slots = [labels_a, labels_b] + [fn.permute_batch(labels_a, indices=ins[f"source_{k}"])
                                        for k in range(2, self.slots)]
        targets = None
        if self.in_operator:
            targets = made
        elif recipe.target == "dense" and recipe.multi_label:
            targets = multi_label_targets(slots, ins["weights"], smoothing_off(recipe))
        elif self.pair:
            targets = pair_targets(labels_a, perm, ins["weight_a"], ins["weight_b"], recipe.num_classes,
                                   recipe.label_smoothing)
        elif recipe.target == "dense":
            targets = dense_targets(slots, ins["weights"], recipe.num_classes, recipe.label_smoothing)
        if targets is not None:
            targets = finish_targets(targets, recipe, problem)
        if self.slots > 2:
            return targets, labels_b, fn.stack(*slots), ins["shares"]
        return targets, labels_b, None, None
