"""Weighted choice among candidate operations, per sample (DALI conditionals) or per batch.

Modelled on `nvidia.dali.auto_aug.core._select`: the batch is split among the candidates with
nested `if` statements on a per-sample index (binary splitting, log2(K) levels), so each sample
goes through exactly one candidate and no work is done for the others. Requires the pipeline to
be defined with `@pipeline_def(enable_conditionals=True)`.
"""
from __future__ import annotations

from typing import Callable, Sequence

from nvidia.dali import fn, types
from nvidia.dali.pipeline import Pipeline


def choose(weights: Sequence[float], *, prob: float = 1.0, mode: str = "sample"):
    """Draw a candidate index per sample: int32 CPU scalar in [0, K), or K for "no operation".

    Args:
        weights: K non-negative weights (not all zero); candidate k is drawn with probability
            prob * w_k / sum(w).
        prob: chance that a sample (mode "sample") or the whole batch (mode "batch") is mixed.
        mode: "sample": an independent draw per sample; "batch": one draw per batch, shared by
            all its samples (sample 0's draw is broadcast with `fn.permute_batch`).
    """
    total = float(sum(weights))
    p = [prob * float(w) / total for w in weights]
    if prob < 1.0:
        p.append(1.0 - prob)
    if len(p) == 1:
        return None  # a single candidate, always applied: no draw, no split
    idx = fn.cast(fn.random.choice(len(p), p=p), dtype=types.INT32)
    if mode == "batch":
        idx = fn.permute_batch(idx, indices=[0] * _batch_size())
    elif mode != "sample":
        raise ValueError(f"mode must be 'sample' or 'batch', got {mode!r}")
    return idx


def select(ops: Sequence[Callable], index, *args):
    """Apply `ops[index[i]]` to sample i: returns what the chosen op returns, merged into one batch.

    `index` is None (always op 0) or an int32 CPU scalar per sample in [0, len(ops)). Every op
    takes `*args` (DataNodes, split among the branches) and returns the same structure.
    """
    if index is None or len(ops) == 1:
        return ops[0](*args)
    require_conditionals("choosing among several mixing methods per sample")
    return _split(0, len(ops) - 1, ops, index, args)


def require_conditionals(what: str) -> None:
    """Raise ValueError unless the current pipeline has conditionals enabled (`if` on DataNodes)."""
    pipe = Pipeline.current()
    if pipe is not None and not getattr(pipe, "_conditionals_enabled", True):
        raise ValueError(f"{what} needs @pipeline_def(enable_conditionals=True) on the pipeline")


def _split(lo: int, hi: int, ops, index, args):
    if lo == hi:
        return ops[lo](*args)
    mid = (lo + hi) // 2
    if index <= mid:
        out = _split(lo, mid, ops, index, args)
    else:
        out = _split(mid + 1, hi, ops, index, args)
    return out


def _batch_size() -> int:
    pipe = Pipeline.current()
    if pipe is None:
        raise ValueError("mode='batch' must be used inside a pipeline definition")
    return pipe.max_batch_size
