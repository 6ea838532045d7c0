"""Porting example 2: a `@pipeline_def` in the shape of DALI's PyTorch ResNet-50 example
(`create_dali_pipeline(data_dir, crop, size, shard_id, num_shards, dali_cpu, is_training)`),
with RandomMix in the training branch and the validation branch unchanged.

The lines marked `# dali-mix` are all that change (the same with `dali_cpu=False` on a GPU):
a `recipe` argument, `random_mix` in place of the training `crop_mirror_normalize` (it
normalises and flips too; the images are already crop x crop), its outputs in place of
`images, labels`, and `Loader` in place of `DALIClassificationIterator`. The training loss
takes the (N, C) soft targets: `torch.nn.CrossEntropyLoss()` accepts them (without its own
`label_smoothing`: the smoothing is in the recipe). Accuracy needs hard labels: the validation
pipeline (no mixing) still returns them, and `Loader(..., train=False)` yields every
validation sample exactly once (its reader has `pad_last_batch=True`, as DALI's example has).

Run from the repository root: python -m examples.porting.dali_resnet50
"""
from __future__ import annotations

import tempfile

import torch
from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm
from dali_mix.torch import Loader
from examples.porting.tiny import MEAN, STD, tiny_model, train_steps, write_jpeg_tree


@pipeline_def
def create_dali_pipeline(data_dir: str, crop: int, size: int, shard_id: int, num_shards: int,
                         dali_cpu: bool = False, is_training: bool = True,
                         recipe: dm.MixRecipe | None = None):  # dali-mix
    """Training: images (N, 3, crop, crop) float32 normalised + targets (N, C) float32;
    validation: images + labels (N, 1) int32; on the CPU (`dali_cpu=True`) or the GPU."""
    images, labels = fn.readers.file(file_root=data_dir, shard_id=shard_id, num_shards=num_shards,
                                     random_shuffle=is_training, pad_last_batch=True, name="Reader")
    dali_device, decoder_device = ("cpu", "cpu") if dali_cpu else ("gpu", "mixed")
    if is_training:
        images = fn.decoders.image_random_crop(images, device=decoder_device, output_type=types.RGB,
                                               random_aspect_ratio=[0.8, 1.25],
                                               random_area=[0.1, 1.0], num_attempts=100)
        images = fn.resize(images, device=dali_device, resize_x=crop, resize_y=crop,
                           interp_type=types.INTERP_TRIANGULAR)
        mirror = fn.random.coin_flip(probability=0.5)
        norm = dm.Normalization(MEAN, STD, mirror=mirror)  # dali-mix (was crop_mirror_normalize)
        return dm.random_mix(images, labels, recipe, image_size=crop, normalize=norm).outputs()  # dali-mix
    images = fn.decoders.image(images, device=decoder_device, output_type=types.RGB)
    images = fn.resize(images, device=dali_device, size=size, mode="not_smaller",
                       interp_type=types.INTERP_TRIANGULAR)
    images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                      crop=(crop, crop), mean=MEAN, std=STD)
    return images, labels


def evaluate(model: torch.nn.Module, loader: Loader) -> float:
    """Top-1 accuracy (%) over a val Loader of (images, labels (N,) int64)."""
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += int((model(images).argmax(dim=1) == labels).sum())
            seen += len(labels)
    return 100.0 * correct / seen


def main(data_dir: str, steps: int = 24, batch_size: int = 16, crop: int = 32,
         num_classes: int = 4) -> tuple[list[float], float, int]:
    """Train `tiny_model` `steps` steps on the CPU, then validate on `data_dir`.
    Returns (loss of each step, val top-1 %, val samples seen)."""
    recipe = dm.MixRecipe(num_classes=num_classes, label_smoothing=0.1)
    common = dict(batch_size=batch_size, num_threads=1, device_id=None, seed=1, data_dir=data_dir,
                  crop=crop, size=crop, shard_id=0, num_shards=1, dali_cpu=True)
    train = Loader(create_dali_pipeline(**common, recipe=recipe), dm.output_names(recipe),
                   reader_name="Reader")  # dali-mix
    val = Loader(create_dali_pipeline(**common, is_training=False), ["images", "labels"],
                 reader_name="Reader", train=False)
    model = tiny_model(num_classes)
    losses = train_steps(model, train, torch.nn.CrossEntropyLoss(), steps)
    return losses, evaluate(model, val), val.shard_size


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        losses, top1, n = main(str(write_jpeg_tree(tmp)))
        print(" ".join(f"{v:.3f}" for v in losses), f"| val top-1 {top1:.1f}% of {n}")
