"""The kinds of model the reference trainer trains, one `Task` each.

A task supplies what differs between them: the train pipeline, the model, the forward pass, the
loss, the validation metrics and its part of the run signature (`dali_mix_tools.training.resume`).
The trainer's loop, checkpoints and output directory are the same for every task.

- `ClassificationTask`: one model on images mixed in the pipeline by a `MixRecipe` (or
  unmixed: `recipe` None, integer labels).
- `TimmMixupTask`: the parity peer of `benchmarks/accuracy.py`: unmixed batches from the
  pipeline, mixed on the torch side by timm's own `timm.data.Mixup` (the `bench` extra).
- `AudioClassificationTask`: one classifier on log-mel spectrograms ((N, 1, mels, frames)),
  from audio files through `pipelines.audio`, mixed there by the recipe.
- `MixMoTask`: a `MixMoNet` (two inputs, two encoders, two heads) fed the MixMo pipeline's two
  images; features are mixed in the model.
- `SegmentationTask`: a segmentation model on image + mask pairs (`pipelines.segmentation`),
  images and masks mixed there by the recipe; per-pixel loss, val mIoU.
- `MultiLabelTask`: a classifier of the classes each image of those pairs shows (multi-hot
  targets mixed by the recipe, `label_format="multi_hot"`); binary cross-entropy, val mAP.

Each task names its two val metrics (`metric_keys` in metrics.jsonl, `metric_labels` in the
log); the first is the one best.pt follows.

Batches are the loader's tuples in `built.output_map` order: images first ((N, 3, H, W)
float32), then the task's targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from dali_mix.evaluation import ConfusionTally, evaluate_multilabel
from dali_mix.recipe import MixRecipe
from dali_mix.torch import (MixMoNet, binary_cross_entropy, mixed_cross_entropy, mixed_segmentation_loss, mixmo_loss, slot_cross_entropy,
                            soft_target_cross_entropy)
from dali_mix_tools.training.support import build_model, evaluate


@dataclass
class Task:
    """Common interface; see the subclasses."""

    num_classes: int

    name = "task"
    metric_keys = ("val_top1", "val_top5")
    metric_labels = ("val top-1", "top-5")

    def signature(self) -> dict:
        """Settings of this task that a resumed run must keep (plain data)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the run header."""
        raise NotImplementedError

    def train_pipeline(self, source, **common):
        """The built train pipeline (`pipelines.*.BuiltPipeline`); `common`: the keyword
        arguments every train pipeline takes (batch_size, image_size, device, shards, ...)."""
        raise NotImplementedError

    def model(self, name: str, small_images: bool) -> nn.Module:
        """A fresh model with `num_classes` outputs."""
        return build_model(name, self.num_classes, small_images=small_images)

    def forward(self, model: nn.Module, images: torch.Tensor, batch: tuple, device: torch.device):
        """The model's output for one batch (run under autocast by the trainer)."""
        return model(images)

    def loss(self, output, batch: tuple, output_map: list[str], device: torch.device) -> torch.Tensor:
        """Scalar float32 loss of `output` against the batch's targets."""
        raise NotImplementedError

    def metrics(self, model: nn.Module, ddp: nn.Module, loader, device: torch.device, **kw):
        """(first metric %, second metric %, samples, extra dict) on the val loader, all ranks:
        (top-1, top-5, samples, per-head top-1) for classifiers."""
        return evaluate(ddp, loader, device, **kw)

    def mixing(self, epoch: int) -> bool:
        """Whether the pipeline mixes images in epoch `epoch` (0-based); MixMo mixes features in
        the model instead, and reports False."""
        return False


