"""The GPU graph is defined on any machine: random_mix on GPU images builds its DALI graph (the
"dali" executor: every plan input a CPU argument, the check on the CPU, targets and noise moved
with .gpu()) and every output is on the GPU. Running it needs a GPU (the `gpu` tests)."""
from __future__ import annotations

import pytest
from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm

ALL = ["mixup", "cutmix", "resizemix", "fmix", "cutout", "random_erasing"]


@pytest.mark.parametrize("layout, normalize", [("HWC", True), ("HWC", False), ("CHW", False)])
@pytest.mark.parametrize("target", ["dense", "sparse"])
def test_gpu_graph_is_defined_with_every_output_on_the_gpu(layout, normalize, target):
    recipe = dm.MixRecipe(methods=ALL, num_classes=10, layout=layout, target=target, cutout_length=4)  # 8x8 images

    @pipeline_def(batch_size=4, num_threads=1, device_id=0)
    def pipe():
        x = fn.external_source(name="x", layout=layout).gpu()
        y = fn.external_source(name="y")
        norm = dm.Normalization([0.0] * 3, [1.0] * 3, dtype=types.FLOAT16) if normalize else None
        return dm.random_mix(x, y, recipe, image_size=8, normalize=norm).outputs()

    p = pipe()
    p._build_graph()  # defines the graph (DALI's own step before build); no GPU needed
    assert [o.device for o in p._graph_outputs] == ["gpu"] * len(dm.output_names(recipe))
