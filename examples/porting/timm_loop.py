"""Porting example 3: a timm-style training loop (`train_one_epoch` with `mixup_fn` and
`SoftTargetCrossEntropy`) fed by a DALI pipeline, with timm's Mixup/CutMix moved into DALI.

Before (timm's train.py, loader yielding images and hard labels):

    mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5,
                     mode="batch", label_smoothing=0.1, num_classes=num_classes)
    train_loss_fn = SoftTargetCrossEntropy()
    for input, target in loader:
        input, target = mixup_fn(input, target)
        loss = train_loss_fn(model(input), target)

After: the same arguments go to `MixRecipe.from_timm` (lines marked `# dali-mix`), the
pipeline's `crop_mirror_normalize` becomes `random_mix`, the loader yields (images, targets)
and the `mixup_fn(...)` line goes: left in place it would mix the mixed batch again (and smooth
the smoothed targets). The loss stays `SoftTargetCrossEntropy` (here its twin
`dali_mix.torch.soft_target_cross_entropy`), or `torch.nn.CrossEntropyLoss()` without
`label_smoothing` (it accepts soft targets; the smoothing is already in the targets).

Run from the repository root: python -m examples.porting.timm_loop
"""
from __future__ import annotations

import tempfile
from typing import Callable

from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm
from dali_mix.torch import Loader, soft_target_cross_entropy
from examples.porting.tiny import MEAN, STD, tiny_model, train_steps, write_jpeg_tree

TIMM_MIXUP_ARGS = dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0,
                       switch_prob=0.5, mode="batch", label_smoothing=0.1)


@pipeline_def
def train_pipe(data_dir: str, image_size: int, recipe: dm.MixRecipe):
    """images (N, 3, S, S) float32 normalised + targets (N, C) float32, CPU or GPU decoding."""
    jpegs, labels = fn.readers.file(file_root=data_dir, random_shuffle=True, name="Reader")
    images = fn.decoders.image_random_crop(jpegs, device="cpu", output_type=types.RGB)
    images = fn.resize(images, size=[image_size, image_size])
    norm = dm.Normalization(MEAN, STD, mirror=fn.random.coin_flip())
    return dm.random_mix(images, labels, recipe, image_size=image_size, normalize=norm).outputs()  # dali-mix


def main(data_dir: str, steps: int = 24, batch_size: int = 16, image_size: int = 32,
         num_classes: int = 4, loss_fn: Callable = soft_target_cross_entropy) -> list[float]:
    """Train `tiny_model` `steps` steps on the CPU with timm's Mixup arguments; returns the
    loss of each step. `loss_fn(logits (N, C), targets (N, C) float32) -> scalar`."""
    recipe = dm.MixRecipe.from_timm(**TIMM_MIXUP_ARGS, num_classes=num_classes)  # dali-mix
    pipe = train_pipe(data_dir, image_size, recipe, batch_size=batch_size, num_threads=1,
                      device_id=None, seed=3)
    loader = Loader(pipe, dm.output_names(recipe), reader_name="Reader")  # dali-mix
    # mixup_fn = Mixup(**TIMM_MIXUP_ARGS, num_classes=num_classes)      # dali-mix: removed
    return train_steps(tiny_model(num_classes), loader, loss_fn, steps)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(" ".join(f"{v:.3f}" for v in main(str(write_jpeg_tree(tmp)))))
