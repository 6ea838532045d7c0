"""Throughput of dali-mix against its peers, measured side by side in one run.

    python -m benchmarks.throughput                 # from a checkout (not installed)
    python -m benchmarks.throughput --only dali-nomix,dali-randommix --rounds 3 --batches 10

Contenders (CPU, `--image-size` x `--image-size`, `--batch-size`, DALI threads = `--threads`):

    dali-nomix        dali-mix train pipeline without mixing (the reference; normalised by the
                      fused operator, as the mixing pipelines are)
    dali-nomix-cmn    the same, normalised by DALI's crop_mirror_normalize (a stock DALI loader)
    dali-randommix    the same + RandomMix per sample (mixup/cutmix/resizemix/fmix, equal weights)
    dali-randommix-ops
                      the same plan with the pixels moved by DALI's operators instead of the
                      fused C++ operator (`executor="dali"`: the graph the GPU path runs)
    dali-randommix-chw
                      a stock pipeline that keeps its crop_mirror_normalize (dali-nomix-cmn) and
                      then mixes the normalised CHW float batch with random_mix (RandomMix)
    dali-randommix-all
                      RandomMix over every mixing method of the table, equal weights
    dali-<method>     the same with a single method, one per mixing method of the table
                      (dali_mix.methods.TABLE: dali-mixup, dali-cutmix, ...), to see which
                      costs what
    dali+timm-batch   dali-nomix + `timm.data.Mixup(mode="batch")` on the iterator's tensors
    dali+timm-elem    dali-nomix + `timm.data.Mixup(mode="elem")` on the iterator's tensors
    torchvision       ImageFolder + DataLoader(num_workers=threads), RandomResizedCrop + flip +
                      normalise (transforms.v2), RandomChoice([MixUp, CutMix]) in `collate_fn`

Method: every contender runs in its own subprocess (so its peak memory is its own), is built and
warmed up, then the parent runs `--rounds` rounds; in each round every contender in turn drains
what it prefetched while idle (untimed), then delivers `--batches` timed batches while the others
are idle; after its turn the parent waits until the contender's processes stop using CPU (its
prefetch queue is full again) before the next one starts. Each round starts with the next
contender, so that none always runs first. Contenders thus alternate round-robin
and never overlap. Reported: median images/s over rounds with min-max and IQR, the ratio to the
reference (median over median, and the paired per-round ratios), peak RSS and PSS of the
contender's whole process tree (sampled every 0.2 s) and the exact peak RSS of its main process;
and where each contender's CPU time goes during its timed batches: the CPU time per batch of each
thread of its main process (`thread_cpu_seconds`: the Python threads by their Python name, such as
MainThread and dali-mix-plan_0, the plan feed's background thread; DALI's by their own, such as
"[DALI][TP0]Exec" for its thread pool; DataLoader worker processes are not threads of it).

Also measured: the FMix mask production cost (`FMixMaskBank.make_bank` once per epoch, in a
background thread; and the planner's share of each batch), as a % of the RandomMix
pipeline's time per batch.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from dali_mix.methods import DEFAULT_CANDIDATES, MIX, MIX_METHODS, TABLE

REFERENCE = "dali-nomix"
_RANDOMMIX = {m: 1.0 for m in DEFAULT_CANDIDATES}
DALI_METHODS = {
    "dali-nomix": None,
    "dali-nomix-cmn": None,
    "dali-randommix": _RANDOMMIX,
    "dali-randommix-ops": _RANDOMMIX,
    "dali-randommix-chw": _RANDOMMIX,
    "dali-randommix-all": {m: 1.0 for m in MIX_METHODS},
    **{f"dali-{m.name}": {m.name: 1.0} for m in TABLE if m.role == MIX},
}
"""The dali-mix contenders and their recipes' methods: one per mixing method of the table."""
TIMM_MODES = {"dali+timm-batch": "batch", "dali+timm-elem": "elem"}
CONTENDERS = list(DALI_METHODS) + list(TIMM_MODES) + ["torchvision"]
DESCRIPTIONS = {
    "dali-nomix": "dali-mix pipeline, no mixing (reference)",
    "dali-nomix-cmn": "the same, normalised by DALI's crop_mirror_normalize",
    "dali-randommix": f"dali-mix RandomMix, {len(_RANDOMMIX)} equal candidates, per sample",
    "dali-randommix-ops": "the same plan on DALI's operators (executor='dali'; the GPU graph)",
    "dali-randommix-chw": "dali-nomix-cmn + RandomMix on its normalised CHW float output",
    "dali-randommix-all": f"dali-mix RandomMix over every mixing method ({len(MIX_METHODS)} equal "
                          f"candidates: {', '.join(MIX_METHODS)}), per sample",
    **{f"dali-{m.name}": f"dali-mix {m.name} only" for m in TABLE if m.role == MIX},
    "dali+timm-batch": "DALI no-mix + timm Mixup(mode='batch')",
    "dali+timm-elem": "DALI no-mix + timm Mixup(mode='elem')",
    "torchvision": "ImageFolder + DataLoader + v2 MixUp/CutMix in collate_fn",
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "throughput.json"
IMAGENET_TRAIN_IMAGES = 1_281_167
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# contenders (run inside a worker subprocess)
# ---------------------------------------------------------------------------------------------
def _cycle(loader):
    while True:
        yield from loader


def _dali_contender(name, cfg):
    """Iterator of (images, targets-or-labels) torch tensors, and its prefetch depth."""
    import dali_mix as dm
    from dali_mix.torch import Loader
    from pipelines.classification import train_pipeline
    from dali_mix.data.sources import resolve_source

    source = resolve_source(cfg["data"])
    num_classes = source.num_classes
    methods = DALI_METHODS.get(name)
    recipe = None if methods is None else dm.MixRecipe(methods=methods, num_classes=num_classes)
    if name == "dali-randommix-chw":
        pipe, output_map = _chw_pipeline(source, recipe.with_(layout="CHW"), cfg)
        loader = Loader(pipe, output_map, "Reader", num_classes=num_classes)
        return _cycle(loader), 2
    built = train_pipeline(source, batch_size=cfg["batch_size"], image_size=cfg["image_size"],
                           device="cpu", recipe=recipe, num_threads=cfg["threads"], seed=cfg["seed"],
                           executor="dali" if name.endswith(("-ops", "-cmn")) else "auto")
    loader = Loader(built.pipe, built.output_map, built.reader_name, num_classes=built.num_classes)
    it = _cycle(loader)
    if name in TIMM_MODES:
        from timm.data import Mixup

        mixup = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=TIMM_MODES[name], label_smoothing=0.0,
                      num_classes=num_classes)

        def mixed():
            for images, labels in it:
                yield mixup(images, labels)

        return mixed(), 2
    return it, 2


