"""The two executors of one plan: the fused CPU operator and DALI's operators (the graph GPU
users get) give the same batch on the CPU, and the fused one falls back to DALI's operators,
with a warning naming the cause, where it cannot be built."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm
from dali_mix import native

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@pytest.mark.parametrize("methods", [["mixup"], ["cutmix"], ["resizemix"], ["fmix"], ["ricap"],
                                     ["mosaic"], ["cutout"], ["random_erasing"],
                                     ["mixup", "cutmix", "resizemix", "fmix"],
                                     ["mixup", "cutmix", "resizemix", "fmix", "ricap", "mosaic"]])
@pytest.mark.parametrize("kind", ["normalize", "float16", "uint8", "chw", "grey_chw"])
def test_both_executors_give_the_same_batch(methods, kind):
    """One plan (same seed) on both executors: same methods, lambdas and targets, pixels equal
    up to float rounding: uint8 HWC normalised to float32 or float16, uint8 HWC mixed as uint8,
    normalised float CHW, and one-channel float CHW (a log-mel spectrogram; DALI's `+` broke
    Mixup's 1x1 partner crop there)."""
    native.load()
    n, s = 12, 32
    rng = np.random.default_rng(3)
    layout = "CHW" if kind in ("chw", "grey_chw") else "HWC"
    channels = 1 if kind == "grey_chw" else 3
    images = [rng.integers(0, 256, (s, s, channels), dtype=np.uint8) for _ in range(n)]
    if layout == "CHW":
        images = [np.ascontiguousarray(((i - 120.0) / 60.0).astype(np.float32).transpose(2, 0, 1))
                  for i in images]
    dtype = types.FLOAT16 if kind == "float16" else types.FLOAT
    recipe = dm.MixRecipe(methods=methods, num_classes=n, fmix_bank_size=8, label_smoothing=0.1,
                          erasing_prob=0.8, after=["cutout"] if len(methods) > 1 else (), layout=layout,
                          channels=channels)

    def build(executor):
        @pipeline_def(batch_size=n, num_threads=2, device_id=None, seed=5)
        def pipe():
            x = fn.external_source(source=lambda: images, batch=True, layout=layout)
            y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)],
                                   batch=True)
            norm = None if kind in ("uint8", "chw", "grey_chw") else \
                dm.Normalization(MEAN, STD, mirror=fn.random.coin_flip(), dtype=dtype)
            out = dm.random_mix(x, y, recipe, image_size=s, normalize=norm, executor=executor)
            return out.images, out.targets, out.lam, out.method
        p = pipe()
        p.build()
        return p

    fused, ops = build("fused"), build("dali")
    methods_seen = set()
    for _ in range(4):
        a = [np.stack([np.asarray(t[i]) for i in range(n)]) for t in fused.run()]
        b = [np.stack([np.asarray(t[i]) for i in range(n)]) for t in ops.run()]
        for k in (3, 2, 1):
            np.testing.assert_array_equal(a[k], b[k])
        want = {"float16": np.float16, "uint8": np.uint8}.get(kind, np.float32)
        shape = (n, s, s, 3) if kind == "uint8" else (n, channels, s, s)
        assert a[0].dtype == b[0].dtype == want and a[0].shape == shape
        tol = {"float16": 2e-3, "uint8": 1}.get(kind, 1e-4)  # uint8: a blend at .5 may round apart
        np.testing.assert_allclose(a[0].astype(np.float64), b[0].astype(np.float64), rtol=tol, atol=tol)
        methods_seen |= set(a[3].tolist())
        if methods[0] not in ("cutout", "random_erasing"):
            assert np.any(a[2] < 1)
    assert methods_seen == set(range(len(methods)))


