"""The fused C++ operator `dali_mix.native.mix` (alias mix_normalize): values against a numpy
reference for every input kind (uint8/float32, HWC/CHW, with or without normalisation), clear
errors on bad input, the build cache. (Both executors against each other and the fallback
without a compiler: test_executors.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

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


def to_rows(perm, boxes, patch, H, W):
    """The operator's paste rows (source, source rect, destination rect) of CutMix-like boxes
    (the partner's pixels at the same place) and a ResizeMix-like patch (the whole partner
    shrunk into it), in that order, per sample (R_i, 9) int32."""
    out = []
    for i, j in enumerate(perm):
        rows = [(j, y, x, h, w, y, x, h, w) for y, x, h, w in np.asarray(boxes[i]).reshape(-1, 4)]
        y, x, h, w = patch[i]
        if (h, w) != (0, 0):
            rows.append((j, 0, 0, H, W, y, x, h, w))
        out.append(np.asarray(rows, np.int32).reshape(-1, 9))
    return out


def packed(perm, blend, rows, mask, mask_params, H, W, dense=False):
    """`native.pack_plan` of per-sample masks (an empty mask: none): a list of per-sample plans
    (an (n, L) array when every sample has one length, or with `dense`)."""
    has = np.array([np.asarray(m).size > 0 for m in mask])
    ranks = np.stack([np.asarray(m).reshape(H, W) for m, h in zip(mask, has) if h]) if has.any() else None
    mask_of = np.where(has, np.cumsum(has) - 1, -1)
    return native.pack_plan(perm, blend, rows, mask_params, height=H, width=W, ranks=ranks, mask_of=mask_of,
                            dense=dense)


def plan_source(plan):
    """An external source of one batch of packed plans."""
    return fn.external_source(source=lambda: plan, batch=True)


def run_op(images, perm, blend, boxes, patch, mask, mask_params, mirror, *, mean, std,
           dtype=types.FLOAT, plan=None):
    """The operator on HWC `images` (uint8) with the plan of the arguments, or the packed
    `plan` when given."""
    n = len(images)
    H, W = images[0].shape[:2]
    if plan is None:
        plan = packed(perm, blend, to_rows(perm, boxes, patch, H, W), mask, mask_params, H, W)

    @pipeline_def(batch_size=n, num_threads=2, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        m = fn.external_source(source=lambda: [np.int32(v) for v in mirror], batch=True)
        return native.mix_normalize(x, plan_source(plan), mean=mean, std=std, mirror=m, dtype=dtype)

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


def run_bad(images, perm, blend, boxes, patch, match, plan=None):
    n = len(images)
    with pytest.raises(RuntimeError, match=match):
        run_op(images, perm, blend, boxes, patch, [np.zeros((0, 0, 1), np.uint16)] * n, np.zeros((n, 3), np.int32),
               np.zeros(n, np.int32), mean=MEAN, std=STD, plan=plan)


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
    run_bad(images, perm, blend, bad_boxes, patch, "row 0 of sample 1 is outside the image")
    huge = list(boxes)
    huge[1] = np.array([[0, 1, 10, 2 ** 31 - 1]], np.int32)  # x + w would wrap around in int32
    run_bad(images, perm, blend, huge, patch, "row 0 of sample 1 is outside the image")
    bad_patch = patch.copy()
    bad_patch[2] = (0, 10, 3, 4)
    run_bad(images, perm, blend, boxes, bad_patch, "row 0 of sample 2 is outside the image")
    bad_patch[2] = (1, 0, 2 ** 31 - 1, 8)
    run_bad(images, perm, blend, boxes, bad_patch, "row 0 of sample 2 is outside the image")
    odd = list(images)
    odd[2] = np.zeros((10, 12, 3), np.uint8)
    run_bad(odd, perm, blend, boxes, patch, "sample 2 differs from sample 0")
    shorts = [i.astype(np.int16) for i in images]
    run_bad(shorts, perm, blend, boxes, patch, "images must be uint8 or float32, got int16")
    # packed plans that do not add up: mask words of another size, a header's counts that
    # disagree with the length, a plan of another type or too short for its header
    n = len(images)
    good = list(packed(perm, blend, to_rows(perm, boxes, patch, 10, 13), [np.zeros((0, 0, 1))] * n,
                       np.zeros((n, 3)), 10, 13))
    for words in (32, 66, 130):  # too few, one word too many, the 10x13 ranks as int32
        bad = list(good)
        bad[4] = np.concatenate([good[4], np.zeros(words, np.int32)])
        bad[4][8] = words
        run_bad(images, perm, blend, boxes, patch, f"the plan of sample 4 has 3 rows and {words} mask words; "
                "the mask of a 10x13 image takes 0 or 65", plan=bad)
    bad = list(good)
    bad[1] = good[1].copy()
    bad[1][7] += 1  # one row more than it holds
    run_bad(images, perm, blend, boxes, patch, r"the plan of sample 1 has 36 values, but its header says "
            r"9 \+ 9 x 4 rows \+ 0 mask words", plan=bad)
    run_bad(images, perm, blend, boxes, patch, "the plan must be int32", plan=[p.astype(np.int64) for p in good])
    run_bad(images, perm, blend, boxes, patch, "the plan of sample 0 must be one vector of at least 9",
            plan=[p[:5] if i == 0 else p for i, p in enumerate(good)])


def test_int32_ranks_beyond_65536_pixels():
    """A mask of more than 65536 pixels travels as int32 ranks, one per word, and mixes as the
    reference says."""
    n, h, w = 2, 257, 256
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    mask = [rng.permutation(h * w).reshape(h, w, 1).astype(np.int32), np.zeros((0, 0, 1), np.int32)]
    params = np.array([[40000, 1, 0], [0, 0, 0]], np.int32)
    perm, blend, boxes, patch = np.array([1, 0]), np.ones(n), [np.zeros((0, 4), np.int32)] * n, np.zeros((n, 4), int)
    plan = packed(perm, blend, to_rows(perm, boxes, patch, h, w), mask, params, h, w)
    assert [len(p) for p in plan] == [9 + h * w, 9]
    got, _ = run_op(images, perm, blend, boxes, patch, mask, params, np.zeros(n), mean=MEAN, std=STD)
    want = reference(images, perm, blend, boxes, patch, mask, params, np.zeros(n), MEAN, STD)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    unmixed = reference(images, perm, blend, boxes, patch, [np.zeros(0)] * n, params, np.zeros(n), MEAN, STD)
    partner = ~np.isclose(got[0], unmixed[0], atol=1e-5).all(0)  # the pixels that changed
    assert abs(partner.mean() - (h * w - 40000) / (h * w)) < 0.01  # the partner's pixels (equal ones aside)


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


def test_library_is_cached_per_source_and_dali_version(tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_MIX_NATIVE_DIR", str(tmp_path))
    path = native.library_path()
    assert path.parent == tmp_path and path.name.startswith("libdali_mix_native-")
    changed = tmp_path / "changed.cc"
    changed.write_text(native.SOURCES[-1].read_text() + "\n// changed\n")
    monkeypatch.setattr(native, "SOURCES", native.SOURCES[:-1] + (changed,))
    assert native.library_path() != path


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
    """The choice for GPU images: DALI's operators by default, an error for executor='fused'."""
    from types import SimpleNamespace

    gpu, cpu = SimpleNamespace(device="gpu"), SimpleNamespace(device="cpu")
    assert native.use(None, gpu) is False and native.use(False, gpu) is False
    with pytest.raises(ValueError, match="executor='fused' needs CPU images"):
        native.use(True, gpu)
    assert native.use(None, cpu) is True and native.use(False, cpu) is False


