"""The samplers: every random parameter of every method, drawn vectorised in numpy.

This is the one place where a random parameter is drawn (`dali_mix.plan.MixPlanner` for
RandomMix, `dali_mix.mixmo.MixMoSampler` for MixMo's inputs). Each sampler takes a
`numpy.random.Generator` and a count `n` and returns int64 (pixels), float64 (float32 where the
DALI graph recomputes from the draw) or bool arrays of length `n`; boxes are (y, x, h, w) in
pixels, top-left corner and size, inside an (H, W) image. Each one restates its method's
official code (named in its docstring; docs/fidelity.md lists them), and
tests/test_fidelity.py compares its draws with a restatement of that code written in the test.
"""
from __future__ import annotations

import numpy as np

Boxes = tuple  # (y, x, h, w): four (n,) int64 arrays


def size_hw(size) -> tuple[int, int]:
    """(H, W) in pixels from one side (a square) or an (H, W) pair; ValueError naming the value
    when it is neither, or not positive."""
    try:
        if np.isscalar(size):
            h = w = int(size)
        else:
            h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {size!r}")
    return h, w


def permutation(rng: np.random.Generator, n: int, no_self_pairs: bool = True) -> np.ndarray:
    """Partner of each sample: a uniform random permutation of range(n), (n,) int64; with
    `no_self_pairs` a uniform random derangement (redrawn until no fixed point; n = 1 excepted)."""
    perm = rng.permutation(n)
    if no_self_pairs and n > 1:
        while np.any(perm == np.arange(n)):
            perm = rng.permutation(n)
    return perm.astype(np.int64)


def pairing(rng: np.random.Generator, n: int) -> np.ndarray:
    """Partners in pairs (timm's `pair` mode): a uniform random perfect matching of range(n),
    as an involution perm (perm[perm[i]] == i, no fixed point), (n,) int64. n must be even."""
    if n % 2:
        raise ValueError(f"mode='pair' needs an even batch size, got {n}")
    order = rng.permutation(n)
    perm = np.empty(n, np.int64)
    perm[order[0::2]] = order[1::2]
    perm[order[1::2]] = order[0::2]
    return perm