def _chw_pipeline(source, recipe, cfg):
    """dali-nomix-cmn's pipeline (decode, random resized crop, crop_mirror_normalize with a
    random flip) with `random_mix` on its output: what a user who keeps their
    crop_mirror_normalize gets. Returns the unbuilt pipeline and its output names."""
    from nvidia.dali import fn, pipeline_def, types

    import dali_mix as dm
    from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD
    from pipelines.classification import decode_train
    from pipelines.sources import read

    size = cfg["image_size"]

    @pipeline_def(batch_size=cfg["batch_size"], num_threads=cfg["threads"], device_id=None,
                  seed=cfg["seed"] * 1000 + 1)
    def pipe():
        encoded, labels = read(source, train=True, seed=cfg["seed"], name="Reader")
        images = decode_train(encoded, decoder="cpu", crop="random_resized", scale=(0.08, 1.0),
                              ratio=(3 / 4, 4 / 3), image_size=size)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                          mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                                          mirror=fn.random.coin_flip())
        return dm.random_mix(images, labels, recipe, image_size=size).outputs()

    return pipe(), dm.output_names(recipe)


def _torchvision_contender(cfg):
    import torch
    from torch.utils.data import DataLoader, RandomSampler, default_collate
    from torchvision import datasets
    from torchvision.transforms import v2

    size = cfg["image_size"]
    transform = v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=_MEAN, std=_STD),
    ])
    dataset = datasets.ImageFolder(cfg["data"], transform=transform)
    mix = v2.RandomChoice([v2.MixUp(num_classes=len(dataset.classes)),
                           v2.CutMix(num_classes=len(dataset.classes))])

    def collate_fn(batch):
        return mix(*default_collate(batch))

    g = torch.Generator().manual_seed(cfg["seed"])
    # one long epoch (ImageNet-like epochs are long): no worker restart or pipeline bubble per epoch
    sampler = RandomSampler(dataset, num_samples=len(dataset) * 10_000, generator=g)
    workers = cfg["threads"]
    loader = DataLoader(dataset, batch_size=cfg["batch_size"], sampler=sampler, drop_last=True,
                        num_workers=workers, collate_fn=collate_fn, persistent_workers=workers > 0,
                        prefetch_factor=2 if workers > 0 else None)
    return iter(loader), 2 * max(workers, 1)