@pytest.mark.parametrize("size", [(40, 101), (96, 100), (260, 260)])
def test_fused_fmix_masks_as_one_array_or_per_sample_give_the_same_batch(size, monkeypatch):
    """The fused operator's FMix ranks handed as one batch array (masks of at most
    `DENSE_MASK_PIXELS` pixels; the samples without FMix get k = H * W) or as per-sample arrays
    (larger masks; an empty one without FMix): the same images, bit for bit, on one-channel
    spectrogram-sized and larger float CHW images, and FMix took exactly the planned share of
    partner pixels. 260 x 260: int32 ranks (more than 65536 pixels), whose empty masks must be
    int32 too (uint16 ones made the external source refuse the batch)."""
    from dali_mix import execute

    native.load()
    n, (h, w) = 16, size
    rng = np.random.default_rng(4)
    # sample i's values in [4i, 4i + 1): no pixel of one sample equals one of another
    images = [(4.0 * i + rng.random((1, h, w))).astype(np.float32) for i in range(n)]
    recipe = dm.MixRecipe(methods=["mixup", "fmix", "cutmix"], num_classes=n, fmix_bank_size=8,
                          layout="CHW", channels=1)

    def run(dense_pixels):
        monkeypatch.setattr(execute, "DENSE_MASK_PIXELS", dense_pixels)

        @pipeline_def(batch_size=n, num_threads=2, device_id=None, seed=6)
        def pipe():
            x = fn.external_source(source=lambda: images, batch=True, layout="CHW")
            y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)], batch=True)
            out = dm.random_mix(x, y, recipe, image_size=(h, w), executor="fused")
            return out.images, out.method, out.lam
        p = pipe()
        p.build()
        return [[np.stack([np.asarray(t[i]) for i in range(n)]) for t in p.run()] for _ in range(3)]

    dense, per_sample = run(h * w), run(0)
    fmix = recipe.candidates.index("fmix")
    for (a, method, lam), (b, method_b, _) in zip(dense, per_sample):
        np.testing.assert_array_equal(method, method_b)
        np.testing.assert_array_equal(a, b)
        for i in np.flatnonzero((method == fmix) & (lam < 1)):  # partner pixels where the mask says
            own = a[i] == images[i]
            assert own.mean() == pytest.approx(float(lam[i]), abs=1e-6)
    assert any(np.any(m == fmix) for _, m, _ in dense)


def test_without_a_compiler_random_mix_warns_and_uses_dali_operators(tmp_path):
    """A machine without g++: the build fails with the cause, random_mix warns once and gives
    a batch on DALI's operators; executor='fused' raises instead."""
    script = textwrap.dedent("""
        import warnings
        import numpy as np
        from nvidia.dali import fn, pipeline_def
        import dali_mix as dm
        from dali_mix import native

        ok, why = native.available()
        assert not ok and "no C++ compiler" in why, why
        recipe = dm.MixRecipe(methods=["cutmix", "mixup"], num_classes=4)

        def build(executor):
            @pipeline_def(batch_size=4, num_threads=1, device_id=None, seed=3)
            def pipe():
                x = fn.external_source(source=lambda: [np.full((8, 8, 3), 10 * i, np.uint8)
                                                       for i in range(4)], batch=True, layout="HWC")
                y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(4)],
                                       batch=True)
                norm = dm.Normalization((0.0,) * 3, (1.0,) * 3)
                return dm.random_mix(x, y, recipe, image_size=8, normalize=norm,
                                     executor=executor).outputs()
            return pipe()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = build("auto")
        msgs = [str(w.message) for w in caught if "fused CPU operator is not available" in str(w.message)]
        assert len(msgs) == 1 and "no C++ compiler" in msgs[0], msgs
        p.build()
        images, targets = p.run()
        assert np.allclose(np.asarray(targets.as_tensor()).sum(1), 1.0)
        try:
            build("fused")
        except Exception as e:  # NativeBuildError (DALI's tracing may wrap it)
            assert "no C++ compiler" in str(e), e
        else:
            raise AssertionError("executor='fused' did not raise")
        print("ok")
    """)
    env = dict(os.environ, DALI_MIX_NATIVE_DIR=str(tmp_path / "empty"), CXX="no-such-compiler-xyz")
    path = tmp_path / "no_compiler.py"
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
    assert not any((tmp_path / "empty").glob("*.so*"))  # nothing half-written left behind


@pytest.mark.parametrize("executor", ["fused", "dali"])
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_erasing_values_follow_the_images_dtype(executor, layout, dtype):
    """Random Erasing's random fill: uniform pixel values 0-255 on integer images, N(0, 1) on
    float (normalised) images, whatever the layout, on both executors."""
    native.load()
    n, s = 16, 32
    value = 7 if dtype == np.uint8 else 0.25
    shape = (s, s, 3) if layout == "HWC" else (3, s, s)
    images = [np.full(shape, value, dtype) for _ in range(n)]
    recipe = dm.MixRecipe(methods=["random_erasing"], num_classes=n, erasing_prob=1.0, layout=layout)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=3)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)], batch=True)
        return dm.random_mix(x, y, recipe, image_size=s, executor=executor).images

    p = pipe()
    p.build()
    out, = p.run()
    x = np.stack([np.asarray(out[i]) for i in range(n)])
    assert x.dtype == dtype
    noise = x[x != value].astype(np.float64)
    assert noise.size > 1000
    if dtype == np.uint8:  # uniform over 0..255: mean 127.5, sd 73.9
        assert abs(noise.mean() - 127.5) < 5 and abs(noise.std() - 73.9) < 4 and noise.max() > 250
    else:
        assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05
