"""A mid-epoch resume gives the same remaining batches on both executors: the plan is a pure
function of (seed, epoch, step) and DALI restores the run counter and the reader position from
its checkpoint."""
from __future__ import annotations

import pytest
import torch

import dali_mix as dm
from dali_mix import native
from dali_mix.torch import Loader
from pipelines.classification import train_pipeline


def batches(built, loader, n):
    out = []
    for images, targets in loader:
        out.append((images.clone(), targets.clone()))
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("executor", ["fused", "dali"])
def test_mid_epoch_resume_reproduces_the_remaining_batches(fmnist_small, executor):
    if executor == "fused":
        native.load()
    recipe = dm.MixRecipe(methods=["mixup", "cutmix", "resizemix", "fmix", "random_erasing"],
                          num_classes=10, label_smoothing=0.1, fmix_bank_size=8)

    def build(checkpoint=None):
        built = train_pipeline(str(fmnist_small.train_dir), batch_size=16, image_size=28, crop="pad",
                               recipe=recipe, seed=3, enable_checkpointing=True,
                               checkpoint=checkpoint, executor=executor)
        loader = Loader(built.pipe, built.output_map, built.reader_name, num_classes=10)
        built.clock.runs_per_epoch = loader.runs_per_epoch
        return built, loader

    built, loader = build()
    batches(built, loader, 5)  # into the first epoch
    saved = loader.checkpoint()
    expected = batches(built, loader, 6)
    built2, loader2 = build(saved)
    resumed = batches(built2, loader2, 6)
    assert len(resumed) == len(expected) == 6
    for (xa, ta), (xb, tb) in zip(expected, resumed):
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)
        torch.testing.assert_close(ta, tb, rtol=0, atol=0)
    mixed = torch.cat([t.max(1).values < 0.9 for _, t in expected]).float().mean()
    assert mixed > 0.3  # the batches are mixed (4 of 5 candidates mix)
