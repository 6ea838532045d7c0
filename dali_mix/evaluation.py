"""What a trained classifier is worth: accuracy, calibration and robustness on a val loader.

`evaluate_model(model, loader, device, pixels=..., robustness=...)` makes one pass over the
loader and returns, per head, the metrics of `dali-mix evaluate`'s JSON (see the README):

- clean: top-1 and top-5 (% of samples), NLL (mean -log p_y, nats, from log-softmax) and ECE
  (%: 15 equal-width confidence bins over the max softmax, a sample in bin b when
  lower < confidence <= upper, as MixMo's `metrics_wrapper`; sum over bins of
  |accuracy - mean confidence| weighted by the bin's share of samples);
- fgsm: top-1 under FGSM (Goodfellow et al. 2015) at each eps on the [0, 1] pixel scale:
  x' = clip(x + eps * sign(grad_x CE(model(normalise(x)), y)), 0, 1), the gradient taken
  through the normalisation at the un-normalised image x, in float32, the model in eval mode;
- noise: top-1 under additive Gaussian noise of each sigma on the [0, 1] scale, clipped to [0, 1];
- occlusion: top-1 with one square of side round(f * min(H, W)) per image at a uniformly drawn
  position fully inside it, filled with the normalisation mean (0 once normalised: Cutout's
  fill).

Noise and occlusion draws come from a CPU generator seeded by (seed, rank, batch index): with the
same seed, val data, batch size and number of processes every checkpoint is judged on the same
corrupted images, on the CPU or a GPU. A model with several heads (MixMo) is given as a
callable returning (N, H, C) logits; the ensemble is the mean of the heads' logits (the official
MixMo inference), FGSM attacks the ensemble, and every head is scored on the same images.
Tallies are summed over ranks (`world_size` > 1: each val sample read by exactly one rank).

Multi-label classifiers (`evaluate_multilabel`): mAP, the mean over classes of the average
precision AP_c = sum_n (R_n - R_{n-1}) P_n over the distinct scores of class c in decreasing
order (precision P_n and recall R_n of "score >= the n-th threshold"; tied scores form one
threshold; no interpolation: scikit-learn's `average_precision_score`, the VOC 2010+ / COCO-style
non-interpolated AP). A class with no positive sample has no AP (recall is undefined) and is
left out of the mean; "map_classes" says how many classes were averaged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dali_mix.progress import Progress

ECE_BINS = 15


def metric_key(value: float) -> str:
    """The JSON key of a corruption strength: 4 decimals, trailing zeros dropped ("0.04", "0.0039")."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class Robustness:
    """Corruption strengths, all on the [0, 1] pixel scale, and the seed of the random ones.

    fgsm_eps: FGSM budgets (1, 2, 4, 8 / 255 by default; 8/255 is the usual CIFAR budget);
    noise_sigma: Gaussian noise standard deviations; occlusion: square side as a fraction of the
    image side; seed: noise and occlusion draws (never the training seed).
    """

    fgsm_eps: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    noise_sigma: tuple[float, ...] = (0.04, 0.08, 0.16)
    occlusion: tuple[float, ...] = (0.25, 0.5)
    seed: int = 0

    def __post_init__(self):
        for name, values, hi in (("fgsm_eps", self.fgsm_eps, 1.0), ("noise_sigma", self.noise_sigma, math.inf),
                                 ("occlusion", self.occlusion, 1.0)):
            for v in values:
                if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= hi):
                    raise ValueError(f"{name}: {v!r} is not a number in [0, {hi:g}]")


