"""The fused C++ operator `dali_mix.native.mix_normalize`: values against a numpy reference, the
same images as the planned path on DALI's operators, clear errors on bad input, the build cache
and the fallback when it cannot be built."""
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

MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def loaded():
    native.load()  # fails with the cause when it cannot be built


def nn_rows(n, size):
    """Source rows/columns of a nearest-neighbour shrink from `size` to `n` pixels, as DALI's
    CPU resize picks them (float32: columns floor((x + 0.5) * s), rows accumulated)."""
    s = np.float32(size) / np.float32(n)
    cols = np.floor((np.arange(n, dtype=np.float32) + np.float32(0.5)) * s).astype(int)
    rows, v = [], np.float32(0.5) * s
    for _ in range(n):
        rows.append(int(np.floor(v)))
        v = np.float32(v + s)
    return np.minimum(rows, size - 1), np.minimum(cols, size - 1)


def reference(images, perm, blend, boxes, patch, mask, mask_params, mirror, mean, std):
    """The operator's definition in float64 numpy: (N, C, H, W)."""
    out = []
    for i, img in enumerate(images):
        own, other = img.astype(np.float64), images[perm[i]].astype(np.float64)
        px = blend[i] * own + (1.0 - blend[i]) * other
        for y, x, h, w in boxes[i]:
            px[y:y + h, x:x + w] = other[y:y + h, x:x + w]
        if mask[i].size:
            k, flip_y, flip_x = mask_params[i]
            ranks = mask[i].reshape(img.shape[:2])[::-1 if flip_y else 1, ::-1 if flip_x else 1]
            px[ranks >= k] = other[ranks >= k]
        y, x, h, w = patch[i]
        if h and w:
            rows, _ = nn_rows(h, img.shape[0])
            _, cols = nn_rows(w, img.shape[1])
            px[y:y + h, x:x + w] = other[rows][:, cols]
        norm = (px - np.asarray(mean)) / np.asarray(std)
        if mirror[i]:
            norm = norm[:, ::-1]
        out.append(norm.transpose(2, 0, 1))
    return np.stack(out)


def run_op(images, perm, blend, boxes, patch, mask, mask_params, mirror, *, mean, std,
           dtype=types.FLOAT):
    n = len(images)

    @pipeline_def(batch_size=n, num_threads=2, device_id=None)
    def pipe():
        def src(values, dt):
            return fn.external_source(source=lambda: [np.asarray(v, dt) for v in values], batch=True)
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        m = src(mirror, np.int32)
        return native.mix_normalize(x, src(perm, np.int32), src(blend, np.float32),
                                    src(boxes, np.int32), src(patch, np.int32),
                                    src(mask, mask[0].dtype), src(mask_params, np.int32),
                                    mean=mean, std=std, mirror=m, dtype=dtype)

    p = pipe()
    p.build()
    out, = p.run()
    return np.stack([np.asarray(out[i]) for i in range(n)]), out.layout()


def random_case(n=6, h=10, w=13, c=3, seed=0, rank_dtype=np.uint16):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, w, c), dtype=np.uint8) for _ in range(n)]
    perm = rng.permutation(n)
    blend = np.where(np.arange(n) % 3 == 0, rng.uniform(size=n), 1.0)
    boxes = [np.zeros((0, 4), np.int32) for _ in range(n)]
    boxes[1] = np.array([[2, 3, 4, 5], [0, 0, 1, w], [7, 10, 3, 3]], np.int32)  # CutMix / FMix rows
    boxes[4] = np.array([[0, 0, h, w]], np.int32)  # the whole image
    boxes[3] = np.array([[1, 1, 3, 4]], np.int32)  # on top of a blend (no plan does this)
    patch = np.zeros((n, 4), np.int32)
    patch[2] = (1, 2, 7, 9)  # ResizeMix
    patch[5] = (0, 0, 1, 1)
    patch[0] = (4, 5, 5, 6)  # on top of a blend and a mask
    mask = [np.zeros((0, 0, 1), rank_dtype) for _ in range(n)]  # FMix
    params = np.zeros((n, 3), np.int32)
    for i, k, flips in ((3, 50, (0, 0)), (4, 30, (1, 1)), (5, 0, (0, 1)), (0, 77, (1, 0))):
        mask[i] = rng.permutation(h * w).reshape(h, w, 1).astype(rank_dtype)
        params[i] = (k, *flips)
    mirror = np.arange(n) % 2
    return images, perm, blend, boxes, patch, mask, params, mirror