# ---- every input kind: uint8 / float32, HWC / CHW, with and without normalisation ----------

N, H, W, C = 6, 16, 24, 3  # non-square: an H/W swap shows
F_MEAN, F_STD = (0.25, -0.5, 1.0), (0.5, 2.0, 1.5)  # float images are in their own units
KINDS = {  # name: (dtype, layout, normalise)
    "uint8 HWC normalize": (np.uint8, "HWC", True),
    "uint8 HWC": (np.uint8, "HWC", False),
    "float32 CHW": (np.float32, "CHW", False),
    "float32 HWC": (np.float32, "HWC", False),
    "float32 CHW normalize": (np.float32, "CHW", True),
    "float32 HWC normalize": (np.float32, "HWC", True),
    "uint8 CHW": (np.uint8, "CHW", False),
}
PARTS = ("blend", "boxes", "patch", "mask", "all")


def make_images(dtype, layout, n=N, seed=0):
    """n images of (H, W, C) in `layout`: uint8 0-255, or float32 around 0 (normalised-like)."""
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        hwc = [rng.integers(0, 256, (H, W, C), dtype=np.uint8) for _ in range(n)]
    else:
        hwc = [rng.normal(0.0, 1.5, (H, W, C)).astype(np.float32) for _ in range(n)]
    return [np.ascontiguousarray(a.transpose(2, 0, 1)) if layout == "CHW" else a for a in hwc]


