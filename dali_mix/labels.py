"""Soft targets for mixed batches, built in the DALI graph.

Dense: target = (1 - eps) * (lam * onehot(y_a) + (1 - lam) * onehot(y_b)) + eps / C, float32
(N, C): non-negative, rows sum to 1, minimum eps / C (timm's `mixup_target` with smoothing).
When y_a == y_b the row is the (smoothed) one-hot of that class, whatever lam.
Sparse: (y_a int64, y_b int64, lam float32) per sample, for very many classes; the loss combines
lam * CE(y_a) + (1 - lam) * CE(y_b) with the same smoothing (`dali_mix.torch.losses`).

`fn.one_hot` turns a label >= C into an all-zero row without a word; the torch loader checks
every batch (`dali_mix.torch.Loader` with `num_classes`), and pipelines built from a file tree
validate labels against the class count when they are built.
"""
from __future__ import annotations

from nvidia.dali import fn, types


def scalar_labels(labels):
    """Labels of any per-sample shape with one element ((), (1,)) -> int64 scalars (CPU)."""
    return fn.cast(fn.reshape(labels, shape=[]), dtype=types.INT64)


def dense_targets(labels_a, labels_b, lam, num_classes: int, smoothing: float = 0.0):
    """(N, num_classes) float32 soft targets, see the module docstring: `weighted_targets` with
    the weights lam * (1 - eps) and (1 - lam) * (1 - eps). All inputs on the CPU; lam a float32
    scalar per sample (a DataNode) or a number."""
    check_smoothing(smoothing)
    on = 1.0 - float(smoothing)
    return weighted_targets(labels_a, labels_b, lam * on, (1.0 - lam) * on, num_classes,
                            float(smoothing) / num_classes)


def check_smoothing(smoothing: float) -> None:
    if not 0.0 <= float(smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing}")


def weighted_targets(labels_a, labels_b, w_a, w_b, num_classes: int, off: float = 0.0):
    """(N, num_classes) float32 targets w_a * onehot(y_a) + w_b * onehot(y_b) + off, with the
    weights given per sample (float32 CPU scalars, e.g. lam * (1 - eps) and (1 - lam) * (1 - eps)
    from a `dali_mix.plan.MixPlanner`) and off = eps / C: the same rows as `dense_targets`,
    with three or four operators instead of eight."""
    a = fn.one_hot(labels_a, num_classes=int(num_classes), dtype=types.FLOAT) * w_a
    b = fn.one_hot(labels_b, num_classes=int(num_classes), dtype=types.FLOAT) * w_b
    return a + b + float(off) if off else a + b