def mixup_lams(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Mixup weights lam ~ Beta(alpha, alpha), (n,) float64 (facebookresearch/mixup-cifar10)."""
    return rng.beta(alpha, alpha, size=n)


def centred_boxes(cy, cx, cut_h, cut_w, H: int, W: int) -> Boxes:
    """Boxes of side (cut_h, cut_w) centred at pixel (cy, cx), as the official CutMix / Cutout /
    MixMo code builds them: rows [cy - cut_h//2, cy + cut_h//2) clipped to [0, H], columns
    likewise (an odd side loses a pixel, a box over the border is cut). Integer arrays (or
    scalars) broadcast together; returns (y, x, h, w) int64."""
    cut_h, cut_w = np.asarray(cut_h, np.int64), np.asarray(cut_w, np.int64)
    y1, y2 = np.clip(cy - cut_h // 2, 0, H), np.clip(cy + cut_h // 2, 0, H)
    x1, x2 = np.clip(cx - cut_w // 2, 0, W), np.clip(cx + cut_w // 2, 0, W)
    return y1, x1, y2 - y1, x2 - x1


def cutmix_boxes(rng: np.random.Generator, n: int, H: int, W: int, alpha: float = 1.0,
                 minmax: tuple[float, float] | None = None) -> Boxes:
    """CutMix boxes.

    Without `minmax` (clovaai `rand_bbox`, timm `rand_bbox`): lam0 ~ Beta(alpha, alpha), cut
    side int(side * sqrt(1 - lam0)), centre uniform over the image, [c - cut//2, c + cut//2)
    clipped at the borders. With `minmax=(lo, hi)` (timm `rand_bbox_minmax`): h uniform in
    [int(H*lo), int(H*hi)), w likewise, corner y uniform in [0, H - h) (timm's exclusive upper
    bound: the box never touches the bottom or right edge), x likewise.
    """
    if minmax is None:
        cut = np.sqrt(1.0 - rng.beta(alpha, alpha, size=n))
        cut_h, cut_w = (H * cut).astype(np.int64), (W * cut).astype(np.int64)
        return centred_boxes(rng.integers(0, H, size=n), rng.integers(0, W, size=n),
                             cut_h, cut_w, H, W)
    lo, hi = minmax
    h = rng.integers(int(H * lo), max(int(H * hi), int(H * lo) + 1), size=n)
    w = rng.integers(int(W * lo), max(int(W * hi), int(W * lo) + 1), size=n)
    y = rng.integers(0, np.maximum(H - h, 1))
    x = rng.integers(0, np.maximum(W - w, 1))
    return y, x, h, w


def resizemix_patches(rng: np.random.Generator, n: int, H: int, W: int,
                      scale: tuple[float, float] = (0.1, 0.8), centred: bool = True) -> Boxes:
    """ResizeMix patches: tau ~ U(scale), patch h = max(1, int(H*tau)), w = max(1, int(W*tau))
    (`F.interpolate(scale_factor=tau)`'s floor), always fully inside the image (the paper's
    whole shrunk image, no clipping).

    Position: with `centred` (JayQine/ResizeMix `getbox_new`, the official code) a centre c
    uniform over the image, the corner c - side//2 then shifted inside: min(max(c - side//2,
    0), H - h), so patches touch a border more often than uniformly placed ones (about
    half of them at tau = 0.5); `centred=False`: corner uniform in [0, H - h] x [0, W - w]
    (this library's first version).
    """
    tau = rng.uniform(scale[0], scale[1], size=n)
    h = np.maximum((H * tau).astype(np.int64), 1)
    w = np.maximum((W * tau).astype(np.int64), 1)
    if not centred:
        return rng.integers(0, H - h + 1), rng.integers(0, W - w + 1), h, w
    y = np.minimum(np.maximum(rng.integers(0, H, size=n) - h // 2, 0), H - h)
    x = np.minimum(np.maximum(rng.integers(0, W, size=n) - w // 2, 0), W - w)
    return y, x, h, w


def fmix_thresholds(rng: np.random.Generator, n: int, pixels: int, alpha: float = 1.0) -> np.ndarray:
    """FMix: number k of own pixels of each mask, (n,) int64 in [0, pixels]: lam0 ~
    Beta(alpha, alpha), k = floor(lam0 * N + u), u ~ U(0, 1) (ecs-vlc/FMix `binarise_mask`'s
    random ceil or floor), so the mask mean k / N is lam0 to one pixel."""
    lam0 = rng.beta(alpha, alpha, size=n)
    return np.clip(np.floor(lam0 * pixels + rng.uniform(size=n)), 0, pixels).astype(np.int64)


def fmix_masks(rng: np.random.Generator, n: int, pixels: int, bank_size: int,
               alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FMix masks from a bank of `bank_size` rank images: (n,) int64 k (`fmix_thresholds`),
    (n,) int64 bank entries uniform in [0, bank_size), (n, 2) int64 vertical / horizontal flips
    (0 or 1, each with probability 1/2; a flipped low-frequency mask is one too)."""
    k = fmix_thresholds(rng, n, pixels, alpha)
    return k, rng.integers(0, bank_size, size=n), rng.integers(0, 2, size=(n, 2))


def cutout_boxes(rng: np.random.Generator, n: int, H: int, W: int, holes: int = 1,
                 length: int = 16) -> Boxes:
    """Cutout holes (uoguelph-mlrg/Cutout `Cutout.__call__`): `holes` squares of side `length`
    per sample, centre uniform, [c - length//2, c + length//2) clipped at the borders.
    Returns (n, holes) int64 arrays (y, x, h, w)."""
    return centred_boxes(rng.integers(0, H, size=(n, holes)), rng.integers(0, W, size=(n, holes)),
                         length, length, H, W)


def erasing_boxes(rng: np.random.Generator, n: int, H: int, W: int, p: float = 0.5,
                  area: tuple[float, float] = (0.02, 0.4), aspect: tuple[float, float] = (0.3, 1 / 0.3),
                  log_aspect: bool = False, tries: int = 100) -> Boxes:
    """Random Erasing boxes (zhunzhong07/Random-Erasing `RandomErasing.__call__`): with
    probability p, up to `tries` attempts of target area U(area) * H*W and aspect U(aspect)
    (log-uniform with `log_aspect`, as timm and torchvision), h = int(round(sqrt(a * r))),
    w = int(round(sqrt(a / r))), accepted when h < H and w < W (strictly), corner uniform in
    [0, H - h] x [0, W - w]; no accepted attempt (or not applied): h = w = 0."""
    y = np.zeros(n, np.int64)
    x = np.zeros(n, np.int64)
    h = np.zeros(n, np.int64)
    w = np.zeros(n, np.int64)
    todo = np.flatnonzero(rng.uniform(size=n) < p)
    for _ in range(tries):
        if not todo.size:
            break
        target = rng.uniform(area[0], area[1], size=todo.size) * (H * W)
        if log_aspect:
            ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]), size=todo.size))
        else:
            ratio = rng.uniform(aspect[0], aspect[1], size=todo.size)
        hh = np.round(np.sqrt(target * ratio)).astype(np.int64)
        ww = np.round(np.sqrt(target / ratio)).astype(np.int64)
        ok = (hh < H) & (ww < W)
        done = todo[ok]
        h[done], w[done] = hh[ok], ww[ok]
        y[done] = rng.integers(0, H - hh[ok] + 1)
        x[done] = rng.integers(0, W - ww[ok] + 1)
        todo = todo[~ok]
    return y, x, h, w


