"""The plan feed: one external source that draws each batch's `Plan` and hands every unit
(the targets, the executor, the eraser) its own inputs.

`PlanFeed(planner, units)` is the callable of `random_mix`'s one `fn.external_source`
(`batch=True, batch_info=True`): for DALI's batch_info it draws the run's plan and returns the
plan-wide outputs ("method", "perm", "lam"), then each unit's `encode(plan)` outputs (numpy,
CPU, per sample), in the order of `names`. The units encode the plan of the run's whole chunk
(`MixPlanner.chunk_plan`: the plans of `chunk` consecutive steps) once, and each run gets its
samples of those outputs, so a unit's encoding must hold for a plan of any number of samples
(a sample's own index is `plan.sources[:, 0]`, not its position). DALI reads the outputs
without copying them (`no_copy`): a unit never changes an array it has returned (nor the
arrays it returns views of, such as the FMix bank). `nodes()` builds the external source and
returns the plan-wide DataNodes and one dict of DataNodes per unit, keyed by the unit's own
names, so no name is shared between units. The next runs' outputs are drawn meanwhile in a
background thread when the planner allows it (`MixPlanner.predictable`): `AHEAD` runs in one
go, since a plan drawn right after another costs the thread less CPU time than one drawn alone
between two batches of the pipeline (its code and data are still in the caches;
benchmarks/RESULTS.md).
"""
from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from nvidia.dali import fn
from nvidia.dali.types import BatchInfo

from dali_mix.plan import MixPlanner, Plan

AHEAD = 8
"""Runs whose outputs one background task draws, in order, when fewer than two are queued. The
runs queued and those DALI still holds are views of the outputs of at most about three chunks
(`MixPlanner.chunk`): with FMix on images of at most `dali_mix.execute.DENSE_MASK_PIXELS`
pixels, chunk * B rank images of 2 bytes per pixel each."""

PLAN_NAMES = ("method", "perm", "lam")
"""The plan-wide outputs every unit may read: (B,) int32 method, int32 partner, float32 lam."""

# a plan has outputs a graph may not use ("method" unless explained); producing them costs
# microseconds, so DALI's hint about unused external-source outputs is noise here
warnings.filterwarnings("ignore", message=r"The external source node '<dali_mix\.feed\.PlanFeed")


def _next_run(batch_info):
    """The batch_info of the run after `batch_info` (a DALI batch_info or a run number; None
    for anything else)."""
    if hasattr(batch_info, "iteration"):
        return BatchInfo(int(batch_info.iteration) + 1, int(getattr(batch_info, "epoch_idx", 0)))
    return int(batch_info) + 1 if np.isscalar(batch_info) else None


class PlanFeed:
    """See the module docstring. units: objects with `names` (list of str) and
    `encode(plan) -> {name: per-sample values}`."""

    def __init__(self, planner: MixPlanner, units: list):
        self.planner = planner
        self.units = list(units)
        self.names = list(PLAN_NAMES) + [f"{k}.{n}" for k, u in enumerate(self.units) for n in u.names]
        self._ahead: deque = deque()  # (batch_info, key, Future) of the runs drawn ahead, in order
        self._encoded = None  # (key, outputs) of the chunk encoded last (`outputs`)
        self._pool = None

    def __call__(self, batch_info) -> tuple:
        """The outputs of the run `batch_info`; a run drawn ahead is used only when its inputs
        are this run's (a plan is a pure function of them), and drawn here otherwise."""
        inputs = self.planner.inputs(batch_info)
        key, out = self._key(inputs), None
        while self._ahead:  # the runs queued before this one are not asked for any more
            info, queued_key, future = self._ahead.popleft()
            if queued_key == key:
                out = future.result()
                break
        if out is None:  # not drawn ahead (a first run, a skip, a repeat, a changed clock)
            self._ahead.clear()
            out = self.outputs(inputs)
            last = batch_info
        else:
            last = self._ahead[-1][0] if self._ahead else batch_info
        if len(self._ahead) < 2 and self.planner.predictable():
            self._draw_ahead(last)
        return out

    def _draw_ahead(self, last) -> None:
        """Queue the `AHEAD` runs after the run `last`, drawn in order by one background task."""
        queued, info = [], last
        for _ in range(AHEAD):
            info = _next_run(info)
            if info is None:
                return
            inputs = self.planner.inputs(info)
            queued.append((info, self._key(inputs), inputs, Future()))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dali-mix-plan")
        self._pool.submit(self._draw, [(inputs, future) for _, _, inputs, future in queued])
        self._ahead.extend((info, key, future) for info, key, _, future in queued)

    def _draw(self, queued: list) -> None:
        """Set each future of `queued` ((inputs, Future) pairs) to the outputs of its inputs."""
        for inputs, future in queued:
            try:
                future.set_result(self.outputs(inputs))
            except BaseException as e:  # raised where the run is asked for
                future.set_exception(e)

    def outputs(self, inputs: tuple) -> tuple:
        """The outputs, in `names` order, of the plan of `inputs` (`MixPlanner.inputs`): the
        run's samples of its chunk's outputs (`MixPlanner.chunk_plan`, encoded once for the
        runs of the chunk that share its `enabled`), or, for an `enabled` callable that may
        switch samples off differently in each run, the run's own plan encoded."""
        epoch, step, enabled = inputs
        planner, B = self.planner, self.planner.batch_size
        index, at = divmod(int(step), planner.chunk)
        if enabled is not None and enabled.all():
            enabled = None  # the same plan
        if enabled is not None and not planner.predictable():  # may differ from run to run
            return self.encode(planner.plan(epoch, step, enabled))
        key = (epoch, index, None if enabled is None else enabled.tobytes(), planner.clock.runs_per_epoch)
        encoded = self._encoded
        if encoded is None or encoded[0] != key:
            encoded = self._encoded = (key, self.encode(planner.chunk_plan(epoch, index, enabled)))
        return tuple(out[at * B:(at + 1) * B] for out in encoded[1])

    def encode(self, plan: Plan) -> tuple:
        """The outputs, in `names` order, of `plan` (of any number of samples): per-sample
        arrays (first axis the samples) or lists."""
        out = [plan.method, plan.perm, plan.lam]
        for unit in self.units:
            enc = unit.encode(plan)
            out += [enc[n] for n in unit.names]
        return tuple(out)

    def nodes(self) -> tuple[dict, list[dict]]:
        """Build the external source: (plan-wide DataNodes by name, one dict per unit)."""
        # no_copy: DALI reads the outputs where they are (holding a reference to each until it
        # is consumed); none is changed after it is returned
        outs = fn.external_source(source=self, num_outputs=len(self.names), batch=True, batch_info=True,
                                  no_copy=True)
        plan_nodes = dict(zip(PLAN_NAMES, outs[:len(PLAN_NAMES)]))
        per_unit, at = [], len(PLAN_NAMES)
        for unit in self.units:
            per_unit.append(dict(zip(unit.names, outs[at:at + len(unit.names)])))
            at += len(unit.names)
        return plan_nodes, per_unit

    def _key(self, inputs: tuple) -> tuple:
        """What identifies a run's outputs: its inputs, and the epoch length the FMix bank's
        period is read from."""
        epoch, step, enabled = inputs
        return (epoch, step, None if enabled is None else enabled.tobytes(),
                self.planner.clock.runs_per_epoch)