@dataclass
class ClassificationTask(Task):
    """One classifier; `recipe` mixes in the pipeline (None: plain integer labels; a recipe
    that never mixes only smooths the labels or makes sparse targets, and `mixing` is False);
    `mix_off_from`: first epoch (0-based) without mixing, or None."""

    recipe: MixRecipe | None = None
    mix_off_from: int | None = None

    name = "classification"

    def signature(self) -> dict:
        return {"task": self.name, "recipe": self.recipe.to_dict() if self.recipe is not None else None}

    def describe(self) -> str:
        r = self.recipe
        if r is None:
            return "none"
        parts = [f"{m}:{w:g}" for m, w in zip(r.candidates, r.weights)]
        return (f"{'RandomMix ' if len(parts) > 1 else ''}{', '.join(parts) or 'none'} per {r.mode}, "
                f"prob {r.prob:g}, smoothing {r.label_smoothing:g}, {r.target} targets")

    def train_pipeline(self, source, **common):
        from pipelines.classification import train_pipeline

        return train_pipeline(source, recipe=self.recipe,
                              mix_off_from_epoch=self.mix_off_from if self.recipe is not None else None,
                              **common)

    def loss(self, output, batch, output_map, device):
        logits, rest, names = output.float(), batch[1:], output_map[1:]
        if self.recipe is None:
            return nn.functional.cross_entropy(logits, rest[0].to(device))
        if self.recipe.target == "dense":
            return soft_target_cross_entropy(logits, rest[0].to(device))
        if "slot_labels" in names:  # a many-source candidate (RICAP, Mosaic): S label slots
            labels, weights = (rest[names.index(k)].to(device) for k in ("slot_labels", "slot_weights"))
            return slot_cross_entropy(logits, labels, weights, smoothing=self.recipe.label_smoothing)
        ya, yb, lam = (rest[names.index(k)].to(device) for k in ("labels_a", "labels_b", "lam"))
        return mixed_cross_entropy(logits, ya, yb, lam, smoothing=self.recipe.label_smoothing)

    def mixing(self, epoch: int) -> bool:
        return (self.recipe is not None and self.recipe.mixes
                and (self.mix_off_from is None or epoch < self.mix_off_from))


@dataclass
class TimmMixupTask(Task):
    """timm's `Mixup(**mixup_args)` applied in the training loop to the pipeline's unmixed
    batches (integer labels), against `SoftTargetCrossEntropy`: what a user replacing timm had.
    `mixup_args`: timm's keyword arguments (mixup_alpha, cutmix_alpha, cutmix_minmax, prob,
    switch_prob, mode, label_smoothing, num_classes)."""

    mixup_args: dict | None = None

    name = "timm_mixup"

    def __post_init__(self):
        try:
            from timm.data import Mixup
        except ImportError:
            raise SystemExit("error: --timm-peer needs timm (pip install timm, or the bench extra: "
                             "EXTRAS=dev,bench bash scripts/install.sh)") from None
        self.mixer = Mixup(**self.mixup_args)

    def signature(self) -> dict:
        return {"task": self.name, "timm_mixup": dict(self.mixup_args)}

    def describe(self) -> str:
        a = self.mixup_args
        return (f"timm Mixup on the torch side (mixup_alpha {a['mixup_alpha']:g}, cutmix_alpha "
                f"{a['cutmix_alpha']:g}, prob {a['prob']:g}, switch_prob {a['switch_prob']:g}, mode {a['mode']}, "
                f"smoothing {a['label_smoothing']:g})")

    def train_pipeline(self, source, **common):
        from pipelines.classification import train_pipeline

        return train_pipeline(source, recipe=None, **common)

    def forward(self, model, images, batch, device):
        labels = batch[1].to(device).reshape(-1).long()
        mixed, targets = self.mixer(images, labels)
        return model(mixed), targets

    def loss(self, output, batch, output_map, device):
        logits, targets = output
        return soft_target_cross_entropy(logits.float(), targets.float())

    def mixing(self, epoch: int) -> bool:
        return True


