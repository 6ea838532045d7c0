"""A generated segmentation set: random shapes of known classes on textured backgrounds, with
their exact masks, written as image / mask PNG pairs.

    dali-mix data scenes [--root DIR] [--train N] [--val N] [--size S] [--seed S]

Layout (the "folder of images and a folder of masks with the same stems" that
`pipelines.segmentation` reads):

    ROOT/train/images/000000.png   RGB, S x S pixels
    ROOT/train/masks/000000.png    one-channel uint8 class map of the same size
    ROOT/val/...                   the same
    ROOT/manifest.json             the parameters, the class names and the counts

Classes (`CLASSES`): 0 background, then one class per shape kind (disc, square, triangle,
ring, bar). Each scene draws 1-4 shapes of random kinds, sizes, positions and colours (the
colour says nothing about the class: the shape does) over a smoothed-noise background of a
random hue; later shapes cover earlier ones, and the mask holds the class of the shape on top,
pixel for pixel (masks are drawn with the same polygons, without anti-aliasing). Deterministic
from the seed (scene i of a split from (seed, split, i)); cached: a second call with the same
parameters reads only the manifest.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dali_mix.data.fashion_mnist import build_atomically, data_home, read_manifest
from dali_mix.progress import Progress

FORMAT = "dali-mix-scenes-1"
CLASSES = ("background", "disc", "square", "triangle", "ring", "bar")
"""Class names; the mask value of a pixel is its index here."""
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ScenesData:
    """root: the set's folder; classes: the class names; counts: scenes per split."""

    root: Path
    classes: tuple[str, ...]
    counts: dict

    def split(self, name: str) -> tuple[Path, Path]:
        """(images folder, masks folder) of split `name` ("train" or "val")."""
        return self.root / name / "images", self.root / name / "masks"


def prepare_scenes(root: str | Path | None = None, *, train: int = 800, val: int = 200, size: int = 64,
                   seed: int = 0, progress: bool = True) -> ScenesData:
    """Build (or find in the cache) the scenes set; see the module docstring.

    Args:
        root: output folder (default ``$DALI_MIX_DATA/scenes-<size>``).
        train, val: scenes per split (>= 1). size: side of every scene, pixels (>= 16).
        seed: seeds every scene. progress: a progress bar on stderr.
    Raises: ValueError for a bad argument.
    """
    if train < 1 or val < 1:
        raise ValueError(f"train and val must be >= 1 scenes, got train={train}, val={val}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    target = (Path(root).expanduser() if root is not None else data_home() / f"scenes-{size}").absolute()
    counts = {"train": int(train), "val": int(val)}
    params = {"counts": counts, "size": int(size), "seed": int(seed), "classes": list(CLASSES)}

    def is_valid(folder: Path, manifest: dict) -> bool:
        return (manifest.get("format") == FORMAT and manifest.get("params") == params
                and all((folder / s / "masks").is_dir() for s in SPLITS))

    manifest = read_manifest(target)
    if manifest is None or not is_valid(target, manifest):
        def build(tmp: Path) -> dict:
            bar = Progress(sum(counts.values()), "scenes", enabled=progress, unit="scenes", log_every=10.0)
            for k, name in enumerate(SPLITS):
                (tmp / name / "images").mkdir(parents=True)
                (tmp / name / "masks").mkdir(parents=True)
                for i in range(counts[name]):
                    image, mask = draw_scene(np.random.default_rng([seed, k, i]), size)
                    Image.fromarray(image).save(tmp / name / "images" / f"{i:06d}.png")
                    Image.fromarray(mask).save(tmp / name / "masks" / f"{i:06d}.png")
                    bar.advance()
            bar.close()
            return {"format": FORMAT, "params": params, "classes": list(CLASSES), "counts": counts,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

        manifest = build_atomically(target, build, is_valid)
    return ScenesData(target, tuple(manifest["classes"]), dict(manifest["counts"]))


def draw_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (image (size, size, 3) uint8 RGB, mask (size, size) uint8 class ids)."""
    noise = rng.normal(0.0, 1.0, (size // 4 + 1, size // 4 + 1))
    noise = np.kron(noise, np.ones((4, 4)))[:size, :size]
    hue = rng.uniform(40, 200, 3)
    background = np.clip(hue + 25.0 * noise[..., None] + rng.normal(0, 6, (size, size, 3)), 0, 255)
    image = Image.fromarray(background.astype(np.uint8))
    mask = Image.new("L", (size, size), 0)
    pen, mask_pen = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(1, len(CLASSES)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        for shape in _shape(CLASSES[cls], rng, size):
            kind, xy, fill = shape
            getattr(pen, kind)(xy, fill=colour if fill else tuple(int(v) for v in background[0, 0]))
            getattr(mask_pen, kind)(xy, fill=cls if fill else 0)
    return np.asarray(image, np.uint8).copy(), np.asarray(mask, np.uint8).copy()


def _shape(name: str, rng: np.random.Generator, size: int) -> list[tuple[str, list, bool]]:
    """The drawing steps of one shape: (ImageDraw method, coordinates, filled: True = the
    shape's colour and class, False = a hole showing the background, class 0)."""
    r = float(rng.uniform(0.12, 0.3)) * size
    cx, cy = (float(v) for v in rng.uniform(r, size - r, 2))
    box = [cx - r, cy - r, cx + r, cy + r]
    if name == "disc":
        return [("ellipse", box, True)]
    if name == "square":
        return [("rectangle", box, True)]
    if name == "triangle":
        return [("polygon", [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], True)]
    if name == "ring":
        inner = 0.5 * r
        return [("ellipse", box, True), ("ellipse", [cx - inner, cy - inner, cx + inner, cy + inner], False)]
    if name == "bar":
        return [("rectangle", [cx - r, cy - 0.25 * r, cx + r, cy + 0.25 * r], True)]
    raise AssertionError(name)
