"""An ImageNet-like JPEG ImageFolder, built offline from the real photographs in ``skimage.data``.

For benchmarks that need ImageNet's decode and resize cost (JPEG, about 500x375, RGB) without
ImageNet itself. Each class is one real photograph shipped in the scikit-image wheel
(astronaut, Chelsea the cat, coffee, rocket, Hubble deep field, ...; grayscale ones turned
into 3 identical channels); its images are random crops of that photograph rescaled to
ImageNet-typical sizes: mostly 500 px on the long side, aspect 4:3, 3:2, 1:1 or 16:9, 3/4 of
them landscape, some long sides between 375 and 640 px, half of them mirrored.

Layout under ``ROOT`` (default ``$DALI_MIX_DATA/imagenet-like-<num_images>``)::

    ROOT/class_000/img_000000.jpg      RGB baseline JPEG, quality 90 by default
    ROOT/class_001/img_000001.jpg      image i belongs to class i % num_classes
    ROOT/file_list.txt                 "class_000/img_000000.jpg 0" per line (DALI file_list)
    ROOT/manifest.json                 completion marker, written last

Use it as ``fn.readers.file(file_root=ROOT)`` or ``fn.readers.file(file_root=ROOT,
file_list=ROOT/"file_list.txt")``; both give label = class number. The build is cached and
atomic, like :func:`dali_mix.data.fashion_mnist.prepare_fashion_mnist`.
"""
from __future__ import annotations

import datetime as _dt
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from dali_mix.data.fashion_mnist import build_atomically, data_home, read_manifest

__all__ = ["SOURCES", "build_imagenet_like", "load_source", "random_size"]

FORMAT = "dali-mix/imagenet-like/1"
FILE_LIST = "file_list.txt"

#: Real photographs shipped inside the scikit-image wheel (no download needed), class order.
#: Colour photographs first, then grayscale ones (turned into RGB). ``cat`` is omitted: it is
#: the same photograph as ``chelsea``.
SOURCES = [
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "stereo_motorcycle",
    "camera", "coins", "moon", "grass", "gravel", "brick", "clock", "cell", "page", "text",
]
#: Extra classes beyond len(SOURCES) reuse a photograph rotated by 90, 180 or 270 degrees.
MAX_CLASSES = 4 * len(SOURCES)

LONG_SIDE = 500  # pixels: ImageNet's most common long side
ASPECTS = (4 / 3, 3 / 2, 1.0, 16 / 9)  # long side / short side
ASPECT_P = (0.55, 0.25, 0.1, 0.1)