@dataclass
class AudioClassificationTask(ClassificationTask):
    """`ClassificationTask` on sound: `features` (`pipelines.audio.AudioFeatures`) says what each
    clip becomes; `noise_files` feed the train pipeline's background-noise step (none: no
    noise). The model takes one channel (a ResNet with a 1-channel small-input stem)."""

    features: object = None
    noise_files: tuple = ()

    name = "audio-classification"

    def signature(self) -> dict:
        return {**super().signature(), "features": self.features.to_dict(), "noise": len(self.noise_files) > 0}

    def describe(self) -> str:
        f = self.features
        return (f"{super().describe()} | log-mel {f.n_mels}x{f.frames} ({f.sample_rate} Hz, {f.clip_seconds:g} s), "
                f"{len(self.noise_files)} noise files")

    def train_pipeline(self, source, **common):
        from pipelines.audio import train_pipeline

        return train_pipeline(source, features=self.features, noise_files=self.noise_files, recipe=self.recipe,
                              mix_off_from_epoch=self.mix_off_from if self.recipe is not None else None, **common)

    def model(self, name, small_images):
        return build_model(name, self.num_classes, small_images=True, in_channels=1)


@dataclass
class MixMoTask(Task):
    """MixMo: `variant` "linear" or "cut" (patch probability `p_cut`), loss balancing `r`,
    batch repetition `b`, kappa ~ Beta(`alpha`, `alpha`), label `smoothing`, over `epochs`."""

    variant: str = "cut"
    r: float = 3.0
    p_cut: float = 0.5
    b: int = 1
    alpha: float = 2.0
    smoothing: float = 0.0
    epochs: int = 1

    name = "mixmo"

    def signature(self) -> dict:
        return {"task": self.name, "mixmo": {"variant": self.variant, "r": self.r, "p": self.p_cut, "b": self.b,
                                             "alpha": self.alpha, "smoothing": self.smoothing}}

    def describe(self) -> str:
        return f"{self.variant.capitalize()}-MixMo (r {self.r:g}, p {self.p_cut:g}, b {self.b}, alpha {self.alpha:g})"

    def train_pipeline(self, source, **common):
        from pipelines.mixmo import mixmo_train_pipeline

        return mixmo_train_pipeline(source, p_cut=0.0 if self.variant == "linear" else self.p_cut,
                                    total_epochs=self.epochs, alpha=self.alpha, batch_repetition=self.b,
                                    smoothing=self.smoothing, **common)

    def model(self, name, small_images):
        return MixMoNet(super().model(name, small_images), self.num_classes)

    def forward(self, model, images, batch, device):
        x1, _, _, kappa, mask, use_cut = (t.to(device, non_blocking=True) for t in batch[1:])
        return model(images, x1, kappa=kappa, mask=mask, use_cut=use_cut.bool(), return_kappa=True)

    def loss(self, output, batch, output_map, device):
        logits, kappa_used = output
        tgt0, tgt1 = (t.to(device) for t in batch[2:4])
        return mixmo_loss(logits.float(), tgt0, tgt1, kappa_used, r=self.r)

    def metrics(self, model, ddp, loader, device, **kw):
        return evaluate(model, loader, device, mixmo=True, **kw)  # both heads, outside DDP


@dataclass
class PairTask(Task):
    """What the tasks on image + mask pairs (`pipelines.segmentation`) share: `recipe` (never
    None after construction), the train pipeline with `pipeline_labels` ("masks" or
    "presence"), the signature and `mixing`."""

    recipe: MixRecipe | None = None

    pipeline_labels = "masks"

    def signature(self) -> dict:
        return {"task": self.name, "recipe": self.recipe.to_dict()}

    def train_pipeline(self, source, *, batch_size, image_size, seed, num_threads, shard_id=0, num_shards=1,
                       device="cpu", device_id=None, enable_checkpointing=False, checkpoint=None, **_):
        from pipelines.segmentation import train_pipeline

        return train_pipeline(source, batch_size=batch_size, image_size=image_size, recipe=self.recipe, seed=seed,
                              num_threads=num_threads, shard_id=shard_id, num_shards=num_shards, device=device,
                              device_id=device_id, enable_checkpointing=enable_checkpointing, checkpoint=checkpoint,
                              labels=self.pipeline_labels)

    def mixing(self, epoch: int) -> bool:
        return self.recipe.mixes