def build_contender(name, cfg):
    if name in DALI_METHODS or name in TIMM_MODES:
        return _dali_contender(name, cfg)
    if name == "torchvision":
        return _torchvision_contender(cfg)
    raise ValueError(f"unknown contender {name!r}; choose from {CONTENDERS}")


def _build(name, cfg):
    """`build_contender`, or the builder ``cfg["builder"]`` names ("module:function", same
    signature), so that another benchmark (benchmarks.audio_throughput) reuses this harness."""
    if cfg.get("builder"):
        module, function = cfg["builder"].split(":")
        return getattr(importlib.import_module(module), function)(name, cfg)
    return build_contender(name, cfg)


class _Runner:
    """A built, warmed-up contender that delivers timed batches."""

    def __init__(self, name, cfg):
        t0 = time.perf_counter()
        self.it, self.depth = _build(name, cfg)
        for _ in range(cfg["warmup"]):
            next(self.it)
        self.build_s = time.perf_counter() - t0

    def run(self, batches):
        for _ in range(self.depth):  # what was prefetched while idle: not timed
            next(self.it)
        images = 0
        before = thread_cpu_seconds()
        t = time.perf_counter()
        for _ in range(batches):
            batch = next(self.it)
            images += int(batch[0].shape[0])
        seconds = time.perf_counter() - t
        after = thread_cpu_seconds()
        return {"images": images, "seconds": seconds,
                "thread_cpu_s": {k: v - before.get(k, 0.0) for k, v in after.items() if v > before.get(k, 0.0)}}


