"""Pair targets (two label slots) in each of their encodings, DALI's operators (`pair_targets`,
`dense_targets`) and the fused operator's, against one float32 restatement, bit for bit: also
where both slots hold the same class (the float32 sum w_a + w_b) and with smoothing."""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

from dali_mix.labels import dense_targets, pair_targets, scalar_labels, target_weights


def _fused_targets(n, images, perm, labels, weights, classes, smoothing):
    """The fused operator's targets of a plan of `n` samples (perm (n,), weights (n, 2) numpy)
    that mixes no pixels (blend 1, no rows, no mask)."""
    from dali_mix import native

    plan = native.pack_plan(perm, np.ones(n, np.float32), np.zeros((n, 0, 9), np.int32), np.zeros((n, 3)),
                            height=2, width=2, weights=weights)
    eps = float(smoothing)
    _, targets = native.mix(images, fn.external_source(source=lambda: plan, batch=True), layout="CHW",
                            labels=labels, num_classes=classes, target_offset=eps / classes if eps else 0.0)
    return targets


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("label_dtype", ["int32", "int64", "uint8", "float32"])
def test_pair_targets_bit_for_bit_in_every_encoding(smoothing, label_dtype):
    """`pair_targets` (three DALI operators), `dense_targets` of the two slots, and the fused
    operator's targets all equal the restatement (c == y_a) w_a + (c == y_b) w_b + eps / C in
    float32, bit for bit, also where both slots hold the same class (the float32 sum w_a + w_b),
    for labels of any integer type (and floats holding class indices)."""
    n, classes = 32, 5
    rng = np.random.default_rng(7)
    labels = rng.integers(0, classes, (n, 1)).astype(label_dtype)  # few classes: many equal pairs
    perm = rng.permutation(n).astype(np.int32)
    lam = rng.random(n).astype(np.float32)
    lam[:4] = (1.0, 0.0, 0.5, np.float32(1 / 3))
    shares = np.stack([lam, np.float32(1.0) - lam], 1)
    weights = target_weights(shares, smoothing)
    w_a, w_b = np.ascontiguousarray(weights[:, 0, 0]), np.ascontiguousarray(weights[:, 1, 0])
    images = np.zeros((n, 1, 2, 2), np.float32)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None)
    def pipe():
        y = fn.external_source(source=lambda: labels, batch=True)
        x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
        p, w, a, b = fn.external_source(source=lambda: (perm, weights, w_a, w_b), num_outputs=4, batch=True)
        y_a = scalar_labels(y)
        return (dense_targets([y_a, fn.permute_batch(y_a, indices=p)], w, classes, smoothing),
                pair_targets(y_a, p, a, b, classes, smoothing),
                _fused_targets(n, x, perm, y, weights[:, :, 0], classes, smoothing))

    p = pipe()
    p.build()
    got = [np.stack([np.asarray(t[i]) for i in range(n)]) for t in p.run()]
    y_a, y_b = labels[:, 0].astype(np.int64), labels[perm, 0].astype(np.int64)
    c = np.arange(classes)
    zero = np.float32(0)
    want = (np.where(c == y_a[:, None], w_a[:, None], zero) + np.where(c == y_b[:, None], w_b[:, None], zero)
            + np.float32(smoothing / classes))
    assert want.dtype == np.float32
    for targets in got:
        np.testing.assert_array_equal(targets, want)
    same = y_a == y_b
    assert same.any() and (~same).any()
    np.testing.assert_allclose(want.sum(1), 1.0, atol=1e-6)


def test_the_fused_operator_refuses_a_label_that_is_not_one_class_index():
    """A label of two values, and a negative one: each stops the batch naming the sample."""
    n = 4
    for labels, match in ((np.zeros((n, 2), np.int32), r"label of sample 0 has 2 values"),
                          (np.array([[0], [1], [-1], [2]], np.int64), r"label of sample 2 is -1, outside \[0, 3\)")):
        @pipeline_def(batch_size=n, num_threads=1, device_id=None)
        def pipe():
            y = fn.external_source(source=lambda: labels, batch=True)
            x = fn.external_source(source=lambda: np.zeros((n, 1, 2, 2), np.float32), batch=True, layout="CHW")
            return _fused_targets(n, x, np.arange(n), y, np.tile(np.float32([1, 0]), (n, 1)), 3, 0.0)

        p = pipe()
        p.build()
        with pytest.raises(RuntimeError, match=match):
            p.run()
