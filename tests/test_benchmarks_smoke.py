"""Smoke test of the throughput benchmark: tiny settings, checks the JSON, never the speed."""
from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import throughput
from dali_mix.data.imagenet_like import build_imagenet_like

HAVE_TIMM = importlib.util.find_spec("timm") is not None


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return build_imagenet_like(tmp_path_factory.mktemp("bench") / "imagenet-like", num_images=64,
                               num_classes=4)


def test_throughput_smoke(tiny_data, tmp_path):
    names = ["dali-nomix", "dali-randommix", "torchvision"]
    if HAVE_TIMM:
        names += ["dali+timm-batch", "dali+timm-elem"]
    out = tmp_path / "throughput.json"
    parser = throughput.argparse.ArgumentParser()
    throughput.add_arguments(parser)
    args = parser.parse_args([
        "--data", str(tiny_data), "--batch-size", "8", "--image-size", "64", "--rounds", "2",
        "--batches", "2", "--warmup", "1", "--threads", "1", "--only", ",".join(names),
        "--in-process", "--json", str(out)])
    assert throughput.run(args) == 0

    report = json.loads(out.read_text())
    results = report["contenders"]
    assert set(results) == set(names)
    ref = results[throughput.REFERENCE]["images_per_s"]["median"]
    for name, r in results.items():
        ips = r["images_per_s"]
        assert len(ips["rounds"]) == 2
        assert all(v > 0 for v in ips["rounds"]), name
        assert ips["min"] <= ips["median"] <= ips["max"]
        assert r["ratio_vs_reference"] == pytest.approx(ips["median"] / ref)
        assert r["ms_per_batch"] == pytest.approx(1000 * 8 / ips["median"])
    assert results[throughput.REFERENCE]["ratio_vs_reference"] == pytest.approx(1.0)
    targets = report["targets"]
    rm = results["dali-randommix"]["images_per_s"]["median"]
    fused = targets["dali-randommix vs dali-nomix >= 0.95"]
    assert fused["value"] == pytest.approx(rm / ref)
    rounds = [a / b for a, b in zip(results["dali-randommix"]["images_per_s"]["rounds"],
                                    results[throughput.REFERENCE]["images_per_s"]["rounds"])]
    assert fused["paired"] == pytest.approx(sorted(rounds)[0] / 2 + sorted(rounds)[1] / 2)
    assert fused["met"] == (min(fused["value"], fused["paired"]) >= 0.95)
    assert targets["dali-randommix faster than torchvision"]["value"] == pytest.approx(
        rm / results["torchvision"]["images_per_s"]["median"])
    fmix = report["fmix_mask_cost"]
    assert fmix["make_bank_s"]["median"] > 0 and fmix["planner_pct"] >= 0
    assert 0 < fmix["planner_fmix_ms"]["median"] <= fmix["planner_ms"]["max"]
    assert report["machine"]["cpu_count"] >= 1


def test_benchmarks_run_from_the_checkout_not_from_the_installed_cli():
    """`dali-mix` has no bench sub-command (the benchmarks are not installed); the checkout's
    `python -m benchmarks.throughput` parses its arguments."""
    from dali_mix_tools.cli import SUBCOMMANDS, build_parser

    assert "bench" not in SUBCOMMANDS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench"])
    parser = throughput.argparse.ArgumentParser()
    throughput.add_arguments(parser)
    assert parser.parse_args(["--only", "dali-nomix", "--rounds", "1"]).rounds == 1


def test_only_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown contender"):
        throughput._parse_only("dali-nomix,nope")


def test_operator_cost_smoke(tmp_path):
    from benchmarks import operator_cost

    out = tmp_path / "operator_cost.json"
    assert operator_cost.main(["--batch-size", "4", "--image-size", "32", "--threads", "1",
                               "--rounds", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"crop_mirror_normalize", "fused, no mixing", "fused, mixup",
                        "fused, cutmix", "fused, resizemix", "fused, fmix",
                        "fused, RandomMix (4 equal)"}
    assert all(r["cpu_ms"] > 0 and r["wall_ms"] > 0 for r in res.values())


def test_mix_parts_smoke():
    """benchmarks.mix_parts on tiny settings: every variant timed each round, and the replayed
    random_mix repeats its batches every 4 steps while the drawn one does not."""
    import numpy as np

    from benchmarks import mix_parts

    pipes, planner, fused, targets = mix_parts._pipelines(8, (1, 12, 20), 4, 1)
    assert set(pipes) == set(mix_parts.VARIANTS)

    def images(p):
        return np.stack([np.asarray(t) for t in p.run()[0]])
    replayed = [images(pipes["random_mix, plan replayed"]) for _ in range(8)]
    drawn = [images(pipes["random_mix"]) for _ in range(8)]
    for k in range(4):
        np.testing.assert_array_equal(replayed[k], replayed[k + 4])
    assert any(not np.array_equal(drawn[k], drawn[k + 4]) for k in range(4))
    res = mix_parts.measure(batch=8, shape=(1, 12, 20), classes=4, threads=1, rounds=2, batches=2)
    assert all(len(v["cpu_ms"]) == 2 and min(v["wall_ms"]) > 0 for v in res["variants"].values())
    assert res["python"]["plan_us"] > 0


def test_several_processes_per_contender_are_averaged():
    """`processes=2`: two subprocesses per contender, each run every round; the contender's
    rounds are their means and "processes" their medians."""
    cfg = {"builder": "tests.fake_contender:build", "warmup": 1, "batch_size": 4,
           "seconds": {"slow": 0.02, "fast": 0.01}}
    res = throughput.measure(["slow", "fast"], cfg, rounds=3, batches=4, reference="slow",
                             processes=2, log=lambda *a: None)
    for name in ("slow", "fast"):
        r = res[name]
        assert len(r["processes"]) == 2 and len(r["images_per_s"]["rounds"]) == 3
        assert min(r["processes"]) <= r["images_per_s"]["median"] * 1.2
        assert r["images_per_s"]["median"] <= max(r["processes"]) * 1.2
        assert len(r["cpu_ms_per_batch"]["rounds"]) == 3
    # 4 images per batch every 0.02 s is at most 200 images/s; twice as fast at 0.01 s
    assert res["slow"]["images_per_s"]["median"] <= 200
    assert 1.3 < res["fast"]["ratio_vs_reference"] < 2.2
    with pytest.raises(ValueError, match="processes must be >= 1"):
        throughput.measure(["slow"], cfg, rounds=1, batches=1, processes=0)


def test_thread_cpu_seconds_names_python_threads_and_counts_their_cpu_time():
    """A Python thread's CPU time goes to its Python name (not to the process's OS name), and
    a thread that only waits gets next to none."""
    import threading
    import time

    burnt, done = threading.Event(), threading.Event()

    def burn():
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        burnt.set()
        done.wait()

    idle = threading.Thread(target=done.wait, name="idle-thread")
    busy = threading.Thread(target=burn, name="busy-thread")
    idle.start()
    busy.start()
    burnt.wait()
    seconds = throughput.thread_cpu_seconds()
    done.set()
    busy.join()
    idle.join()
    assert 0.28 <= seconds["busy-thread"] <= 0.5
    assert seconds.get("idle-thread", 0.0) < 0.02
    assert "MainThread" in seconds