def make_plan(part, seed=0, rank_dtype=np.uint16):
    """A plan of one method part ("all": every part, some on top of each other) for N images of
    H x W: perm, blend, boxes, patch, mask, mask_params."""
    rng = np.random.default_rng(100 + seed)
    perm = rng.permutation(N).astype(np.int32)
    blend = np.ones(N, np.float32)
    boxes = [np.zeros((0, 4), np.int32) for _ in range(N)]
    patch = np.zeros((N, 4), np.int32)
    mask = [np.zeros((0, 0, 1), rank_dtype) for _ in range(N)]
    params = np.zeros((N, 3), np.int32)

    def put_mask(i, k, flip_y, flip_x):
        mask[i] = rng.permutation(H * W).reshape(H, W, 1).astype(rank_dtype)
        params[i] = (k, flip_y, flip_x)

    if part == "blend":
        blend[:] = rng.uniform(0.05, 0.95, N)
        blend[1] = 1.0
    elif part == "boxes":
        boxes[0] = np.array([[2, 3, 5, 7]], np.int32)
        boxes[1] = np.array([[0, 0, H, W]], np.int32)  # the whole image
        boxes[2] = np.array([[H - 1, W - 1, 1, 1], [0, 5, 3, 0], [4, 0, 2, W]], np.int32)
        boxes[4] = np.array([[1, 2, 9, 4], [5, 10, 11, 14]], np.int32)  # overlapping
    elif part == "patch":
        patch[0] = (1, 2, 7, 9)
        patch[1] = (0, 0, H, W)  # the partner as it is
        patch[2] = (H - 1, W - 1, 1, 1)
        patch[4] = (3, 5, 13, 17)
        patch[5] = (2, 1, 5, 23)
    elif part == "mask":  # every flip; k from none to all of the partner
        for i, (k, fy, fx) in enumerate([(100, 0, 0), (250, 1, 0), (31, 0, 1), (200, 1, 1),
                                         (0, 1, 1)]):
            put_mask(i, k, fy, fx)
    else:
        blend[0], blend[3] = 0.3, 0.7
        boxes[1] = np.array([[2, 3, 4, 5], [0, 0, 1, W]], np.int32)
        boxes[3] = np.array([[1, 1, 3, 4]], np.int32)  # on a blend
        patch[2] = (1, 2, 7, 9)
        patch[0] = (4, 5, 5, 6)  # on a blend and a mask
        put_mask(4, 150, 1, 1)
        put_mask(0, 77, 1, 0)  # on a blend
    return perm, blend, boxes, patch, mask, params


