"""`pair_targets` (two label slots, three operators) gives `dense_targets`' values bit for bit,
also where both slots hold the same class (the float32 sum w_a + w_b) and with smoothing."""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

from dali_mix.labels import dense_targets, pair_targets, scalar_labels, target_weights


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_pair_targets_equal_dense_targets_bit_for_bit(smoothing):
    n, classes = 32, 5
    rng = np.random.default_rng(7)
    labels = rng.integers(0, classes, (n, 1)).astype(np.int32)  # few classes: many equal pairs
    perm = rng.permutation(n).astype(np.int32)
    lam = rng.random(n).astype(np.float32)
    lam[:4] = (1.0, 0.0, 0.5, np.float32(1 / 3))
    shares = np.stack([lam, np.float32(1.0) - lam], 1)
    weights = target_weights(shares, smoothing)
    w_a, w_b = np.ascontiguousarray(weights[:, 0, 0]), np.ascontiguousarray(weights[:, 1, 0])

    @pipeline_def(batch_size=n, num_threads=1, device_id=None)
    def pipe():
        y = fn.external_source(source=lambda: labels, batch=True)
        p, w, a, b = fn.external_source(source=lambda: (perm, weights, w_a, w_b), num_outputs=4, batch=True)
        y_a = scalar_labels(y)
        old = dense_targets([y_a, fn.permute_batch(y_a, indices=p)], w, classes, smoothing)
        return old, pair_targets(y_a, p, a, b, classes, smoothing)

    p = pipe()
    p.build()
    old, new = (np.stack([np.asarray(t[i]) for i in range(n)]) for t in p.run())
    np.testing.assert_array_equal(new, old)
    same = labels[:, 0] == labels[perm, 0]
    assert same.any() and (~same).any()
    hot = np.eye(classes, dtype=np.float32)
    want = hot[labels[:, 0]] * w_a[:, None] + hot[labels[perm, 0]] * w_b[:, None] + np.float32(smoothing / classes)
    np.testing.assert_allclose(new, want, rtol=0, atol=1e-7)
    np.testing.assert_allclose(new.sum(1), 1.0, atol=1e-6)
