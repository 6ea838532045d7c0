"""Digests of fixed-seed batches of every existing recipe kind on both executors.

`python tests/golden/make_golden.py` (from the repository root) writes tests/golden/golden.json;
tests/test_golden.py recomputes the same digests and compares them, so a refactoring that moves
one pixel, one label weight or one lambda of any of these recipes fails. Each case runs
`random_mix` (or `mixmo_inputs`) over random images from a fixed seed for a few batches and
records, per output, the sha256 of its bytes (with dtype and shape), and the lambdas as numbers.
Regenerate only for an intended change of behaviour, and say so in the commit. The plans are
drawn one per batch (`dali_mix.plan.CHUNK = 1`).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dali_mix import plan  # noqa: E402 (after the path)

GOLDEN = Path(__file__).with_name("golden.json")
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
N, H, W = 10, 24, 20
BATCHES = 3
PAIR = ["mixup", "cutmix", "resizemix", "fmix"]

# name -> (recipe fields, input kind); input kinds: "normalize" (uint8 HWC + Normalization),
# "uint8" (uint8 HWC mixed as uint8), "chw" (normalised float32 CHW), "float16" (normalised to
# float16)
CASES: dict[str, tuple[dict, str]] = {
    **{f"{m}": (dict(methods=[m]), "normalize") for m in PAIR + ["cutout", "random_erasing"]},
    "randommix": (dict(methods=PAIR), "normalize"),
    "randommix_pair": (dict(methods=PAIR, mode="pair"), "normalize"),
    "randommix_batch": (dict(methods=PAIR, mode="batch"), "normalize"),
    "randommix_prob": (dict(methods={"mixup": 2.0, "cutmix": 1.0, "fmix": 1.0}, prob=0.6,
                            label_smoothing=0.1), "normalize"),
    "after_cutout": (dict(methods=["mixup", "cutmix"], after=["cutout"], cutout_holes=2,
                          cutout_length=6), "normalize"),
    "after_erasing": (dict(methods=["cutmix", "resizemix"], after=["random_erasing"],
                           erasing_prob=0.9), "normalize"),
    "after_erasing_const": (dict(methods=["mixup"], after=["random_erasing"], erasing_prob=0.9,
                                 erasing_fill=0.5, erasing_log_aspect=True), "normalize"),
    "erase_candidates": (dict(methods=["cutout", "random_erasing", "cutmix"], mode="batch"),
                         "normalize"),
    "sparse": (dict(methods=PAIR, target="sparse"), "normalize"),
    "chw": (dict(methods=PAIR, layout="CHW", after=["random_erasing"]), "chw"),
    "uint8": (dict(methods=PAIR, after=["random_erasing"]), "uint8"),
    "float16": (dict(methods=PAIR), "float16"),
    "cutmix_minmax": (dict(methods=["cutmix"], cutmix_minmax=(0.2, 0.7)), "normalize"),
    "timm_batch": ("timm", "normalize"),
    "none": (dict(methods=[]), "normalize"),
}
EXECUTORS = ("fused", "dali")


def digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:24]


def _batch(tl) -> np.ndarray:
    from nvidia.dali.backend import TensorListCPU

    if not isinstance(tl, TensorListCPU):
        tl = tl.as_cpu()
    return np.stack([np.asarray(tl[i]) for i in range(len(tl))])


def images_for(kind: str, seed: int = 7) -> tuple[list, str]:
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(N)]
    if kind == "chw":
        return [np.ascontiguousarray(((i - 120.0) / 60.0).astype(np.float32).transpose(2, 0, 1))
                for i in imgs], "CHW"
    return imgs, "HWC"


def recipe_for(name: str):
    import dali_mix as dm

    fields, _ = CASES[name]
    if fields == "timm":
        return dm.MixRecipe.from_timm(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=N,
                                      label_smoothing=0.1, fmix_bank_size=8)
    return dm.MixRecipe(**{"num_classes": N, "fmix_bank_size": 8, **fields})


def run_case(name: str, executor: str) -> dict:
    """Digests of BATCHES batches of case `name` on `executor`."""
    from nvidia.dali import fn, pipeline_def, types

    import dali_mix as dm

    _, kind = CASES[name]
    recipe = recipe_for(name)
    images, layout = images_for(kind)

    @pipeline_def(batch_size=N, num_threads=1, device_id=None, seed=11)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        y = fn.external_source(source=lambda: [np.array([i % 7], np.int32) for i in range(N)],
                               batch=True)
        norm = None
        if kind in ("normalize", "float16"):
            norm = dm.Normalization(MEAN, STD, mirror=fn.random.coin_flip(seed=3),
                                    dtype=types.FLOAT16 if kind == "float16" else types.FLOAT)
        out = dm.random_mix(x, y, recipe, image_size=(H, W), normalize=norm, executor=executor)
        return (*out.outputs(), out.lam, out.method, out.labels_b)

    p = pipe()
    p.build()
    names = dm.output_names(recipe) + ["lam", "method", "labels_b"]
    res = []
    for _ in range(BATCHES):
        arrays = [_batch(t) for t in p.run()]
        entry = {n: digest(a) for n, a in zip(names, arrays)}
        entry["lam_values"] = [float(v) for v in arrays[names.index("lam")].reshape(-1)]
        res.append(entry)
    return res


def run_mixmo() -> list:
    """Digests of MixMo inputs (official boxes, and boxes inside with repetition)."""
    from nvidia.dali import fn, pipeline_def

    from dali_mix.mixmo import mixmo_inputs

    images, _ = images_for("chw")
    out = []
    for kw in (dict(num_classes=N), dict(box="inside", batch_repetition=2, per_sample=True)):
        @pipeline_def(batch_size=N, num_threads=1, device_id=None, seed=13)
        def pipe():
            x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
            y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(N)],
                                   batch=True)
            mm = mixmo_inputs(x, y, layout="CHW", **kw)
            return (*mm.outputs(), mm.kappa_drawn, mm.swapped)

        p = pipe()
        p.build()
        for _ in range(BATCHES):
            arrays = [_batch(t) for t in p.run()]
            out.append([digest(a) for a in arrays])
    return out


def compute() -> dict:
    return {"cases": {f"{name}/{ex}": run_case(name, ex) for name in CASES for ex in EXECUTORS},
            "mixmo": run_mixmo()}


def main() -> int:
    plan.CHUNK = 1  # the digests are of plans drawn one per batch (tests/test_golden.py)
    GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