def mix_reference(images, layout, plan, mirror, norm=None, out_layout=None):
    """The operator's definition in float64: a list of arrays in `out_layout` (default: CHW
    when normalising, else `layout`), values not rounded or cast."""
    perm, blend, boxes, patch, mask, params = plan
    hwc = [np.asarray(a, np.float64) for a in images]
    if layout == "CHW":
        hwc = [a.transpose(1, 2, 0) for a in hwc]
    out_layout = out_layout or ("CHW" if norm else layout)
    out = []
    for i, own in enumerate(hwc):
        other = hwc[perm[i]]
        px = blend[i] * own + (1.0 - blend[i]) * other
        for y, x, h, w in boxes[i]:
            px[y:y + h, x:x + w] = other[y:y + h, x:x + w]
        if mask[i].size:
            k, flip_y, flip_x = params[i]
            ranks = mask[i].reshape(H, W)[::-1 if flip_y else 1, ::-1 if flip_x else 1]
            px[ranks >= k] = other[ranks >= k]
        y, x, h, w = patch[i]
        if h and w:
            rows, _ = nn_rows(h, H)
            _, cols = nn_rows(w, W)
            px[y:y + h, x:x + w] = other[rows][:, cols]
        if norm:
            px = (px - np.asarray(norm[0])) / np.asarray(norm[1])
        if mirror[i]:
            px = px[:, ::-1]
        out.append(px.transpose(2, 0, 1) if out_layout == "CHW" else px)
    return out


def run_mix(images, plan, mirror, data_layout, *, plan_less=False, dense=False, **kw):
    """native.mix (or native.normalize with plan_less) on one batch, its plan packed as one
    batch array with `dense`, else per sample; returns (list, layout)."""
    n = len(images)

    @pipeline_def(batch_size=n, num_threads=2, device_id=None)
    def pipe():
        def src(values, dt=None):
            return fn.external_source(source=lambda: [np.asarray(v, dt) for v in values],
                                      batch=True)
        x = (fn.external_source(source=lambda: images, batch=True, layout=data_layout)
             if data_layout else src(images))
        if plan_less:
            return native.normalize(x, mirror=src(mirror, np.int32), **kw)
        perm, blend, boxes, patch, mask, params = plan
        shape = np.asarray(images[0]).shape
        H, W = shape[1:] if (kw.get("layout") or data_layout) == "CHW" else shape[:2]
        rows = to_rows(perm, boxes, patch, H, W)
        # both containers of packed plans: one batch array (every sample with mask words when
        # any has them) and per-sample arrays (only the masked samples')
        return native.mix(x, plan_source(packed(perm, blend, rows, mask, params, H, W, dense=dense)),
                          mirror=src(mirror, np.int32), **kw)

    p = pipe()
    p.build()
    out, = p.run()
    return [np.asarray(out[i]) for i in range(n)], out.layout()


def round_half_away(v):
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), 0, 255)