def source_cycles(rng: np.random.Generator, n: int, k: int = 4) -> np.ndarray:
    """The k sources of each output of a k-image method, (n, k) int64: the sample itself, then
    the next k - 1 samples of one uniform random cyclic order of the batch. With n >= k the k
    sources of an output are k different samples, and each column is a permutation of the
    batch (every sample is source j of exactly one output, as with the official RICAP's one
    random permutation per tile). With n < k the cycle wraps: n = 1 gives the sample itself k
    times, n = 2 (i, j, i, j), n = 3 (i, j, l, i)."""
    order = rng.permutation(n)
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n)
    return order[(pos[:, None] + np.arange(k)[None, :]) % n].astype(np.int64)


def ricap_tiles(rng: np.random.Generator, n: int, H: int, W: int,
                beta: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """RICAP's four crops (jackryo/ricap `TrainerRICAP.ricap`): a boundary point, rows
    bh = round(H * Beta(beta, beta)) and columns bw = round(W * Beta(beta, beta)) (numpy's
    round half to even, as the official `np.round`), splits the output into four tiles, in
    the official order top-left (bh x bw), bottom-left ((H - bh) x bw), top-right
    (bh x (W - bw)), bottom-right; tile k is cropped from its source at a corner uniform over
    the places it fits ([0, H - h] x [0, W - w], the official `randint(0, I - w + 1)`).
    Returns source rects and destination rects, (n, 4, 4) int64 each, (y, x, h, w) per tile
    (tiles of zero area included)."""
    bh = np.round(H * rng.beta(beta, beta, size=n)).astype(np.int64)
    bw = np.round(W * rng.beta(beta, beta, size=n)).astype(np.int64)
    zero = np.zeros(n, np.int64)
    th = np.stack([bh, H - bh, bh, H - bh], 1)
    tw = np.stack([bw, bw, W - bw, W - bw], 1)
    dy = np.stack([zero, bh, zero, bh], 1)
    dx = np.stack([zero, zero, bw, bw], 1)
    sy = rng.integers(0, H - th + 1)
    sx = rng.integers(0, W - tw + 1)
    return np.stack([sy, sx, th, tw], 2), np.stack([dy, dx, th, tw], 2)


def mosaic_tiles(rng: np.random.Generator, n: int, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic (YOLOv5 `load_mosaic`, for classification): the four H x W images are placed on a
    2H x 2W canvas around a centre yc = int(U(H//2, 2H - H//2)), xc likewise (YOLOv5's
    `mosaic_border` of -s//2), tile 0 top-left with its bottom-right corner at the centre, 1
    top-right, 2 bottom-left, 3 bottom-right; the output is the canvas's H x W window at
    (H//2, W//2), which they always cover (YOLOv5's border crop, `random_perspective` with no
    scale or translation). In the output the boundary is (by, bx) = (yc - H//2, xc - W//2) and
    each tile shows the corner of its image next to the centre. Returns source rects and
    destination rects, (n, 4, 4) int64 each, (y, x, h, w) per tile (tiles of zero area
    included)."""
    by = np.floor(rng.uniform(H // 2, 2 * H - H // 2, size=n)).astype(np.int64) - H // 2
    bx = np.floor(rng.uniform(W // 2, 2 * W - W // 2, size=n)).astype(np.int64) - W // 2
    by, bx = np.clip(by, 0, H), np.clip(bx, 0, W)
    zero = np.zeros(n, np.int64)
    th = np.stack([by, by, H - by, H - by], 1)
    tw = np.stack([bx, W - bx, bx, W - bx], 1)
    dy = np.stack([zero, zero, by, by], 1)
    dx = np.stack([zero, bx, zero, bx], 1)
    sy = np.stack([H - by, H - by, zero, zero], 1)
    sx = np.stack([W - bx, zero, W - bx, zero], 1)
    return np.stack([sy, sx, th, tw], 2), np.stack([dy, dx, th, tw], 2)


# ------------------------------------------------------------------------------------------------
# MixMo (alexrame/mixmo-pytorch): kappa per sample; the Cut-MixMo choice and the roles per batch
# ------------------------------------------------------------------------------------------------

def mixmo_kappas(rng: np.random.Generator, n: int, alpha: float = 2.0) -> np.ndarray:
    """MixMo mixing ratios kappa ~ Beta(alpha, alpha), (n,) float64: the first component of
    the official `misc.sample_lams`'s Dirichlet((alpha, alpha)) (M = 2 inputs), one per sample."""
    return rng.beta(alpha, alpha, size=n)


def mixmo_roles(rng: np.random.Generator, n: int, p_cut=0.5,
                per_sample: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut-MixMo or Linear-MixMo, and the role swap, (n,) each.

    Official code (`MixMoDataset._init_dict_output_mixmo`): one batch seed, shared by the batch,
    decides both: `random_lower_than(p, seed=batch_seed)` (Cut-MixMo when u < p) and the
    shuffle of the (lam, mask) pairs (swap with probability 1/2). So by default one u and one
    swap per batch; `per_sample=True` draws them per sample (this library's extension).

    Args:
        p_cut: probability of Cut-MixMo, a float or (n,) probabilities (a 0/1 flag array gives
            exactly those flags).
    Returns: use_cut (n,) bool = u < p_cut, swapped (n,) bool, u (n,) float32: the uniform(s)
        compared with p_cut, for a probability known only in the graph.
    """
    size = n if per_sample else 1
    u = np.broadcast_to(rng.random(size, dtype=np.float32), (n,))
    swapped = np.broadcast_to(rng.random(size) < 0.5, (n,))
    return u < np.asarray(p_cut, np.float32), swapped.copy(), u.copy()


#: Cut-MixMo boxes (`cut_mixmo_boxes`): "official" (the default) or "inside".
CUT_MIXMO_BOXES = ("official", "inside")


def check_cut_mixmo_box(box) -> str:
    """`box` if it is one of `CUT_MIXMO_BOXES`, else ValueError naming it."""
    if box not in CUT_MIXMO_BOXES:
        raise ValueError(f"box must be one of {CUT_MIXMO_BOXES}, got {box!r}")
    return box


def cut_mixmo_centres(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit positions of the Cut-MixMo boxes, (2, n) float32 in [0, 1): rows y, x. A box of an
    (H, W) image is placed at floor(u * H) (see `cut_mixmo_boxes`), so the same draws serve
    images whose size is known only in the graph."""
    return rng.random((2, n), dtype=np.float32)


def cut_mixmo_boxes(rng: np.random.Generator | None, n: int, H: int, W: int, kappa,
                    box: str = "official", centres: np.ndarray | None = None) -> Boxes:
    """Cut-MixMo boxes (y, x, h, w) for target areas `kappa` (n,) (float32 as the pipeline
    carries it; the arithmetic is float32 so that the DALI graph, `dali_mix.mixmo`, computes
    the same pixels from the same draws). The one Cut-MixMo box sampler: `mixmo.MixMoSampler`
    and `dali_mix.torch.mixmo.cut_mixmo_mask` use it, and `mixmo.cut_mixmo_mask` restates its
    arithmetic in the graph for images whose size is known only there.

    * box="official" (the default; official `_rand_bbox_of_area_lam`): sides int(H * sqrt(kappa)) and
      int(W * sqrt(kappa)), centre uniform over the image (floor(u * side)), the box
      [c - side//2, c + side//2) clipped at the borders: its area, the mask mean the official
      code uses as kappa, is often well below kappa (mean 0.31 at kappa ~ Beta(2, 2)).
    * box="inside" (this library's first version): h = round(sqrt(kappa) * H), w =
      round(kappa * H * W / h) (clamped to W; 0 when h = 0), corner uniform with the box fully
      inside: area kappa * H * W to half a pixel row.

    `centres`: (2, n) unit positions from `cut_mixmo_centres` (drawn here from `rng` when None).
    """
    check_cut_mixmo_box(box)
    u = cut_mixmo_centres(rng, n) if centres is None else np.asarray(centres, np.float32)
    k = np.asarray(kappa, np.float32)
    Hf, Wf = np.float32(H), np.float32(W)
    if box == "official":
        root = np.sqrt(k)
        cy = np.minimum(np.floor(u[0] * Hf), Hf - 1).astype(np.int64)
        cx = np.minimum(np.floor(u[1] * Wf), Wf - 1).astype(np.int64)
        return centred_boxes(cy, cx, np.floor(Hf * root), np.floor(Wf * root), H, W)
    h = np.clip(np.floor(Hf * np.sqrt(k) + np.float32(0.5)), 0, H).astype(np.int64)
    w = np.floor(k * Hf * Wf / np.maximum(h, 1).astype(np.float32) + np.float32(0.5))
    w = np.where(h > 0, np.clip(w, 0, W), 0).astype(np.int64)
    y = np.minimum(np.floor(u[0] * (H - h + 1).astype(np.float32)), H - h).astype(np.int64)
    x = np.minimum(np.floor(u[1] * (W - w + 1).astype(np.float32)), W - w).astype(np.int64)
    return y, x, h, w
