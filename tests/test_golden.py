"""Bit-for-bit behaviour of every existing recipe kind on both executors: the digests of
fixed-seed batches (images, targets, labels, lambdas) must equal tests/golden/golden.json,
written by tests/golden/make_golden.py before the method-table refactoring (issue 24). The
plans are drawn one per batch (`dali_mix.plan.CHUNK = 1`), the stream the digests were made
with; plans drawn in chunks (the default) are checked by tests/test_plan.py (order, per-batch
partners and sources, disabled samples) and by the value tests of both executors.

The FMix cases' images were regenerated once, when the FMix bank's noise moved from
`torch.randn` to numpy (`dali_mix.masks`): torch's seeded normals gave other bits on another
CPU's vector unit, numpy's give the same on every machine (tests/test_distributions.py checks
the bank under `ATEN_CPU_CAPABILITY=default`)."""
from __future__ import annotations

import json

import pytest

from tests.golden import make_golden as golden

WANT = json.loads(golden.GOLDEN.read_text())


@pytest.fixture(autouse=True)
def one_plan_per_draw(monkeypatch):
    monkeypatch.setattr(golden.plan, "CHUNK", 1)


@pytest.mark.parametrize("executor", golden.EXECUTORS)
@pytest.mark.parametrize("name", list(golden.CASES))
def test_same_batches_bit_for_bit(name, executor):
    got = golden.run_case(name, executor)
    want = WANT["cases"][f"{name}/{executor}"]
    for step, (g, w) in enumerate(zip(got, want)):
        assert g["lam_values"] == w["lam_values"], f"batch {step}: lambdas moved"
        assert g == w, f"batch {step}: outputs moved: " + ", ".join(
            k for k in w if g.get(k) != w[k])
    assert len(got) == len(want)


def test_mixmo_inputs_bit_for_bit():
    assert golden.run_mixmo() == WANT["mixmo"]