def assert_uint8_mix(got, ref, blended):
    """uint8 output: copies exact; a Mixup blend rounded to the nearest value (half away from
    zero, as DALI's cast), off by one only where the float32 sum may fall either side of .5."""
    assert got.dtype == np.uint8
    want = round_half_away(ref)
    if not blended:
        np.testing.assert_array_equal(got, want)
        return
    diff = np.abs(got.astype(np.int64) - want)
    near_half = np.abs(ref - np.floor(ref) - 0.5) < 1e-3
    assert diff.max() <= 1 and not np.any(diff[~near_half]), (diff.max(), np.argwhere(diff))


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_input_kind_and_method_part_matches_the_reference(kind, part):
    dtype, layout, normalise = KINDS[kind]
    images = make_images(dtype, layout)
    plan = make_plan(part, rank_dtype=np.int32 if "HWC" in kind and part == "mask" else np.uint16)
    mirror = np.arange(N) % 2  # every part with and without the flip
    if normalise:
        norm = (MEAN, STD) if dtype == np.uint8 else (F_MEAN, F_STD)
        kw = dict(mean=norm[0], std=norm[1])
    else:
        norm, kw = None, {}
    got, out_layout = run_mix(images, plan, mirror, layout, layout=layout, image_size=(H, W),
                              dense=part == "mask", **kw)
    ref = mix_reference(images, layout, plan, mirror, norm)
    assert out_layout == ("CHW" if normalise else layout)
    want_dtype = np.float32 if normalise else dtype
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.dtype == want_dtype and a.shape == b.shape, (i, a.dtype, a.shape, b.shape)
        if want_dtype == np.uint8:
            assert_uint8_mix(a, b, blended=plan[1][i] != 1)
        elif not normalise and plan[1][i] == 1:  # float pixels copied: exact
            np.testing.assert_array_equal(a, b.astype(np.float32), err_msg=f"sample {i}")
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"sample {i}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_float16_output_in_every_mode(kind):
    dtype, layout, normalise = KINDS[kind]
    images = make_images(dtype, layout, seed=1)
    plan = make_plan("all", seed=1)
    mirror = (np.arange(N) + 1) % 2
    norm = ((MEAN, STD) if dtype == np.uint8 else (F_MEAN, F_STD)) if normalise else None
    kw = dict(mean=norm[0], std=norm[1]) if norm else {}
    got, out_layout = run_mix(images, plan, mirror, layout, dtype=types.FLOAT16, **kw)
    ref = mix_reference(images, layout, plan, mirror, norm)
    assert out_layout == ("CHW" if normalise else layout)
    for a, b in zip(got, ref):
        assert a.dtype == np.float16 and a.shape == b.shape
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("kind, output_layout", [
    ("uint8 HWC normalize", "HWC"), ("float32 CHW normalize", "HWC"),
    ("float32 HWC normalize", "CHW"), ("uint8 HWC", "CHW"), ("float32 CHW", "HWC"),
    ("float32 HWC", "CHW")])
def test_output_layout(kind, output_layout):
    """output_layout turns the result either way, mirror included, with and without
    normalisation."""
    dtype, layout, normalise = KINDS[kind]
    images = make_images(dtype, layout, seed=2)
    plan = make_plan("all", seed=2)
    mirror = np.arange(N) % 2
    norm = ((MEAN, STD) if dtype == np.uint8 else (F_MEAN, F_STD)) if normalise else None
    kw = dict(mean=norm[0], std=norm[1]) if norm else {}
    got, out_layout = run_mix(images, plan, mirror, layout, output_layout=output_layout, **kw)
    ref = mix_reference(images, layout, plan, mirror, norm, out_layout=output_layout)
    assert out_layout == output_layout
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape
        if a.dtype == np.uint8:
            assert_uint8_mix(a, b, blended=plan[1][i] != 1)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["uint8 HWC", "float32 CHW", "float32 HWC normalize"])