@pytest.mark.parametrize("c, rank_dtype", [(1, np.uint16), (3, np.uint16), (3, np.int32),
                                           (4, np.uint16)])
def test_matches_the_reference(c, rank_dtype):
    case = random_case(c=c, rank_dtype=rank_dtype)
    mean, std = MEAN[:c] + (100.0,) * (c - 3), STD[:c] + (50.0,) * (c - 3)
    got, layout = run_op(*case, mean=mean, std=std)
    assert got.dtype == np.float32 and got.shape == (6, c, 10, 13) and layout == "CHW"
    np.testing.assert_allclose(got, reference(*case, mean, std), rtol=1e-5, atol=1e-5)


def test_float16_output():
    case = random_case(seed=1)
    got, _ = run_op(*case, mean=MEAN, std=STD, dtype=types.FLOAT16)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float64), reference(*case, MEAN, STD), rtol=2e-3,
                               atol=2e-3)


def test_one_value_of_mean_and_std_applies_to_every_channel():
    case = random_case(seed=2)
    got, _ = run_op(*case, mean=128.0, std=[64.0])  # a scalar or a one-element list
    np.testing.assert_allclose(got, reference(*case, [128.0] * 3, [64.0] * 3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("methods", [["mixup"], ["cutmix"], ["resizemix"], ["fmix"],
                                     ["mixup", "cutmix", "resizemix", "fmix"]])
def test_same_images_as_the_planned_path_on_dali_operators(methods):
    """Fused and DALI-operator graphs of one plan (same seed) give the same batch: the GPU path
    runs the latter, so this ties the two together."""
    n, s = 12, 32
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for _ in range(n)]
    recipe = dm.MixRecipe(methods=methods, num_classes=n, layout="HWC", fmix_bank_size=8,
                          label_smoothing=0.1)

    def build(fused):
        @pipeline_def(batch_size=n, num_threads=2, device_id=None, seed=5, enable_conditionals=True)
        def pipe():
            x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
            y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(n)],
                                   batch=True)
            norm = dm.Normalization(MEAN, STD, mirror=fn.random.coin_flip())
            out = dm.random_mix(x, y, recipe, image_size=s, normalize=norm, fused=fused)
            return out.images, out.targets, out.lam, out.method
        p = pipe()
        p.build()
        return p

    fused, ops = build(True), build(False)
    methods_seen = set()
    for _ in range(4):
        a = [np.stack([np.asarray(t[i]) for i in range(n)]) for t in fused.run()]
        b = [np.stack([np.asarray(t[i]) for i in range(n)]) for t in ops.run()]
        np.testing.assert_array_equal(a[3], b[3])
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[0].dtype == b[0].dtype == np.float32 and a[0].shape == (n, 3, s, s)
        np.testing.assert_allclose(a[0], b[0], rtol=0, atol=1e-4)
        methods_seen |= set(a[3].tolist())
        assert np.any(a[2] < 1)
    assert methods_seen == set(range(len(methods)))


def run_bad(images, perm, blend, boxes, patch, match, mask=None):
    n = len(images)
    if mask is None:
        mask = [np.zeros((0, 0, 1), np.uint16)] * n
    with pytest.raises(RuntimeError, match=match):
        run_op(images, perm, blend, boxes, patch, mask, np.zeros((n, 3), np.int32),
               np.zeros(n, np.int32), mean=MEAN, std=STD)


