"""Batch pairing: sample i is mixed with sample perm[i] of the same batch."""
from __future__ import annotations

from typing import NamedTuple

from nvidia.dali import fn


class Pairs(NamedTuple):
    """The partner batch: `images_b[i] = images[perm[i]]`, `labels_b[i] = labels[perm[i]]`.

    `perm` is an int32 CPU scalar per sample (a permutation of 0..N-1).
    """
    perm: object
    images_b: object
    labels_b: object


def pair(images, labels, *, no_self_pairs: bool = True, perm=None) -> Pairs:
    """Draw a batch permutation and apply it to images and labels.

    Args:
        images: any batch (CPU or GPU, any layout and dtype).
        labels: per-sample labels (CPU), any shape.
        no_self_pairs: forbid perm[i] == i (DALI `batch_permutation(no_fixed_points=True)`); a
            batch of size 1 is necessarily paired with itself. Works for odd batch sizes.
        perm: an existing permutation to reuse (e.g. to pair several streams identically).
    """
    if perm is None:
        perm = fn.batch_permutation(no_fixed_points=bool(no_self_pairs))
    return Pairs(perm, fn.permute_batch(images, indices=perm), fn.permute_batch(labels, indices=perm))
