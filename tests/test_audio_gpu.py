"""The audio graph on the GPU (every operator after the CPU-only decoder) gives the CPU graph's
values: the same random draws (they are CPU operators), the same operators on another device."""
from __future__ import annotations

import numpy as np
import pytest

import dali_mix as dm
from pipelines.audio import train_pipeline, val_pipeline
from test_audio import folder_source, tone, write_wav

pytestmark = pytest.mark.gpu


def _run(built):
    built.pipe.build()
    outs = built.pipe.run()
    return [np.stack([np.asarray(t.as_cpu()[i] if hasattr(t, "as_cpu") else t[i]) for i in range(len(t))])
            for t in outs]


def test_val_spectrograms_match_the_cpu_graph(tmp_path):
    files = [write_wav(tmp_path / f"t{r}.wav", tone(900, 1.2, r), r) for r in (8000, 16000, 44100)]
    src = folder_source(files, [0, 1, 0])
    cpu = _run(val_pipeline(src, batch_size=3, num_classes=2))
    gpu = _run(val_pipeline(src, batch_size=3, num_classes=2, device="gpu", device_id=0))
    np.testing.assert_allclose(gpu[0], cpu[0], atol=2e-3)
    np.testing.assert_array_equal(gpu[1], cpu[1])


def test_mixed_noisy_train_batch_matches_the_cpu_graph(tmp_path):
    files = [write_wav(tmp_path / f"c{k}.wav", tone(400 + 150 * k, 0.7)) for k in range(8)]
    noise = write_wav(tmp_path / "noise.wav", np.random.default_rng(0).uniform(-0.4, 0.4, 3 * 16000))
    recipe = dm.MixRecipe(num_classes=2, label_smoothing=0.1)
    kw = dict(batch_size=8, noise_files=[noise], recipe=recipe, num_classes=2, seed=4, executor="dali")
    cpu = _run(train_pipeline(folder_source(files, [k % 2 for k in range(8)]), **kw))
    gpu = _run(train_pipeline(folder_source(files, [k % 2 for k in range(8)]), device="gpu", device_id=0, **kw))
    np.testing.assert_allclose(gpu[0], cpu[0], atol=5e-3)
    np.testing.assert_allclose(gpu[1], cpu[1], atol=1e-6)