def test_bad_inputs_raise_errors_that_name_the_cause():
    images, perm, blend, boxes, patch, *_ = random_case()
    bad_perm = perm.copy()
    bad_perm[3] = 6
    run_bad(images, bad_perm, blend, boxes, patch, "perm of sample 3 is 6, outside the batch of 6")
    bad_blend = blend.copy()
    bad_blend[0] = 1.5
    run_bad(images, perm, bad_blend, boxes, patch, "blend of sample 0 must be in")
    bad_boxes = list(boxes)
    bad_boxes[1] = np.array([[5, 5, 6, 2]], np.int32)  # rows 5..10 of a 10-row image
    run_bad(images, perm, blend, bad_boxes, patch, "box 0 of sample 1 is outside the image")
    huge = list(boxes)
    huge[1] = np.array([[0, 1, 10, 2 ** 31 - 1]], np.int32)  # x + w would wrap around in int32
    run_bad(images, perm, blend, huge, patch, "box 0 of sample 1 is outside the image")
    bad_patch = patch.copy()
    bad_patch[2] = (0, 10, 3, 4)
    run_bad(images, perm, blend, boxes, bad_patch, "patch of sample 2 is outside the image")
    bad_patch[2] = (1, 0, 2 ** 31 - 1, 8)
    run_bad(images, perm, blend, boxes, bad_patch, "patch of sample 2 is outside the image")
    odd = list(images)
    odd[2] = np.zeros((10, 12, 3), np.uint8)
    run_bad(odd, perm, blend, boxes, patch, "sample 2 differs from sample 0")
    shorts = [i.astype(np.int16) for i in images]
    run_bad(shorts, perm, blend, boxes, patch, "images must be uint8 or float32, got int16")
    for shape in [(5, 13, 1), (13, 10, 1), (10, 13, 2)]:  # too small, transposed, 2 channels
        bad_mask = [np.zeros((0, 0, 1), np.uint16)] * len(images)
        bad_mask[4] = np.zeros(shape, np.uint16)
        run_bad(images, perm, blend, boxes, patch, "the mask of sample 4 must be empty or have",
                mask=bad_mask)


def test_uint16_ranks_of_more_than_65536_pixels_raise():
    n, h, w = 2, 257, 256
    images = [np.zeros((h, w, 3), np.uint8)] * n
    mask = [np.zeros((h, w, 1), np.uint16), np.zeros((0, 0, 1), np.uint16)]
    run_bad(images, np.array([1, 0]), np.ones(n), [np.zeros((0, 4), np.int32)] * n,
            np.zeros((n, 4), np.int32), "uint16 ranks hold at most 65536 pixels", mask=mask)


@pytest.mark.parametrize("layout", ["HCW", "WHC"])
def test_layouts_other_than_hwc_and_chw_are_refused(layout):
    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [np.zeros((3, 8, 8), np.uint8)] * 2, batch=True,
                               layout=layout)
        return native.normalize(x, mean=MEAN, std=STD)

    p = pipe()
    p.build()
    with pytest.raises(RuntimeError, match=f"images have layout {layout}; the fused operator "
                                           f"takes HWC or CHW"):
        p.run()


def test_fused_true_needs_normalize_and_cpu_images():
    recipe = dm.MixRecipe(methods=["cutmix"], num_classes=4, layout="HWC")

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [np.zeros((8, 8, 3), np.uint8)] * 4, batch=True,
                               layout="HWC")
        y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(4)], batch=True)
        return dm.random_mix(x, y, recipe, image_size=8, fused=True).outputs()

    with pytest.raises(ValueError, match="fused=True needs `normalize`"):
        pipe()


