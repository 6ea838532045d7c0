"""Shared test set-up: `gpu` tests skip without a CUDA device; a small real data set; the
noise banks the tests' audio pipelines build go to a temporary folder, not the user's cache."""
import os
import tempfile

import pytest

# set before any test (and inherited by the train.py subprocesses): tests write noise files of
# their own into tmp_path, whose banks would otherwise pile up in ~/.cache/dali-mix/noise-banks
os.environ.setdefault("DALI_MIX_NOISE_BANKS", tempfile.mkdtemp(prefix="dali-mix-test-noise-banks-"))


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fmnist_small():
    """Real Fashion-MNIST, a balanced subset of 600 images per split (cached conversion)."""
    from dali_mix.data.fashion_mnist import prepare_fashion_mnist

    return prepare_fashion_mnist(limit=600)
