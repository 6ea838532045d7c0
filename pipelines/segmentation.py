"""Train and val pipelines for semantic segmentation: image + PNG mask pairs, the same geometry
applied to both, then mixing of images and masks by one plan.

    built = train_pipeline("/data/scenes/train", batch_size=32, image_size=64,
                           recipe=dali_mix.MixRecipe(methods=["cutmix"], num_classes=6))
    loader = Loader(built.pipe, built.output_map, built.reader_name)   # from dali_mix.torch
    for images, masks, masks_b, mask_weight in loader:
        loss = mixed_segmentation_loss(model(images), masks, masks_b, mask_weight)

Data (`pair_files`): a folder holding `images/` and `masks/` with the same file stems (what
`dali-mix data scenes` writes), or the Pascal VOC layout (`JPEGImages/`,
`SegmentationClass/`, `ImageSets/Segmentation/<split>.txt`). Masks are one-channel PNGs
holding class ids; palette PNGs (VOC's own masks) are refused by name, since DALI's decoder
turns palette entries into colours: convert them once with `index_masks` (`python -m
pipelines.segmentation --index-masks SRC DST`), which keeps the ids.

Train: one random crop window (area `scale`, aspect `ratio`: `fn.random_crop_generator`) cut
from both the image and the mask, resized to `image_size` (the image linearly, the mask by
nearest neighbour), one coin flip for both (the mirror of `random_mix`'s normalisation), then
`random_mix(..., masks=)`. Two file readers with the same seed and shuffling read the images
and the masks; every batch checks that they read the same pairs (an error, never a silently
wrong mask). Val: both resized to `image_size` (mask nearest), no randomness, every pair once.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm
from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD, Normalization, normalize_only
from dali_mix.schedule import BatchClock

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class SegmentationPipeline:
    """pipe, its output_map (for `dali_mix.torch.Loader`), reader_name, the pairs it reads."""

    pipe: object
    output_map: list
    reader_name: str
    images: list
    masks: list
    clock: BatchClock | None = None  # of the train pipeline's plan (dali_mix.schedule)


@dataclass(frozen=True)
class PairedFolder:
    """The image/mask pairs of one split (`pair_files`): root, split, images, masks (paths)."""

    root: str
    split: str
    images: tuple
    masks: tuple

    @classmethod
    def of(cls, data: str | Path, split: str) -> "PairedFolder":
        images, masks = pair_files(data, split)
        return cls(str(data), split, tuple(images), tuple(masks))

    @property
    def num_samples(self) -> int:
        return len(self.images)


def _files(data, split: str) -> tuple[list[str], list[str]]:
    if isinstance(data, PairedFolder):
        return list(data.images), list(data.masks)
    return pair_files(data, split)


def pair_files(data: str | Path, split: str = "train") -> tuple[list[str], list[str]]:
    """(image files, mask files), pairwise, sorted by stem, of the folder `data`: `images/` +
    `masks/` with the same stems, or a Pascal VOC root (the stems of
    `ImageSets/Segmentation/<split>.txt`). Raises ValueError naming what is missing: a stem
    without its mask or image, an empty folder, a palette PNG mask."""
    root = Path(data)
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise ValueError(f"{root}: a Pascal VOC layout without {listing}")
        stems = [s.strip() for s in listing.read_text().split() if s.strip()]
        images = [root / "JPEGImages" / f"{s}.jpg" for s in stems]
        masks = [root / "SegmentationClass" / f"{s}.png" for s in stems]
        missing = [str(p) for p in images + masks if not p.is_file()]
        if missing:
            raise ValueError(f"{listing} names {len(missing)} files that do not exist, e.g. {missing[0]}")
    else:
        if not (root / "images").is_dir() or not (root / "masks").is_dir():
            raise ValueError(f"{root}: expected images/ and masks/ folders with the same file stems "
                             "(or a Pascal VOC root with JPEGImages/ and SegmentationClass/)")
        by_stem = {p.stem: p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        mask_of = {p.stem: p for p in (root / "masks").iterdir() if p.suffix.lower() == ".png"}
        lonely = sorted(set(by_stem) ^ set(mask_of))
        if lonely:
            which = "mask" if lonely[0] in by_stem else "image"
            raise ValueError(f"{root}: {len(lonely)} stems without a partner file, e.g. {lonely[0]!r} has no {which}")
        stems = sorted(by_stem)
        images, masks = [by_stem[s] for s in stems], [mask_of[s] for s in stems]
    if not images:
        raise ValueError(f"{root}: no image/mask pairs")
    for m in masks:
        if _png_colour_type(m) == 3:
            raise ValueError(f"{m} is a palette PNG: DALI's decoder turns palette entries into colours, "
                             f"not class ids; convert the masks once with `python -m pipelines.segmentation "
                             f"--index-masks {m.parent} DST` (keeps the ids) and read DST")
    return [str(p) for p in images], [str(p) for p in masks]


def _png_colour_type(path: Path) -> int | None:
    """The PNG colour type of `path` (0 grey, 2 RGB, 3 palette, ...), None if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[25] if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 else None