@dataclass(frozen=True)
class PixelScale:
    """How the loader's images were normalised: normalised = (pixel - mean) / std, with mean and
    std per channel on the 0-255 scale (what `dali_mix.Normalization` and DALI's
    crop_mirror_normalize take). `to_unit` and `from_unit` convert (N, C, H, W) float32 tensors
    between the normalised scale and [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) / 255.0
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) / 255.0
        return mean, std

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return x * std + mean

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std


class ConfusionTally:
    """Per-pixel confusion counts of a segmentation model, (C, C) float64 (row: true class,
    column: predicted), one tensor so every rank's counts are summed in one all_reduce.
    Pixels whose true class is `ignore_index` are left out."""

    def __init__(self, num_classes: int, device: torch.device, ignore_index: int = 255):
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        # the C x C counts, then the number of images, summed over ranks together
        self.sums = torch.zeros(self.num_classes * self.num_classes + 1, dtype=torch.float64, device=device)

    def add(self, logits: torch.Tensor, masks: torch.Tensor) -> None:
        """logits (N, C, H, W) float, masks (N, H, W) int64, same device. A mask value outside
        [0, C) other than ignore_index raises ValueError naming it."""
        C = self.num_classes
        keep = masks != self.ignore_index
        true = masks[keep]
        if true.numel() and (int(true.min()) < 0 or int(true.max()) >= C):
            bad = int(true.max()) if int(true.max()) >= C else int(true.min())
            raise ValueError(f"a val mask holds class {bad}, outside the run's {C} classes "
                             f"(and not ignore_index {self.ignore_index})")
        pred = logits.argmax(dim=1)[keep]
        self.sums[:C * C] += torch.bincount(true * C + pred, minlength=C * C).double()
        self.sums[-1] += masks.shape[0]

    def all_reduce(self, world_size: int) -> None:
        if world_size > 1:
            dist.all_reduce(self.sums)

    def result(self) -> dict:
        """{"miou": mean IoU % over the classes that occur (true or predicted: union > 0),
        "pixel_acc": %, "iou": per-class IoU % (None where the union is 0), "pixels", "images"}."""
        C = self.num_classes
        c = self.sums[:C * C].cpu().reshape(C, C)
        tp = c.diag()
        union = c.sum(0) + c.sum(1) - tp
        iou = [round(100.0 * float(t / u), 3) if u > 0 else None for t, u in zip(tp, union)]
        present = [v for v in iou if v is not None]
        total = float(c.sum())
        return {"miou": round(sum(present) / max(len(present), 1), 3),
                "pixel_acc": round(100.0 * float(tp.sum()) / max(total, 1.0), 3),
                "iou": iou, "pixels": int(total), "images": int(self.sums[-1])}


class Tally:
    """Running sums for one (head, condition): samples, top-1, top-5, NLL and the ECE bins, as
    one float64 tensor so that all of them are summed over ranks in one all_reduce."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(4 + 3 * ECE_BINS, dtype=torch.float64, device=device)

    def add(self, logits: torch.Tensor, labels: torch.Tensor, full: bool) -> None:
        """logits (N, C) float32, labels (N,) int64, same device; `full`: also top-5, NLL, ECE."""
        s = self.sums
        s[0] += labels.numel()
        top1 = logits.argmax(dim=1)
        correct = top1 == labels
        s[1] += correct.sum()
        if not full:
            return
        k = min(5, logits.shape[1])
        s[2] += (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum()
        log_p = F.log_softmax(logits.double(), dim=1)
        s[3] += -log_p.gather(1, labels[:, None]).sum()
        conf = log_p.max(dim=1).values.exp()
        # bin b holds lower_b < conf <= upper_b with lower_b = b / B (conf 0 cannot occur)
        b = (torch.ceil(conf * ECE_BINS).long() - 1).clamp(0, ECE_BINS - 1)
        s[4:4 + ECE_BINS] += torch.bincount(b, minlength=ECE_BINS).double()
        s[4 + ECE_BINS:4 + 2 * ECE_BINS] += torch.bincount(b, weights=conf, minlength=ECE_BINS)
        s[4 + 2 * ECE_BINS:] += torch.bincount(b, weights=correct.double(), minlength=ECE_BINS)

    def result(self, full: bool) -> dict | float:
        """Clean metrics dict (full) or the top-1 % alone, rounded to 3 decimals."""
        s = self.sums.cpu()
        n = max(float(s[0]), 1.0)
        top1 = round(100.0 * float(s[1]) / n, 3)
        if not full:
            return top1
        conf, correct = s[4 + ECE_BINS:4 + 2 * ECE_BINS], s[4 + 2 * ECE_BINS:]  # per-bin sums
        ece = float((conf - correct).abs().sum()) / n  # sum_b n_b/N |conf_b - acc_b|
        return {"top1": top1, "top5": round(100.0 * float(s[2]) / n, 3), "nll": round(float(s[3]) / n, 5),
                "ece": round(100.0 * ece, 3)}


def fgsm(forward: Callable[[torch.Tensor], torch.Tensor], x01: torch.Tensor, labels: torch.Tensor,
         pixels: PixelScale, eps_list: Iterable[float]) -> list[torch.Tensor]:
    """FGSM images for each eps (normalised, (N, C, H, W) float32) from one gradient at `x01`
    ((N, C, H, W) in [0, 1]); `forward` maps normalised images to (N, C) logits."""
    x = x01.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(forward(pixels.from_unit(x)).float(), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    sign = grad.sign()
    return [pixels.from_unit((x01 + eps * sign).clamp(0.0, 1.0)) for eps in eps_list]


def gaussian_noise(x01: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x01 + sigma * N(0, 1), clipped to [0, 1]; the noise drawn on the CPU from `generator`."""
    noise = torch.randn(x01.shape, generator=generator, dtype=torch.float32).to(x01.device)
    return (x01 + sigma * noise).clamp(0.0, 1.0)


def occlude(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A copy of normalised images x (N, C, H, W) with one square of side
    round(fraction * min(H, W)) set to 0 (the normalisation mean) per image, its top-left corner
    drawn uniformly so that the square lies inside the image."""
    n, _, h, w = x.shape
    side = int(round(fraction * min(h, w)))
    out = x.clone()
    if side == 0:
        return out
    ys = torch.randint(0, h - side + 1, (n,), generator=generator)
    xs = torch.randint(0, w - side + 1, (n,), generator=generator)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    inside = ((rows >= ys[:, None, None]) & (rows < ys[:, None, None] + side)
              & (cols >= xs[:, None, None]) & (cols < xs[:, None, None] + side))
    return out.masked_fill(inside[:, None].to(x.device), 0.0)


def _generator(seed: int, rank: int, batch: int, purpose: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + rank) * 1_000_033 + batch) * 7 + purpose)


def evaluate_model(forward_heads: Callable[[torch.Tensor], torch.Tensor], loader, device: torch.device, *,
                   pixels: PixelScale, robustness: Robustness | None = None, world_size: int = 1,
                   rank: int = 0, progress: bool = False, total: int | None = None) -> dict:
    """Evaluate over the whole loader (batches of (images (N, C, H, W) normalised float32,
    labels (N,) or (N, 1) int)) and return the JSON fragment of `dali-mix evaluate`:

    {"samples": N, "clean": {...}, ["fgsm": {...}, "noise": {...}, "occlusion": {...}],
     ["heads": {"head0": {...}, "head1": {...}, "ensemble": {...}}]}

    `forward_heads` maps normalised images on `device` to (N, H, C) logits (H = 1: a plain
    classifier). With H > 1 the top-level metrics are the ensemble's (mean logits), and "heads"
    holds each head and the ensemble with the same keys. No autocast: float32 throughout.
    """
    conditions: list[tuple[str, str | None]] = [("clean", None)]
    if robustness is not None:
        conditions += [("fgsm", metric_key(e)) for e in robustness.fgsm_eps]
        conditions += [("noise", metric_key(s)) for s in robustness.noise_sigma]
        conditions += [("occlusion", metric_key(f)) for f in robustness.occlusion]
    tallies: dict | None = None
    bar = Progress(total, "evaluate", enabled=progress and rank == 0)

    def ensemble(x: torch.Tensor) -> torch.Tensor:  # what FGSM attacks: the mean of the heads' logits
        return forward_heads(x).float().mean(dim=1)

    with torch.no_grad():
        for i, (images, labels) in enumerate(loader):
            images = images.to(device).float()
            labels = labels.to(device).reshape(-1).long()
            inputs = [images]
            if robustness is not None:
                x01 = pixels.to_unit(images)
                inputs += fgsm(ensemble, x01, labels, pixels, robustness.fgsm_eps)
                g = _generator(robustness.seed, rank, i, 1)
                inputs += [pixels.from_unit(gaussian_noise(x01, s, g)) for s in robustness.noise_sigma]
                g = _generator(robustness.seed, rank, i, 2)
                inputs += [occlude(images, f, g) for f in robustness.occlusion]
            for (kind, key), x in zip(conditions, inputs):
                heads = forward_heads(x).float()  # (N, H, C)
                n_heads = heads.shape[1]
                if tallies is None:
                    names = ["ensemble"] if n_heads == 1 else [f"head{h}" for h in range(n_heads)] + ["ensemble"]
                    tallies = {name: {c: Tally(device) for c in conditions} for name in names}
                per_head = {"ensemble": heads.mean(dim=1)}
                if n_heads > 1:
                    per_head.update({f"head{h}": heads[:, h] for h in range(n_heads)})
                for name, logits in per_head.items():
                    tallies[name][(kind, key)].add(logits, labels, full=kind == "clean")
            bar.update(i + 1)
    bar.close()
    if tallies is None:
        raise ValueError("the val loader gave no batch: nothing to evaluate")
    if world_size > 1:
        flat = torch.stack([t.sums for per in tallies.values() for t in per.values()])
        dist.all_reduce(flat)
        for t, row in zip((t for per in tallies.values() for t in per.values()), flat):
            t.sums = row

    def report(per: dict) -> dict:
        out: dict = {}
        for (kind, key), tally in per.items():
            if key is None:
                out[kind] = tally.result(full=True)
            else:
                out.setdefault(kind, {})[key] = tally.result(full=False)
        return out

    result = {"samples": int(tallies["ensemble"][("clean", None)].sums[0]), **report(tallies["ensemble"])}
    if len(tallies) > 1:
        result["heads"] = {name: report(per) for name, per in tallies.items()}
    return result


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class average precision (module docstring), (C,) float64, NaN for a class with no
    positive. scores: (N, C) (logits or probabilities: only their order counts); targets: (N, C),
    positive where > 0.5 (0/1 multi-hot; smoothed targets work too)."""
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (N, C)")
    scores = scores.double()
    order = scores.argsort(dim=0, descending=True)
    s = scores.gather(0, order)
    positive = (targets.double() > 0.5).double().gather(0, order)
    tp = positive.cumsum(0)  # true positives among the first k + 1 scores
    rank = torch.arange(1, scores.shape[0] + 1, dtype=torch.float64, device=scores.device)[:, None]
    # a threshold ends where the next score differs (ties are one threshold)
    end = torch.ones_like(s, dtype=torch.bool)
    end[:-1] = s[:-1] != s[1:]
    tp_at_end = torch.where(end, tp, torch.zeros_like(tp))
    before = torch.cat([torch.zeros_like(tp[:1]), tp_at_end.cummax(0).values[:-1]])  # tp at the previous end
    gain = torch.where(end, tp - before, torch.zeros_like(tp))  # new positives of the threshold
    n_pos = positive.sum(0)
    ap = (gain * tp / rank).sum(0) / n_pos
    return torch.where(n_pos > 0, ap, torch.full_like(ap, math.nan))


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """(mAP in %, the number of classes averaged): the mean of `average_precision` over the
    classes with at least one positive; ValueError when no class has one."""
    ap = average_precision(scores, targets)
    counted = ~torch.isnan(ap)
    if not bool(counted.any()):
        raise ValueError("mAP: no class has a positive sample in the targets")
    return 100.0 * float(ap[counted].mean()), int(counted.sum())


def evaluate_multilabel(forward: Callable[[torch.Tensor], torch.Tensor], loader, device: torch.device, *,
                        world_size: int = 1, rank: int = 0, progress: bool = False,
                        total: int | None = None) -> dict:
    """mAP of a multi-label classifier over the whole loader (batches of (images normalised
    float32, targets (N, C) multi-hot)): {"samples": N, "clean": {"map": %, "map_classes": k,
    "hamming_acc": % of the N x C decisions right at logit 0 (probability 0.5)}}.
    `forward` maps images on `device` to (N, C) logits. The scores and targets of every batch are
    kept (N x C float32 each) and gathered over ranks (`world_size` > 1) before the AP."""
    scores, labels = [], []
    bar = Progress(total, "evaluate", enabled=progress and rank == 0)
    with torch.no_grad():
        for i, (images, targets) in enumerate(loader):
            scores.append(forward(images.to(device).float()).float().cpu())
            labels.append(targets.float().cpu())
            bar.update(i + 1)
    bar.close()
    if not scores:
        raise ValueError("the val loader gave no batch: nothing to evaluate")
    scores_all, labels_all = torch.cat(scores), torch.cat(labels)
    if world_size > 1:
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, (scores_all, labels_all))
        scores_all = torch.cat([g[0] for g in gathered])
        labels_all = torch.cat([g[1] for g in gathered])
    value, classes = mean_average_precision(scores_all, labels_all)
    hamming = 100.0 * float(((scores_all > 0) == (labels_all > 0.5)).double().mean())
    return {"samples": int(scores_all.shape[0]),
            "clean": {"map": round(value, 3), "map_classes": classes, "hamming_acc": round(hamming, 3)}}


def format_table(result: dict) -> str:
    """The evaluation as a few aligned text lines (what `dali-mix evaluate` prints)."""
    lines = []

    def block(prefix: str, r: dict) -> None:
        c = r["clean"]
        if "map" in c:  # a multi-label classifier
            lines.append(f"{prefix}clean      mAP {c['map']:7.3f}% over {c['map_classes']} classes")
            return
        lines.append(f"{prefix}clean      top-1 {c['top1']:7.3f}%  top-5 {c['top5']:7.3f}%  NLL {c['nll']:.4f}  "
                     f"ECE {c['ece']:.3f}%")
        for kind, label in (("fgsm", "FGSM eps"), ("noise", "noise sigma"), ("occlusion", "occlusion side")):
            if kind in r:
                cells = "  ".join(f"{k}: {v:7.3f}%" for k, v in r[kind].items())
                lines.append(f"{prefix}{kind:<10} top-1 by {label}  {cells}")

    block("", result)
    for name, r in result.get("heads", {}).items():
        block(f"[{name}] ", r)
    return "\n".join(lines)