def test_mirror_alone_and_without_a_plan(kind):
    """Without a plan: the flip (and normalisation when asked) of images of different sizes;
    with a plan of no mixing: exactly the flipped images."""
    dtype, layout, normalise = KINDS[kind]
    norm = (F_MEAN, F_STD) if normalise else None
    kw = dict(mean=norm[0], std=norm[1]) if norm else {}
    images = make_images(dtype, layout, seed=3)
    mirror = np.array([1, 0, 1, 1, 0, 1])
    ident = (np.arange(N, dtype=np.int32), np.ones(N, np.float32),
             [np.zeros((0, 4), np.int32)] * N, np.zeros((N, 4), np.int32),
             [np.zeros((0, 0, 1), np.uint16)] * N, np.zeros((N, 3), np.int32))
    for plan_less in (False, True):
        got, _ = run_mix(images, ident, mirror, layout, plan_less=plan_less, **kw)
        ref = mix_reference(images, layout, ident, mirror, norm)
        for a, b in zip(got, ref):
            if normalise:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(a, b.astype(dtype))
    # plan-less: every image may have its own size
    sizes = [(H - i, W - 2 * i) for i in range(N)]
    odd = [np.ascontiguousarray(make_images(dtype, "HWC", n=1, seed=10 + i)[0][:h, :w]) for i, (h, w) in
           enumerate(sizes)]
    if layout == "CHW":
        odd = [np.ascontiguousarray(a.transpose(2, 0, 1)) for a in odd]
    got, _ = run_mix(odd, None, mirror, layout, plan_less=True, **kw)
    for i, a in enumerate(got):
        hwc = np.asarray(odd[i], np.float64)
        hwc = hwc.transpose(1, 2, 0) if layout == "CHW" else hwc
        if norm:
            hwc = (hwc - np.asarray(norm[0])) / np.asarray(norm[1])
        want = hwc[:, ::-1] if mirror[i] else hwc
        want = want.transpose(2, 0, 1) if (norm or layout == "CHW") else want
        np.testing.assert_allclose(a.astype(np.float64), want, rtol=1e-5, atol=1e-5)