def index_masks(src: str | Path, dst: str | Path) -> int:
    """Write every PNG of `src` to `dst` as a one-channel PNG of its class ids (a palette PNG's
    indices, as Pascal VOC stores them); returns the number of files."""
    from PIL import Image

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in sorted(Path(src).glob("*.png")):
        with Image.open(p) as im:
            ids = np.asarray(im if im.mode in ("P", "L") else im.convert("L"), np.uint8)
        tmp = dst / f".{p.name}.tmp"
        Image.fromarray(ids, mode="L").save(tmp, format="PNG")
        tmp.replace(dst / p.name)
        n += 1
    return n


def _paired(encoded, images_idx, masks_idx):
    """`encoded` (the images' file bytes), after a per-batch check that the images' and the
    masks' readers read the same pairs: every operator that decodes the images depends on it."""
    def check(shapes, a, b):
        a, b = np.concatenate([np.ravel(x) for x in a]), np.concatenate([np.ravel(x) for x in b])
        if not np.array_equal(a, b):
            raise ValueError(f"segmentation pipeline: the image and mask readers are out of step "
                             f"(image files {a[:4].tolist()}..., mask files {b[:4].tolist()}...)")
        return shapes

    shapes = fn.python_function(encoded.shape(dtype=types.INT64, device="cpu"), images_idx, masks_idx,
                                function=check, batch_processing=True, num_outputs=1)
    return fn.reshape(encoded, shape=shapes)