def test_library_is_cached_per_source_and_dali_version(tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_MIX_NATIVE_DIR", str(tmp_path))
    path = native.library_path()
    assert path.parent == tmp_path and path.name.startswith("libdali_mix_native-")
    monkeypatch.setattr(native, "SOURCE", tmp_path / "changed.cc")
    (tmp_path / "changed.cc").write_text(native.__file__ and Path(native.__file__).with_name(
        "mix_normalize.cc").read_text() + "\n// changed\n")
    assert native.library_path() != path


def test_without_a_compiler_random_mix_warns_and_uses_dali_operators(tmp_path):
    """A machine without g++: the build fails with the cause, random_mix warns once and gives
    the same batch on DALI's operators; fused=True raises instead."""
    script = textwrap.dedent("""
        import warnings
        import numpy as np
        from nvidia.dali import fn, pipeline_def
        import dali_mix as dm
        from dali_mix import native

        ok, why = native.available()
        assert not ok and "no C++ compiler" in why, why
        recipe = dm.MixRecipe(methods=["cutmix", "mixup"], num_classes=4, layout="HWC")

        def build(fused):
            @pipeline_def(batch_size=4, num_threads=1, device_id=None, seed=3,
                          enable_conditionals=True)
            def pipe():
                x = fn.external_source(source=lambda: [np.full((8, 8, 3), 10 * i, np.uint8)
                                                       for i in range(4)], batch=True, layout="HWC")
                y = fn.external_source(source=lambda: [np.array([i], np.int32) for i in range(4)],
                                       batch=True)
                norm = dm.Normalization((0.0,) * 3, (1.0,) * 3)
                return dm.random_mix(x, y, recipe, image_size=8, normalize=norm,
                                     fused=fused).outputs()
            return pipe()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = build(None)
        msgs = [str(w.message) for w in caught if "fused CPU operator is not available" in str(w.message)]
        assert len(msgs) == 1 and "no C++ compiler" in msgs[0], msgs
        p.build()
        images, targets = p.run()
        assert np.allclose(np.asarray(targets.as_tensor()).sum(1), 1.0)
        try:
            build(True)
        except Exception as e:  # NativeBuildError (DALI's tracing may wrap it)
            assert "no C++ compiler" in str(e), e
        else:
            raise AssertionError("fused=True did not raise")
        print("ok")
    """)
    env = dict(os.environ, DALI_MIX_NATIVE_DIR=str(tmp_path / "empty"), CXX="no-such-compiler-xyz")
    path = tmp_path / "no_compiler.py"  # a file: DALI's conditionals need the pipeline's source
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
    assert not any((tmp_path / "empty").glob("*.so*"))  # nothing half-written left behind


@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16])
def test_normalize_alone_equals_crop_mirror_normalize(dtype):
    """Without a plan the operator is DALI's crop_mirror_normalize (no crop), flip included,
    on images of different sizes."""
    n = 8
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (9 + i, 14 - i, 3), dtype=np.uint8) for i in range(n)]

    @pipeline_def(batch_size=n, num_threads=2, device_id=None, seed=2)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        mirror = fn.random.coin_flip()
        ours = native.normalize(x, mean=MEAN, std=STD, mirror=mirror, dtype=dtype)
        dalis = fn.crop_mirror_normalize(x, mean=list(MEAN), std=list(STD), mirror=mirror,
                                         dtype=dtype, output_layout="CHW")
        return ours, dalis, mirror

    p = pipe()
    p.build()
    ours, dalis, mirror = ([np.asarray(t[i]) for i in range(n)] for t in p.run())
    assert 0 < sum(int(m) for m in mirror) < n  # both flipped and unflipped samples
    tol = 1e-3 if dtype == types.FLOAT16 else 1e-5
    for i, (a, b) in enumerate(zip(ours, dalis)):
        assert a.dtype == b.dtype and a.shape == (3, 9 + i, 14 - i)
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=tol, atol=tol)


def test_gpu_images_never_take_the_cpu_operator():
    """The choice for GPU images: DALI's operators by default, an error when fused=True."""
    from types import SimpleNamespace

    gpu, cpu = SimpleNamespace(device="gpu"), SimpleNamespace(device="cpu")
    assert native.use(None, gpu) is False and native.use(False, gpu) is False
    with pytest.raises(ValueError, match="fused=True needs CPU images"):
        native.use(True, gpu)
    assert native.use(None, cpu) is True and native.use(False, cpu) is False