def _worker_main(argv=None):
    """Subprocess entry: build one contender, then obey run/stop commands (JSON lines)."""
    spec = json.loads((argv or sys.argv[1:])[0])
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def send(msg):
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    try:
        runner = _Runner(spec["name"], spec)
        send({"event": "ready", "build_s": runner.build_s, "drain": runner.depth})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "run":
                send(runner.run(cmd["batches"]))
            elif cmd["cmd"] == "stop":
                break
        send({"event": "done", "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    except BaseException as exc:  # report and exit: the parent names the contender
        send({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        proto.flush()
    os._exit(0)  # skip slow interpreter teardown of DALI / DataLoader workers


# ---------------------------------------------------------------------------------------------
# process-tree accounting (parent side)
# ---------------------------------------------------------------------------------------------
def _children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid):
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def thread_cpu_seconds() -> dict:
    """{thread name: CPU seconds spent so far} of this process's threads: Python threads by
    their Python name, the others (DALI's) by their OS name, the threads of one name summed (a
    thread that has ended is no longer counted). From the scheduler's nanosecond count
    (/proc/.../schedstat) where the kernel keeps it, else from the clock ticks of user and
    system time."""
    import threading

    python_names = {t.native_id: t.name for t in threading.enumerate()}
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    out = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as f:
                stat = f.read()
            try:
                with open(f"/proc/self/task/{task}/schedstat") as f:
                    seconds = int(f.read().split()[0]) * 1e-9
            except (OSError, IndexError, ValueError):
                fields = stat.rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) * tick
        except OSError:  # ended meanwhile
            continue
        name = python_names.get(int(task), stat[stat.index("(") + 1:stat.rindex(")")].strip())
        out[name] = out.get(name, 0.0) + seconds
    return out


def _cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def _memory_kb(pids):
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def wait_quiet(pid, interval=0.1, timeout=10.0, tolerance=1):
    """Wait until the process tree of `pid` uses (almost) no CPU for one `interval`: its
    prefetch queues are full again and it is idle. CPU time is counted in clock ticks."""
    deadline = time.monotonic() + timeout
    last = _cpu_ticks(process_tree(pid))
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = _cpu_ticks(process_tree(pid))
        if now - last <= tolerance:
            return
        last = now


class _MemorySampler(threading.Thread):
    def __init__(self, workers, period=0.2):
        super().__init__(daemon=True)
        self.workers, self.period = workers, period
        self.peak = {}
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            for w in list(self.workers):
                if w.proc.poll() is None:
                    rss, pss = _memory_kb(process_tree(w.proc.pid))
                    old = self.peak.get(w.name, (0, 0))
                    self.peak[w.name] = (max(old[0], rss), max(old[1], pss))
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join()


class Worker:
    """One contender in its own subprocess."""

    def __init__(self, name, cfg):
        self.name = name
        spec = dict(cfg, name=name)
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.throughput import _worker_main; _worker_main()",
             json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=root)
        self.ready = None
        self.maxrss_mb = None

    def _recv(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"contender {self.name!r} exited (code {self.proc.wait()}); see stderr")
        msg = json.loads(line)
        if msg.get("event") == "error":
            raise RuntimeError(f"contender {self.name!r} failed: {msg['error']}")
        return msg

    def _send(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def wait_ready(self):
        self.ready = self._recv()
        return self.ready

    def run(self, batches):
        self._send({"cmd": "run", "batches": batches})
        return self._recv()

    def stop(self):
        if self.proc.poll() is None:
            try:
                self._send({"cmd": "stop"})
                self.maxrss_mb = self._recv().get("maxrss_mb")
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Proc:
    def __init__(self):
        self.pid = os.getpid()

    def poll(self):
        return 0  # the memory sampler skips in-process contenders (not attributable)


class LocalWorker:
    """One contender in this process (`in_process=True`): faster start, no memory attribution."""

    def __init__(self, name, cfg):
        self.name, self.cfg = name, cfg
        self.proc = _Proc()
        self.runner = None
        self.ready = None
        self.maxrss_mb = None

    def wait_ready(self):
        self.runner = _Runner(self.name, self.cfg)
        self.ready = {"event": "ready", "build_s": self.runner.build_s, "drain": self.runner.depth}
        return self.ready

    def run(self, batches):
        return self.runner.run(batches)

    def stop(self):
        self.runner = None


# ---------------------------------------------------------------------------------------------
# measurement and reporting
# ---------------------------------------------------------------------------------------------
def _quantiles(values):
    v = sorted(values)
    if len(v) == 1:
        return v[0], v[0]
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], q[2]


def _mean_rounds(per_round: dict, workers: list) -> list:
    """Each round's mean over `workers` of their figures (`per_round`: id(worker) -> rounds)."""
    return [statistics.mean(v) for v in zip(*(per_round[id(w)] for w in workers))]


def summarise(values):
    q1, q3 = _quantiles(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "q1": q1, "q3": q3, "rounds": list(values)}


def measure(names, cfg, *, rounds, batches, parallel_build=False, in_process=False, log=print,
            reference=REFERENCE, processes=1):
    """Run the contenders round-robin; returns {name: result dict}.

    Each contender runs in its own subprocess, or in `processes` subprocesses (every one in
    every round; a contender's figure of a round is the mean over its processes, and
    "processes" lists each process's median): one process's speed can stay several percent
    off for its whole life, so only several processes average that out. By default the
    processes are built one after the other (warm-ups never overlap); `parallel_build` starts
    them all at once (faster start). `in_process` builds the contenders in this process
    instead, one each (fastest start, for smoke tests; no memory figures, since they would not
    be attributable). `reference`: the contender every result's "ratio_vs_reference" and
    "ratio_paired" are taken against (when it ran).
    """
    if processes < 1 or (in_process and processes != 1):
        raise ValueError(f"processes must be >= 1 (1 with in_process), got {processes}")
    workers = []
    sampler = _MemorySampler(workers)
    sampler.start()
    if in_process:  # DataLoader workers fork: create them before any DALI thread exists
        names = sorted(names, key=lambda n: n != "torchvision")
    names = [n for _ in range(processes) for n in names]  # interleaved: a b a b, rotated each round
    try:
        if parallel_build and not in_process:
            workers.extend(Worker(name, cfg) for name in names)
        for i, name in enumerate(names):
            if in_process:
                workers.append(LocalWorker(name, cfg))
            elif not parallel_build:
                workers.append(Worker(name, cfg))
            w = workers[i]
            info = w.wait_ready()
            wait_quiet(w.proc.pid)
            log(f"  ready: {name:<16} (built + {cfg['warmup']} warm-up batches in {info['build_s']:.1f} s)")
        per_round = {id(w): [] for w in workers}
        cpu_round = {id(w): [] for w in workers}
        thread_round = {id(w): [] for w in workers}  # {thread: ms per batch} of each turn
        for r in range(rounds):  # each round starts with the next contender: no fixed position
            for w in workers[r % len(workers):] + workers[:r % len(workers)]:
                ticks = None if in_process else _cpu_ticks(process_tree(w.proc.pid))
                res = w.run(batches)
                per_round[id(w)].append(res["images"] / res["seconds"])
                thread_round[id(w)].append({k: 1000 * v / batches for k, v in res.get("thread_cpu_s", {}).items()})
                wait_quiet(w.proc.pid)
                if ticks is not None:  # making this turn's batches, the refilled queue included
                    spent = _cpu_ticks(process_tree(w.proc.pid)) - ticks
                    cpu_round[id(w)].append(1000 * spent / os.sysconf("SC_CLK_TCK") / batches)
            log(f"  round {r + 1}/{rounds}: " + ", ".join(
                f"{n} {statistics.mean(per_round[id(w)][-1] for w in workers if w.name == n):.0f}"
                for n in dict.fromkeys(names)))
    finally:
        for w in workers:
            w.stop()
        sampler.stop()
    out = {}
    order = {n: i for i, n in enumerate(CONTENDERS)}
    for name in sorted(dict.fromkeys(names), key=lambda n: order.get(n, len(order))):
        mine = [w for w in workers if w.name == name]
        rss, pss = sampler.peak.get(name, (None, None))
        maxrss = [w.maxrss_mb for w in mine if w.maxrss_mb is not None]
        out[name] = {"description": DESCRIPTIONS.get(name, name),
                     "images_per_s": summarise(_mean_rounds(per_round, mine)),
                     "peak_rss_mb": None if rss is None else rss / 1024,
                     "peak_pss_mb": None if pss is None else pss / 1024,
                     "main_process_maxrss_mb": max(maxrss) if maxrss else None,
                     "build_s": mine[0].ready["build_s"]}
        if processes > 1:
            out[name]["processes"] = [statistics.median(per_round[id(w)]) for w in mine]
        out[name]["ms_per_batch"] = 1000 * cfg["batch_size"] / out[name]["images_per_s"]["median"]
        if all(cpu_round[id(w)] for w in mine):
            out[name]["cpu_ms_per_batch"] = summarise(_mean_rounds(cpu_round, mine))
        threads = sorted({t for w in mine for turn in thread_round[id(w)] for t in turn})
        if threads and not in_process:  # per thread: the median over rounds of the mean over processes
            out[name]["thread_cpu_ms_per_batch"] = {
                t: statistics.median(_mean_rounds({id(w): [turn.get(t, 0.0) for turn in thread_round[id(w)]]
                                                   for w in mine}, mine)) for t in threads}
    if reference in out:  # ratios to the reference contender, of medians and per round
        ref = out[reference]["images_per_s"]
        for res in out.values():
            ips = res["images_per_s"]
            paired = [a / b for a, b in zip(ips["rounds"], ref["rounds"])]
            res["ratio_vs_reference"] = ips["median"] / ref["median"]
            res["ratio_paired"] = {"median": statistics.median(paired), "min": min(paired), "max": max(paired)}
            if "cpu_ms_per_batch" in res and "cpu_ms_per_batch" in out[reference]:
                # the reference's CPU time per batch over this contender's: the throughput
                # ratio on a machine whose cores are all busy with the pipelines
                cpu, ref_cpu = res["cpu_ms_per_batch"]["rounds"], out[reference]["cpu_ms_per_batch"]["rounds"]
                if all(cpu):  # (a turn shorter than a clock tick counts no CPU time)
                    paired = [b / a for a, b in zip(cpu, ref_cpu)]
                    res["cpu_ratio_paired"] = {"median": statistics.median(paired), "min": min(paired),
                                               "max": max(paired)}
    return out


def fmix_mask_cost(cfg, randommix_ms_per_batch=None, *, repeats=3, calls=200):
    """Time `FMixMaskBank.make_bank` (once per epoch) and the planner per batch."""
    from dali_mix import FMixMaskBank, MixPlanner, MixRecipe, Normalization
    from dali_mix.execute import DaliExecutor, FusedExecutor, Geometry, fmix_runs
    from dali_mix.schedule import BatchClock
    from dali_mix.data.sources import resolve_source

    recipe = MixRecipe(num_classes=1)
    size, batch = cfg["image_size"], cfg["batch_size"]
    bank = FMixMaskBank((size, size), batch, bank_size=recipe.fmix_bank_size,
                        decay_power=recipe.fmix_decay_power, seed=0)
    make = []
    for e in range(repeats):
        t = time.perf_counter()
        bank.make_bank(e)
        make.append(time.perf_counter() - t)
    bank._pool.shutdown(wait=True)
    # the planner: a bank that is not refreshed, so no background bank disturbs the timing
    bank = FMixMaskBank((size, size), batch, bank_size=recipe.fmix_bank_size,
                        decay_power=recipe.fmix_decay_power, seed=0, refresh=False)
    bank.bank(0)  # bank ready
    # the planner and its encoding for each executor (fused: FMix as the bank's rank images;
    # dali, the GPU graph: FMix masks as paste runs), and the FMix part of the encoding
    recipe4 = MixRecipe(methods=DALI_METHODS["dali-randommix"], num_classes=1)
    planner = MixPlanner(recipe4, batch, (size, size), fmix_bank=bank)
    norm = Normalization(_MEAN, _STD)
    timings = {}
    for kind in ("fused", "dali"):
        enc = (FusedExecutor if kind == "fused" else DaliExecutor)(planner, Geometry("HWC", size, size, 3), norm)
        plan_ms, fmix_ms = [], []
        for i in range(1, calls + 1):
            t = time.perf_counter()
            plan = planner.plan(0, i)
            enc.encode(plan)
            plan_ms.append(1000 * (time.perf_counter() - t))
            t = time.perf_counter()
            if kind == "fused":
                enc.encode(plan)
            else:
                fmix_runs(planner, plan)
            fmix_ms.append(1000 * (time.perf_counter() - t))
        timings["ops" if kind == "dali" else kind] = (plan_ms, fmix_ms)
    bank._pool.shutdown(wait=True)
    source = resolve_source(cfg["data"])
    epoch_batches = max(1, (source.num_samples or 0) // batch)
    imagenet_batches = IMAGENET_TRAIN_IMAGES // batch

    def batches_per_bank(runs_per_epoch):
        """Batches one bank serves with the train pipeline's refresh policy (a new bank at the
        first epoch boundary after `min_refresh_batches` batches)."""
        clocked = FMixMaskBank((size, size), batch, bank_size=1, clock=BatchClock(runs_per_epoch))
        clocked._pool.shutdown(wait=False)
        return clocked.refresh_period() * runs_per_epoch

    res = {"mask_size": [size, size], "bank_size": recipe.fmix_bank_size,
           "make_bank_s": {"median": statistics.median(make), "min": min(make), "max": max(make)},
           "planner_ms": {"median": statistics.median(timings["fused"][0]),
                          "max": max(timings["fused"][0])},
           "planner_fmix_ms": {"median": statistics.median(timings["fused"][1]),
                               "max": max(timings["fused"][1])},
           "ops_planner_ms": {"median": statistics.median(timings["ops"][0]),
                              "max": max(timings["ops"][0])},
           "ops_planner_fmix_ms": {"median": statistics.median(timings["ops"][1]),
                                   "max": max(timings["ops"][1])},
           "batches_per_epoch_here": epoch_batches,
           "batches_per_epoch_imagenet": imagenet_batches,
           "batches_per_bank_here": batches_per_bank(epoch_batches),
           "batches_per_bank_imagenet": batches_per_bank(imagenet_batches)}
    if randommix_ms_per_batch:
        mk = 1000 * res["make_bank_s"]["median"]
        res["randommix_ms_per_batch"] = randommix_ms_per_batch
        res["planner_fmix_pct"] = 100 * res["planner_fmix_ms"]["median"] / randommix_ms_per_batch
        res["planner_pct"] = 100 * res["planner_ms"]["median"] / randommix_ms_per_batch
        res["make_bank_pct_per_batch_here"] = (100 * mk / res["batches_per_bank_here"]
                                               / randommix_ms_per_batch)
        res["make_bank_pct_per_batch_imagenet"] = (100 * mk / res["batches_per_bank_imagenet"]
                                                   / randommix_ms_per_batch)
        # the fast path (the RandomMix contender) pays the planner's FMix part per batch
        res["total_pct_here"] = res["planner_fmix_pct"] + res["make_bank_pct_per_batch_here"]
        res["total_pct_imagenet"] = res["planner_fmix_pct"] + res["make_bank_pct_per_batch_imagenet"]
        res["target_pct"] = 5.0
        res["meets_target"] = res["total_pct_here"] < 5.0
    return res


def machine_info(threads):
    info = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "dali_threads": threads}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
                break
    except OSError:
        pass
    for mod, key in (("nvidia.dali", "dali"), ("torch", "torch"), ("torchvision", "torchvision"),
                     ("timm", "timm")):
        try:
            info[key] = __import__(mod, fromlist=["__version__"]).__version__
        except ImportError:
            info[key] = None
    return info


# (contender, baseline, minimum ratio of their median images/s): the "one plan, two
# executors" issue's targets, each against the no-mixing pipeline the user would otherwise run
TARGETS = (
    ("dali-randommix", "dali-nomix", 0.95),       # fused executor vs fused normalisation
    ("dali-randommix-ops", "dali-nomix-cmn", 0.80),  # DALI's operators vs crop_mirror_normalize
    ("dali-randommix-chw", "dali-nomix-cmn", 0.85),  # CMN kept, then mixing its CHW float output
)


def check_targets(results):
    """The targets (`TARGETS`) whose contenders were both measured: the ratio of the medians,
    and the median of the per-round (paired) ratios; met when both reach the minimum."""
    t = {}
    for name, base, minimum in TARGETS:
        if name in results and base in results:
            a, b = results[name]["images_per_s"], results[base]["images_per_s"]
            ratio = a["median"] / b["median"]
            paired = statistics.median(x / y for x, y in zip(a["rounds"], b["rounds"]))
            t[f"{name} vs {base} >= {minimum:.2f}"] = {
                "value": ratio, "paired": paired, "met": min(ratio, paired) >= minimum}
    rm = results.get("dali-randommix")
    for peer in ("dali+timm-elem", "torchvision"):
        if rm is not None and peer in results:
            ratio = rm["images_per_s"]["median"] / results[peer]["images_per_s"]["median"]
            t[f"dali-randommix faster than {peer}"] = {"value": ratio, "met": ratio > 1.0}
    return t


def _mb(v):
    return "-" if v is None else f"{v:.0f}"


def format_table(results, cfg):
    lines = [f"{'contender':<16} {'images/s':>9} {'min-max':>11} {'IQR':>11} {'vs ref':>7} "
             f"{'paired':>13} {'ms/batch':>9} {'RSS MB':>7} {'PSS MB':>7}"]
    lines.append("-" * len(lines[0]))
    for name, r in results.items():
        ips = r["images_per_s"]
        ratio = f"{r['ratio_vs_reference']:.3f}" if "ratio_vs_reference" in r else "-"
        paired = (f"{r['ratio_paired']['min']:.2f}-{r['ratio_paired']['max']:.2f}"
                  if "ratio_paired" in r else "-")
        lines.append(f"{name:<16} {ips['median']:>9.0f} {ips['min']:>5.0f}-{ips['max']:<5.0f} "
                     f"{ips['q1']:>5.0f}-{ips['q3']:<5.0f} {ratio:>7} {paired:>13} {r['ms_per_batch']:>9.1f} "
                     f"{_mb(r['peak_rss_mb']):>7} {_mb(r['peak_pss_mb']):>7}")
    return "\n".join(lines)


def format_markdown(results):
    rows = ["| contender | images/s (median) | min-max | IQR | vs reference | paired ratio min-max | ms/batch | peak RSS MB | peak PSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        ips = r["images_per_s"]
        ratio = f"{r['ratio_vs_reference']:.3f}" if "ratio_vs_reference" in r else "-"
        paired = (f"{r['ratio_paired']['min']:.2f}-{r['ratio_paired']['max']:.2f}" if "ratio_paired" in r else "-")
        rows.append(f"| {name} | {ips['median']:.0f} | {ips['min']:.0f}-{ips['max']:.0f} | "
                    f"{ips['q1']:.0f}-{ips['q3']:.0f} | {ratio} | {paired} | {r['ms_per_batch']:.1f} | "
                    f"{_mb(r['peak_rss_mb'])} | {_mb(r['peak_pss_mb'])} |")
    return "\n".join(rows)


def _parse_only(text):
    if not text:
        return list(CONTENDERS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in CONTENDERS]
    if bad:
        raise ValueError(f"--only: unknown contender(s) {bad}; choose from {CONTENDERS}")
    return names


def _timm_available():
    try:
        import timm.data  # noqa: F401
        return True
    except ImportError:
        return False


def run(args) -> int:
    names = _parse_only(args.only)
    if threading.current_thread() is threading.main_thread():  # SIGTERM: stop the workers cleanly
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if any(n in TIMM_MODES for n in names) and not _timm_available():
        print("timm is not installed (pip install 'dali-mix[bench]'): skipping "
              + ", ".join(n for n in names if n in TIMM_MODES), file=sys.stderr)
        names = [n for n in names if n not in TIMM_MODES]
    if args.data is None:
        from dali_mix.data.imagenet_like import build_imagenet_like

        data = str(build_imagenet_like())
    else:
        data = str(Path(args.data).expanduser().absolute())
    threads = args.threads or os.cpu_count() or 1
    cfg = {"data": data, "batch_size": args.batch_size, "image_size": args.image_size,
           "threads": threads, "warmup": args.warmup, "seed": args.seed}
    print(f"benchmarks.throughput: {len(names)} contenders, {args.rounds} rounds x {args.batches} batches, "
          f"batch {args.batch_size}, {args.image_size}x{args.image_size}, {threads} threads, data {data}")
    results = measure(names, cfg, rounds=args.rounds, batches=args.batches,
                      parallel_build=args.parallel_build, in_process=args.in_process)
    fmix = None
    if not args.no_fmix_cost:
        ms = results.get("dali-randommix", {}).get("ms_per_batch")
        fmix = fmix_mask_cost(cfg, ms)
    report = {"config": dict(cfg, rounds=args.rounds, batches=args.batches, contenders=names,
                             in_process=bool(args.in_process)),
              "machine": machine_info(threads), "reference": REFERENCE, "contenders": results,
              "targets": check_targets(results), "fmix_mask_cost": fmix}
    print()
    print(format_table(results, cfg))
    if report["targets"]:
        print()
        for k, v in report["targets"].items():
            paired = f" (paired {v['paired']:.3f})" if "paired" in v else ""
            print(f"target {k}: {v['value']:.3f}{paired} -> {'met' if v['met'] else 'MISSED'}")
    if fmix is not None:
        print()
        print(f"FMix mask bank ({fmix['bank_size']} masks {size_str(fmix)}): make_bank "
              f"{fmix['make_bank_s']['median']:.2f} s per bank; planner "
              f"{fmix['planner_ms']['median']:.2f} ms per batch, of which FMix masks "
              f"{fmix['planner_fmix_ms']['median']:.2f} ms (on DALI's operators, masks as paste "
              f"runs: {fmix['ops_planner_ms']['median']:.2f} and "
              f"{fmix['ops_planner_fmix_ms']['median']:.2f} ms)")
        if "planner_pct" in fmix:
            print(f"  as % of a RandomMix batch ({fmix['randommix_ms_per_batch']:.1f} ms): FMix in the "
                  f"planner {fmix['planner_fmix_pct']:.2f}% (whole planner {fmix['planner_pct']:.2f}%), "
                  f"make_bank amortised over the {fmix['batches_per_bank_here']} batches a bank "
                  f"serves here ({fmix['batches_per_epoch_here']} per epoch) "
                  f"{fmix['make_bank_pct_per_batch_here']:.2f}%, over an ImageNet epoch "
                  f"{fmix['make_bank_pct_per_batch_imagenet']:.4f}% -> total {fmix['total_pct_here']:.2f}% "
                  f"here, {fmix['total_pct_imagenet']:.2f}% on ImageNet (target < 5%)")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0


def size_str(fmix):
    return f"{fmix['mask_size'][0]}x{fmix['mask_size'][1]}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="ImageFolder root (default: build_imagenet_like())")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    p.add_argument("--batches", type=int, default=30, help="timed batches per contender per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches after building")
    p.add_argument("--threads", type=int, default=None,
                   help="DALI threads / DataLoader workers (default: number of cores)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(CONTENDERS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (JSON)")
    p.add_argument("--parallel-build", action="store_true",
                   help="build all contenders at once (faster start; for smoke tests)")
    p.add_argument("--in-process", action="store_true",
                   help="run all contenders in this process (fast start, no memory figures; smoke tests)")
    p.add_argument("--no-fmix-cost", action="store_true", help="skip the FMix mask cost measurement")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