def test_images_without_a_layout_take_the_layout_argument():
    images = make_images(np.float32, "CHW", seed=4)
    plan = make_plan("all", seed=4)
    mirror = np.zeros(N, np.int32)
    got, out_layout = run_mix(images, plan, mirror, None, layout="CHW")
    assert out_layout == "CHW"
    for a, b in zip(got, mix_reference(images, "CHW", plan, mirror)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data, recipe", [("CHW", "HWC"), ("HWC", "CHW")])
def test_layout_mismatch_names_both_layouts(data, recipe):
    images = make_images(np.float32, data)
    with pytest.raises(RuntimeError, match=f"random_mix: images have layout {data} but the "
                                           rf"recipe says {recipe} \(MixRecipe.layout\)"):
        run_mix(images, make_plan("boxes"), np.zeros(N), data, layout=recipe)


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_image_size_mismatch_names_the_image_and_both_sizes(layout):
    images = make_images(np.uint8, layout)
    small = np.ascontiguousarray(make_images(np.uint8, "HWC", n=1)[0][:12, :20])  # among 16x24
    images[3] = np.ascontiguousarray(small.transpose(2, 0, 1)) if layout == "CHW" else small
    match = r"random_mix: image 3 is 12x20 \(HxW\) but image_size is 16x24"
    with pytest.raises(RuntimeError, match=match):
        run_mix(images, make_plan("patch"), np.zeros(N), layout, image_size=(H, W))
    with pytest.raises(RuntimeError, match=match):  # normalisation alone checks it too
        run_mix(images, None, np.zeros(N), layout, plan_less=True, image_size=(H, W),
                mean=MEAN, std=STD)
    # a batch every image of which has the size, only not the one given
    with pytest.raises(RuntimeError, match=r"image 0 is 16x24 \(HxW\) but image_size is 24x16"):
        run_mix(make_images(np.uint8, layout), make_plan("boxes"), np.zeros(N), layout,
                image_size=(W, H))
    # without image_size: a plan needs one shape for the whole batch
    with pytest.raises(RuntimeError, match="sample 3 differs from sample 0: 12x20x3 vs 16x24x3"):
        run_mix(images, make_plan("patch"), np.zeros(N), layout)


def test_bad_arguments_are_refused():
    images = make_images(np.uint8, "HWC")
    with pytest.raises(RuntimeError, match="dtype UINT8 is for mixing uint8 images without "
                                           "normalisation; got float images"):
        run_mix(make_images(np.float32, "HWC"), make_plan("blend"), np.zeros(N), "HWC",
                dtype=types.UINT8)
    with pytest.raises(ValueError, match="needs both mean and std"):
        native.mix(None, None, mean=MEAN)
    with pytest.raises(ValueError, match="layout must be 'HWC' or 'CHW', got 'NHWC'"):
        native.mix(None, None, layout="NHWC")
    with pytest.raises(ValueError, match="image_size must be one or two positive ints"):
        native.normalize(None, image_size=(1, 2, 3))
    # normalize=False leaves given mean/std unused: the input's type and layout
    got, out_layout = run_mix(images, make_plan("boxes"), np.zeros(N), "HWC", mean=MEAN, std=STD,
                              normalize=False)
    assert out_layout == "HWC" and got[0].dtype == np.uint8
    assert native.mix_normalize is native.mix


def test_uint8_mixed_without_normalisation_to_float32():
    """dtype=FLOAT without mean/std: the mixed pixel values themselves, Mixup not rounded."""
    images = make_images(np.uint8, "HWC", seed=5)
    plan = make_plan("all", seed=5)
    mirror = np.arange(N) % 2
    got, out_layout = run_mix(images, plan, mirror, "HWC", dtype=types.FLOAT)
    assert out_layout == "HWC"
    for a, b in zip(got, mix_reference(images, "HWC", plan, mirror)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def nn_index(src: int, dst: int) -> np.ndarray:
    """The source index of each of `dst` destination pixels resizing `src` pixels by nearest
    neighbour as DALI's CPU resize picks them (columns floor((x + 0.5) * scale); rows the scale
    accumulated in float32 from 0.5 * scale: the same values for these sizes)."""
    scale = np.float32(src) / np.float32(dst)
    pos = np.float32(0.5) * scale + np.arange(dst, dtype=np.float32) * scale
    return np.minimum(np.floor(pos).astype(np.int64), src - 1)


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_paste_rows_from_any_sample_any_rect_resized(layout):
    """General paste rows (RICAP, Mosaic, ResizeMix): each row writes its source sample's
    source rect into its destination rect, resized by nearest neighbour where the sizes
    differ, in order; the partner (perm) is not involved."""
    n = 5  # images of the module's H x W
    images = make_images(np.uint8, layout, n=n, seed=4)
    rows = [np.zeros((0, 9), np.int32) for _ in range(n)]
    rows[0] = np.array([[3, 0, 0, 6, 7, 0, 0, 6, 7], [4, 2, 3, 6, 8, 0, 7, 6, 8],
                        [1, 6, 7, 6, 7, 6, 0, 6, 7], [2, 1, 1, 6, 8, 6, 7, 6, 8]], np.int32)  # quadrants
    rows[2] = np.array([[0, 3, 4, 5, 6, 1, 1, 9, 11]], np.int32)  # a sub-rect enlarged
    rows[3] = np.array([[1, 0, 0, H, W, 2, 3, 4, 5], [3, 0, 0, 0, 0, 0, 0, 0, 0]], np.int32)  # the whole image shrunk; padding
    rows[4] = np.array([[4, 0, 0, 3, 3, 0, 0, 3, 3]], np.int32)  # from itself
    perm = np.array([1, 2, 3, 4, 0], np.int32)

    plan = native.pack_plan(perm, np.ones(n, np.float32), rows, np.zeros((n, 3)), height=H, width=W)

    @pipeline_def(batch_size=n, num_threads=2, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        return native.mix(x, plan_source(plan), layout=layout)

    p = pipe()
    p.build()
    out, = p.run()
    hwc = [np.asarray(im) if layout == "HWC" else np.asarray(im).transpose(1, 2, 0) for im in images]
    for i in range(n):
        want = hwc[i].copy()
        for s, sy, sx, sh, sw, dy, dx, dh, dw in rows[i]:
            if dh == 0 or dw == 0:
                continue
            crop = hwc[s][sy:sy + sh, sx:sx + sw]
            want[dy:dy + dh, dx:dx + dw] = crop[nn_index(sh, dh)][:, nn_index(sw, dw)]
        got = np.asarray(out[i])
        np.testing.assert_array_equal(got if layout == "HWC" else got.transpose(1, 2, 0), want)