def train_pipeline(data, *, batch_size: int, image_size: int, recipe, device: str = "cpu",
                   device_id=None, num_threads: int = 2, seed: int = 0, split: str = "train",
                   scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), shard_id: int = 0, num_shards: int = 1,
                   source_map: bool = False, executor: str = "auto", enable_checkpointing: bool = False,
                   checkpoint=None, labels: str = "masks") -> SegmentationPipeline:
    """The train pipeline (see the module docstring). data: a folder (`pair_files`) or a
    `PairedFolder`. recipe: a `dali_mix.MixRecipe` (HWC, three
    channels; `num_classes` the classes of the masks). Outputs (`output_map`): images (N, 3,
    image_size, image_size) float32 normalised, masks, masks_b (N, image_size, image_size)
    int64, mask_weight (N,) float32 (and source with `source_map`); no image-level targets.
    seed: the readers shuffle with `seed` on every shard; the augmentation seed is
    seed * 1000 + shard_id + 1. enable_checkpointing, checkpoint: DALI checkpointing (a resumed
    run). The returned `clock` must get `runs_per_epoch` (from the Loader) before the first run.
    labels: "masks" (the above), or "presence": multi-label classification of the same pairs,
    each image labelled with the classes its (cropped) mask shows (`presence`: multi-hot over
    classes 1..C-1, class 0 the background), mixed by a recipe with `label_format="multi_hot"`
    and `num_classes` C - 1; outputs images and targets (`dali_mix.output_names(recipe)`)."""
    _check_labels(labels, recipe)
    images_files, masks_files = _files(data, split)
    reader = dict(random_shuffle=True, seed=seed, shard_id=shard_id, num_shards=num_shards,
                  labels=list(range(len(images_files))))

    clock = BatchClock()

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  seed=seed * 1000 + shard_id + 1, enable_checkpointing=enable_checkpointing)
    def pipe():
        jpegs, idx = fn.readers.file(files=images_files, name="Reader", **reader)
        pngs, midx = fn.readers.file(files=masks_files, **reader)
        jpegs = _paired(jpegs, idx, midx)
        images = fn.decoders.image(jpegs, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
        masks = fn.decoders.image(pngs, output_type=types.GRAY)
        anchor, shape = fn.random_crop_generator(masks.shape(dtype=types.INT64), random_area=list(scale),
                                                 random_aspect_ratio=list(ratio))
        images = fn.resize(fn.slice(images, start=anchor, shape=shape, axes=[0, 1]),
                           size=[image_size, image_size])
        masks = fn.resize(fn.slice(masks, start=anchor, shape=shape, axes=[0, 1]), size=[image_size, image_size],
                          interp_type=types.INTERP_NN, antialias=False)
        flip = fn.random.coin_flip()
        norm = Normalization(IMAGENET_MEAN, IMAGENET_STD, mirror=flip)
        if labels == "presence":
            out = dm.random_mix(images, presence(masks, recipe.num_classes + 1), recipe, image_size=image_size,
                                normalize=norm, executor=executor, clock=clock)
            return out.outputs()
        out = dm.random_mix(images, idx * 0, recipe, image_size=image_size, normalize=norm, masks=masks,
                            source_map=source_map, executor=executor, clock=clock)  # no image labels
        return tuple(getattr(out, n) for n in names)

    names = ["images", "masks", "masks_b", "mask_weight"] + (["source"] if source_map else [])
    if labels == "presence":
        names = dm.output_names(recipe)
    kw = {} if checkpoint is None else {"checkpoint": checkpoint}
    return SegmentationPipeline(pipe(**kw), names, "Reader", images_files, masks_files, clock)


def val_pipeline(data, *, batch_size: int, image_size: int, device: str = "cpu", device_id=None,
                 num_threads: int = 2, split: str = "val", shard_id: int = 0,
                 num_shards: int = 1, presence_classes: int | None = None) -> SegmentationPipeline:
    """The val pipeline: images (N, 3, S, S) float32 normalised and masks (N, S, S) int64, both
    resized to `image_size` (the mask by nearest neighbour); each pair once per epoch, in order
    (readers with `pad_last_batch`, for `dali_mix.torch.Loader(train=False)`).
    presence_classes: C, for multi-label classification: images and targets instead, the
    (N, C - 1) float32 multi-hot classes 1..C-1 each mask shows (`presence`)."""
    images_files, masks_files = _files(data, split)
    reader = dict(random_shuffle=False, shard_id=shard_id, num_shards=num_shards,
                  labels=list(range(len(images_files))), pad_last_batch=True)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id)
    def pipe():
        jpegs, idx = fn.readers.file(files=images_files, name="Reader", **reader)
        pngs, midx = fn.readers.file(files=masks_files, **reader)
        jpegs = _paired(jpegs, idx, midx)
        images = fn.decoders.image(jpegs, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
        images = fn.resize(images, size=[image_size, image_size])
        masks = fn.resize(fn.decoders.image(pngs, output_type=types.GRAY), size=[image_size, image_size],
                          interp_type=types.INTERP_NN, antialias=False)
        images = normalize_only(images, Normalization(IMAGENET_MEAN, IMAGENET_STD), "dali", layout="HWC",
                                channels=3)
        if presence_classes is not None:
            targets = presence(masks, presence_classes)
            return images, targets.gpu() if device == "gpu" else targets
        masks = fn.squeeze(fn.cast(masks, dtype=types.INT64), axes=[2])
        return images, masks.gpu() if device == "gpu" else masks

    names = ["images", "masks"] if presence_classes is None else ["images", "targets"]
    return SegmentationPipeline(pipe(), names, "Reader", images_files, masks_files)


def presence(masks, num_classes: int):
    """(C - 1,) float32 multi-hot per sample: 1 for each class 1..C-1 that appears in the mask
    ((H, W, 1) uint8 class ids < C; class 0, the background, is not a label), CPU."""
    hot = fn.one_hot(fn.reshape(fn.cast(masks, dtype=types.INT32), shape=[-1]), num_classes=int(num_classes),
                     dtype=types.FLOAT)
    return fn.reductions.max(hot, axes=[0])[1:]


def _check_labels(labels: str, recipe) -> None:
    if labels not in ("masks", "presence"):
        raise ValueError(f"labels must be 'masks' or 'presence', got {labels!r}")
    if labels == "presence" and recipe.label_format != "multi_hot":
        raise ValueError("labels='presence' gives multi-hot labels: the recipe needs label_format='multi_hot' "
                         f"(and num_classes = the masks' classes - 1), got label_format={recipe.label_format!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.segmentation")
    parser.add_argument("--index-masks", nargs=2, metavar=("SRC", "DST"), required=True,
                        help="write SRC's PNG masks (palette or grey) to DST as one-channel class-id PNGs")
    args = parser.parse_args(argv)
    n = index_masks(*args.index_masks)
    print(f"wrote {n} masks to {args.index_masks[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
