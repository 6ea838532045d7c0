"""Porting example 1: a class-based `Pipeline` in the shape of NVIDIA DeepLearningExamples'
PyTorch ResNet-50 loader (`image_classification/dali.py`, `HybridTrainPipe`: legacy `ops.*`
built in `__init__`, wired in `define_graph`), with RandomMix.

The lines marked `# dali-mix` are all that change (the same with `dali_cpu=False` on a GPU):
the recipe kept on the pipeline, `random_mix` in place of the `CropMirrorNormalize` op (it
normalises and flips too), its outputs in place of `[output, self.labels]`, `Loader` in place
of `DALIClassificationIterator` + `DALIWrapper`, and a soft-target loss in place of DLE's
`NLLMultiLabelSmooth` (the smoothing is in the recipe now: keep it in one place). DLE's
`MixUpWrapper` (its `--mixup` flag) must go: it would mix the mixed batch again.

Run from the repository root: python -m examples.porting.dle_hybrid_pipe (a tiny JPEG tree in a
temporary folder, a few CPU steps; prints the losses)
"""
from __future__ import annotations

import tempfile

from nvidia.dali import ops, types
from nvidia.dali.pipeline import Pipeline

import dali_mix as dm
from dali_mix.torch import Loader, soft_target_cross_entropy
from examples.porting.tiny import MEAN, STD, tiny_model, train_steps, write_jpeg_tree


class HybridTrainPipe(Pipeline):
    """Training images (N, 3, crop, crop) float32 normalised + targets (N, C) float32, on the CPU
    (`dali_cpu=True`, device_id None) or the GPU."""

    def __init__(self, batch_size: int, num_threads: int, device_id: int | None, data_dir: str,
                 crop: int, recipe: dm.MixRecipe, dali_cpu: bool = False, shard_id: int = 0,
                 num_shards: int = 1):
        super().__init__(batch_size, num_threads, device_id, seed=12 + (device_id or 0))
        self.recipe = recipe  # dali-mix
        self.crop = crop
        self.input = ops.readers.File(file_root=data_dir, shard_id=shard_id,
                                      num_shards=num_shards, random_shuffle=True,
                                      pad_last_batch=True)
        dali_device, decoder_device = ("cpu", "cpu") if dali_cpu else ("gpu", "mixed")
        self.decode = ops.decoders.ImageRandomCrop(device=decoder_device, output_type=types.RGB,
                                                   random_aspect_ratio=[0.75, 4.0 / 3.0],
                                                   random_area=[0.08, 1.0], num_attempts=100)
        self.res = ops.Resize(device=dali_device, resize_x=crop, resize_y=crop,
                              interp_type=types.INTERP_LINEAR)
        self.coin = ops.random.CoinFlip(probability=0.5)

    def define_graph(self):
        rng = self.coin()
        self.jpegs, self.labels = self.input(name="Reader")
        images = self.res(self.decode(self.jpegs))  # uint8 HWC, crop x crop
        norm = dm.Normalization(MEAN, STD, mirror=rng)  # dali-mix (was ops.CropMirrorNormalize)
        out = dm.random_mix(images, self.labels, self.recipe, image_size=self.crop, normalize=norm)  # dali-mix
        return list(out.outputs())  # dali-mix (was [output, self.labels])


def main(data_dir: str, steps: int = 24, batch_size: int = 16, crop: int = 32,
         num_classes: int = 4) -> list[float]:
    """Train `tiny_model` for `steps` steps on the CPU; returns the loss of each step."""
    recipe = dm.MixRecipe(num_classes=num_classes, label_smoothing=0.1)  # RandomMix, smoothing here
    pipe = HybridTrainPipe(batch_size, 1, None, data_dir, crop, recipe, dali_cpu=True)
    loader = Loader(pipe, dm.output_names(recipe), reader_name="Reader")  # dali-mix
    # len(loader) batches an epoch: the incomplete last training batch is dropped
    return train_steps(tiny_model(num_classes), loader, soft_target_cross_entropy, steps)  # dali-mix


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(" ".join(f"{v:.3f}" for v in main(str(write_jpeg_tree(tmp)))))