@functools.lru_cache(maxsize=None)
def load_source(name: str) -> np.ndarray:
    """One ``skimage.data`` photograph as uint8 RGB, shape (H, W, 3), read-only.

    Grayscale photographs get 3 identical channels; for ``stereo_motorcycle`` the left view.
    """
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle -> (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"skimage.data.{name}: expected uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3])
    image.flags.writeable = False
    return image


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """An ImageNet-like ``(width, height)`` in pixels, e.g. (500, 375) or (333, 500)."""
    long_side = LONG_SIDE if rng.random() < 0.75 else int(rng.integers(375, 641))
    aspect = float(rng.choice(ASPECTS, p=ASPECT_P))
    short_side = int(round(long_side / aspect))
    landscape = rng.random() < 0.75
    return (long_side, short_side) if landscape else (short_side, long_side)


def _random_crop_box(rng: np.random.Generator, src_w: int, src_h: int,
                     aspect: float) -> tuple[int, int, int, int]:
    """A crop ``(left, top, right, bottom)`` of aspect ``aspect`` (w/h), 35..100% of the
    largest such crop by side length, at a uniform position inside the source."""
    max_w = min(src_w, src_h * aspect)
    scale = rng.uniform(0.35, 1.0)
    w = max(8, int(max_w * scale))
    h = max(8, min(src_h, int(round(w / aspect))))
    left = int(rng.integers(0, src_w - w + 1))
    top = int(rng.integers(0, src_h - h + 1))
    return left, top, left + w, top + h


def _make_image(index: int, label: int, seed: int) -> Image.Image:
    """Image ``index`` of class ``label``: a random crop of its photograph, rescaled. The
    random stream depends only on ``(seed, index)``, so the result is order-independent."""
    rng = np.random.default_rng([seed, index])
    source = Image.fromarray(load_source(SOURCES[label % len(SOURCES)]))
    rotation = 90 * (label // len(SOURCES))
    if rotation:
        source = source.rotate(rotation, expand=True)
    width, height = random_size(rng)
    box = _random_crop_box(rng, source.width, source.height, width / height)
    image = source.resize((width, height), Image.Resampling.BICUBIC, box=box)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _relative_path(index: int, label: int) -> str:
    return f"class_{label:03d}/img_{index:06d}.jpg"


def _write_images(folder: Path, num_images: int, num_classes: int, seed: int,
                  quality: int) -> list[tuple[str, int]]:
    """Write all JPEGs (thread pool: PIL releases the GIL while resizing and encoding)."""
    for label in range(num_classes):
        (folder / f"class_{label:03d}").mkdir(parents=True)
    entries = [(_relative_path(i, i % num_classes), i % num_classes) for i in range(num_images)]

    def write(i: int) -> None:
        rel, label = entries[i]
        _make_image(i, label, seed).save(folder / rel, format="JPEG", quality=quality)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(write, range(num_images)))
    return entries


def _write_file_list(folder: Path, entries: list[tuple[str, int]]) -> None:
    """DALI ``file_list``: ``<path relative to folder> <label>`` per line."""
    text = "".join(f"{rel} {label}\n" for rel, label in entries)
    (folder / FILE_LIST).write_text(text, encoding="ascii")


def build_imagenet_like(
    root: str | Path | None = None,
    num_images: int = 2000,
    num_classes: int = 10,
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """Build (or reuse) an ImageNet-like JPEG ImageFolder; see the module docstring.

    Args:
        root: output folder; default ``$DALI_MIX_DATA/imagenet-like-<num_images>``
            (``DALI_MIX_DATA`` defaults to ``~/.cache/dali-mix``). A cached build there with
            other parameters is replaced.
        num_images: total number of JPEGs; image i has label ``i % num_classes``.
        num_classes: 1 .. :data:`MAX_CLASSES` (72); class c shows photograph
            ``SOURCES[c % 18]`` rotated by ``90 * (c // 18)`` degrees.
        seed: random seed of crops, sizes and flips (same seed -> same bytes).
        quality: JPEG quality 1..100 (libjpeg scale; ImageNet-like is 90).

    Returns:
        The absolute folder path, holding ``class_NNN/`` folders of RGB JPEGs (sizes about
        500x375 pixels, portrait or landscape) and ``file_list.txt``.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    target = (Path(root).expanduser() if root is not None
              else data_home() / f"imagenet-like-{num_images}").absolute()
    params = {"num_images": num_images, "num_classes": num_classes, "seed": seed,
              "quality": quality, "sources": [SOURCES[c % len(SOURCES)] for c in range(num_classes)]}

    def is_valid(folder: Path, manifest: dict) -> bool:
        return (manifest.get("format") == FORMAT and manifest.get("params") == params
                and (folder / FILE_LIST).is_file())

    def build(tmp: Path) -> dict:
        entries = _write_images(tmp, num_images, num_classes, seed, quality)
        _write_file_list(tmp, entries)
        counts = np.bincount([label for _, label in entries], minlength=num_classes)
        return {
            "format": FORMAT,
            "params": params,
            "classes": [f"class_{c:03d}" for c in range(num_classes)],
            "per_class": counts.tolist(),
            "file_list": FILE_LIST,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    build_atomically(target, build, is_valid)
    return target


def describe(root: str | Path) -> dict | None:
    """The manifest of a built folder (parameters, class counts), or None if not built."""
    return read_manifest(Path(root))