@dataclass
class SegmentationTask(PairTask):
    """A segmentation model (`dali_mix_tools.training.segmentation_models`) on image + mask pairs;
    `recipe` mixes images and masks in the pipeline (its `num_classes` the masks' classes),
    None for no mixing; the loss is `mixed_segmentation_loss`, the val metrics mIoU and pixel
    accuracy (%)."""

    name = "segmentation"
    metric_keys = ("val_miou", "val_pixel_acc")
    metric_labels = ("val mIoU", "pixel acc")

    def __post_init__(self):
        if self.recipe is None:  # no mixing: the same pipeline with a recipe that never mixes
            self.recipe = MixRecipe(methods=[], num_classes=self.num_classes)

    def describe(self) -> str:
        return ClassificationTask.describe(self) + " (images and masks)"

    def model(self, name, small_images):
        from dali_mix_tools.training.segmentation_models import SEGMENTATION_MODELS

        return SEGMENTATION_MODELS[name](self.num_classes)

    def forward(self, model, images, batch, device):
        return model(images)["out"]

    def loss(self, output, batch, output_map, device):
        masks, masks_b, weight = (batch[output_map.index(k)].to(device) for k in ("masks", "masks_b", "mask_weight"))
        seen = masks[masks != self.recipe.ignore_index]
        if seen.numel() and (int(seen.max()) >= self.num_classes or int(seen.min()) < 0):
            bad = int(seen.max()) if int(seen.max()) >= self.num_classes else int(seen.min())
            raise SystemExit(f"error: a train mask holds class {bad}, outside the run's {self.num_classes} classes "
                             f"(and not ignore_index {self.recipe.ignore_index}): check the masks or --num-classes")
        return mixed_segmentation_loss(output.float(), masks, masks_b, weight, ignore_index=self.recipe.ignore_index,
                                       label_smoothing=self.recipe.label_smoothing)

    def metrics(self, model, ddp, loader, device, *, channels_last=False, amp_dtype=None, world_size=1):
        model.eval()
        tally = ConfusionTally(self.num_classes, device, self.recipe.ignore_index)
        with torch.no_grad():
            for images, masks in loader:
                images = images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    logits = model(images)["out"].float()
                tally.add(logits, masks.to(device))
        tally.all_reduce(world_size)
        r = tally.result()
        return r["miou"], r["pixel_acc"], r["images"], {}


@dataclass
class MultiLabelTask(PairTask):
    """A classifier of the classes 1..C-1 each image of image + mask pairs shows (`num_classes`
    C - 1; `pipelines.segmentation` with `labels="presence"`), multi-hot targets mixed by
    `recipe` (`label_format="multi_hot"`; its smoothing and threshold applied in the pipeline);
    the loss is `binary_cross_entropy` on those targets, the val metrics mAP and the per-class
    decisions' accuracy (`dali_mix.evaluation.evaluate_multilabel`)."""

    name = "multilabel"
    pipeline_labels = "presence"
    metric_keys = ("val_map", "val_hamming_acc")
    metric_labels = ("val mAP", "per-class acc")
    multi_label = True

    def __post_init__(self):
        self.recipe = self.recipe or MixRecipe(methods=[], num_classes=self.num_classes, label_format="multi_hot")

    def describe(self) -> str:
        return ClassificationTask.describe(self) + " (multi-hot)"

    def loss(self, output, batch, output_map, device):
        return binary_cross_entropy(output.float(), batch[output_map.index("targets")].to(device))

    def metrics(self, model, ddp, loader, device, *, channels_last=False, amp_dtype=None, world_size=1):
        model.eval()
        r = evaluate_multilabel(model, loader, device, world_size=world_size)
        return r["clean"]["map"], r["clean"]["hamming_acc"], r["samples"], {}
