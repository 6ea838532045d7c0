"""Complete train and val pipelines for image classification, CPU or GPU, with optional mixing.

    built = train_pipeline("/data/imagenet/train", batch_size=256, image_size=224, device="gpu",
                           device_id=local_rank, shard_id=rank, num_shards=world_size,
                           recipe=dali_mix.MixRecipe(num_classes=1000))
    loader = dali_mix.torch.Loader(built.pipe, built.output_map, built.reader_name,
                                   num_classes=built.num_classes)

Train: decode with random resized crop (scale, ratio) then resize to `image_size`, or, for small
images, pad + random crop (`crop="pad"`); random horizontal flip; normalise; NCHW float32
(float16 optional); then mixing with `recipe`. Val: decode, resize the shorter side to
`image_size / crop_fraction` and centre-crop `image_size` (`crop="pad"`: resize to image_size,
no crop); normalise; no randomness; every sample read exactly once per epoch, also when sharded.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from nvidia.dali import fn, pipeline_def, types

import dali_mix as dm
from dali_mix import native
from dali_mix.recipe import image_problems
from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD, Normalization, normalize_only
from dali_mix.schedule import BatchClock, MixOffSchedule
from dali_mix.data.sources import Source, resolve_source
from pipelines.sources import read

DEVICES = ("cpu", "gpu")
_EXPLAIN = ("labels_a", "labels_b", "lam", "method")
_EXPLAIN_SLOTS = ("labels", "shares")  # recipes with a many-source candidate (RICAP, Mosaic)


def _explained(recipe) -> list[str]:
    """The `explain` outputs of `recipe` that its usual outputs do not already give."""
    names = list(_EXPLAIN) + (list(_EXPLAIN_SLOTS) if dm.mix.label_slots(recipe) > 2 else [])
    return [n for n in names if n not in dm.output_names(recipe)]


@dataclass
class BuiltPipeline:
    """A pipeline and what a loader needs to know about it."""

    pipe: object
    output_map: list
    reader_name: str
    source: Source
    num_classes: int
    recipe: object = None
    fmix_bank: object = None
    clock: object = None  # dali_mix.schedule.BatchClock of the pipeline's external sources


def _check_common(batch_size, image_size, device, shard_id, num_shards, num_threads):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise ValueError(f"image_size must be an integer >= 1, got {image_size!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if not (isinstance(num_shards, int) and num_shards >= 1 and isinstance(shard_id, int) and 0 <= shard_id < num_shards):
        raise ValueError(f"shard_id must be in [0, num_shards) and num_shards >= 1, got shard_id={shard_id!r}, "
                         f"num_shards={num_shards!r}")
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")


def _source(data, num_classes):
    source = data if isinstance(data, Source) else resolve_source(data)
    n = num_classes if num_classes is not None else source.num_classes
    if not n:
        raise ValueError(f"data source {source.root!r} does not name its classes (no classes.txt): "
                         "pass num_classes")
    if source.max_label is not None and source.max_label >= n:
        raise ValueError(f"num_classes={n} but the data source {source.root!r} has labels up to {source.max_label}")
    return source, n


def _device_args(device, device_id):
    if device == "gpu":
        return "mixed", (0 if device_id is None else device_id)
    return "cpu", None


def _dtype(dtype: str):
    return types.FLOAT16 if dtype == "float16" else types.FLOAT


def _normalise(images, *, mirror, dtype, crop=None, fused: bool | None = False):
    """uint8 HWC -> normalised CHW (ImageNet mean/std), flipped where `mirror`, centre-cropped
    to `crop` px when given. Without a crop, on CPU images, `fused` (None: when it can be
    built) uses dali-mix's fused operator, the same values in less CPU time than DALI's
    `crop_mirror_normalize` (the one the mixing pipelines use, so that "with" and "without
    mixing" differ only by the mixing)."""
    if crop is None:
        executor = "fused" if native.use(fused, images) else "dali"
        return normalize_only(images, Normalization(IMAGENET_MEAN, IMAGENET_STD, mirror=mirror),
                              executor, layout="HWC", channels=3, dtype=_dtype(dtype))
    return fn.crop_mirror_normalize(
        images, dtype=_dtype(dtype), output_layout="CHW", crop=(crop, crop),
        mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), mirror=mirror)


def crop_problem(crop: str, image_size: int, pad: int = 4) -> str | None:
    """Why `crop` cannot work on `image_size` px images, or None: crop="pad" shifts the image
    by up to `pad` px with zero fill, so an image of `pad` px or less is sometimes shifted
    entirely out of the frame (a blank sample with a label)."""
    if crop == "pad" and image_size <= pad:
        return (f"image_size {image_size} with crop 'pad': the random shift of up to {pad} px moves some "
                f"images entirely out of the frame (blank samples); valid range with crop 'pad': "
                f"image_size >= {pad + 1}")
    return None


def train_problems(recipe, *, image_size: int, crop: str, pad: int = 4) -> list[str]:
    """The train pipeline's settings against its images before it is built: ValueError (the
    field, its value, the valid range) for a crop or recipe value that cannot work on
    `image_size` px images normalised with ImageNet's mean and std; warning lines for
    degenerate ones (`dali_mix.recipe.image_problems`)."""
    why = crop_problem(crop, image_size, pad)
    if why:
        raise ValueError(why)
    if recipe is None:
        return []
    return image_problems(recipe, image_size, image_size,
                          Normalization(IMAGENET_MEAN, IMAGENET_STD).value_range(recipe.channels))


def _check_train_augment(crop, dtype, scale, ratio, image_size=None, pad=4) -> None:
    if crop not in ("random_resized", "pad"):
        raise ValueError(f"crop must be 'random_resized' or 'pad', got {crop!r}")
    why = crop_problem(crop, image_size, pad) if image_size is not None else None
    if why:
        raise ValueError(why)
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    s_lo, s_hi = float(scale[0]), float(scale[1])
    if not 0 < s_lo <= s_hi <= 1:
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale!r}")
    r_lo, r_hi = float(ratio[0]), float(ratio[1])
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {ratio!r}")


def decode_train(encoded, *, decoder: str, crop: str, scale, ratio, image_size: int):
    """Training decode: random resized crop (crop="random_resized") or plain decode, resized to
    image_size x image_size. Encoded bytes -> uint8 HWC on the decoder's device ("cpu", or
    "mixed" -> GPU). Mixing, when any, comes next (cheap on uint8), then `finish_train`."""
    if crop == "random_resized":
        images = fn.decoders.image_random_crop(encoded, device=decoder, output_type=types.RGB,
                                               random_area=[float(scale[0]), float(scale[1])],
                                               random_aspect_ratio=[float(ratio[0]), float(ratio[1])])
    else:
        images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
    return fn.resize(images, size=[image_size, image_size])


def finish_train(images, *, crop: str, pad: int, image_size: int, dtype: str,
                 fused: bool | None = None):
    """Random horizontal flip and normalisation to CHW float (and, for crop="pad", a random
    shift of up to `pad` px with zero fill): uint8 HWC -> float32/float16 CHW. `fused`: as
    `train_pipeline`'s."""
    images = _normalise(images, mirror=fn.random.coin_flip(), dtype=dtype, fused=fused)
    return random_shift(images, crop=crop, pad=pad, image_size=image_size)


def random_shift(images, *, crop: str, pad: int, image_size: int):
    """For crop="pad": shift normalised CHW images by up to `pad` px (zero fill); else as is."""
    if crop == "random_resized":
        return images
    shifts = list(range(-pad, pad + 1))  # `values=`: exact integers (range= rounds floats)
    dy = fn.random.uniform(values=shifts, dtype=types.INT32)
    dx = fn.random.uniform(values=shifts, dtype=types.INT32)
    return fn.slice(images, fn.cast(fn.stack(dy, dx), dtype=types.FLOAT),
                    fn.cast(fn.stack(dy * 0 + image_size, dx * 0 + image_size), dtype=types.FLOAT),
                    axis_names="HW", normalized_anchor=False, normalized_shape=False,
                    out_of_bounds_policy="pad", fill_values=0)


def train_pipeline(data, *, batch_size: int, image_size: int, device: str = "cpu", device_id=None,
                   shard_id: int = 0, num_shards: int = 1, seed: int = 0, num_threads: int = 2,
                   recipe: "dm.MixRecipe | None" = None, num_classes: int | None = None,
                   crop: str = "random_resized", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), pad: int = 4,
                   dtype: str = "float32", enable_checkpointing: bool = False, checkpoint=None,
                   prefetch_queue_depth: int = 2, reader_name: str = "Reader",
                   mix_off_from_epoch: int | None = None, explain: bool = False,
                   executor: str = "auto") -> BuiltPipeline:
    """Build the training pipeline (see module docstring).

    Args:
        data: ImageFolder root, DALI file list (.txt), webdataset shard(s)/dir/glob, or a Source.
        batch_size: samples per batch per process; image_size: output side in pixels.
        device: "cpu" (decode on the CPU, `device_id=None` allowed) or "gpu" (decoder "mixed").
        shard_id, num_shards: this process's part of the data (global rank, world size).
        seed: reader shuffling uses `seed` on every shard (so shards stay disjoint); the
            augmentation seed is seed * 1000 + shard_id + 1 (different on every shard).
        recipe: a MixRecipe, or None for no mixing (outputs then images, labels).
        crop: "random_resized" (ImageNet style) or "pad" (pad by `pad` px + random crop, for
            small images such as 28x28 / 32x32).
        dtype: "float32" or "float16" images.
        enable_checkpointing, checkpoint: DALI checkpointing, and a checkpoint (from
            `Pipeline.checkpoint()`) to restore the reader position and random state from.
        mix_off_from_epoch: epoch (0-based) from which samples are no longer mixed (timm's
            `mixup_off_epoch`), switched inside the running pipeline.
        explain: also output, after the usual outputs, "labels_a", "labels_b", "lam" and
            "method" (index into recipe.candidates; len(candidates) = not mixed), e.g. for
            `dali-mix preview`; needs a recipe.
        executor: `random_mix`'s executor: "auto" (default: on CPU images the fused C++
            operator, which also normalises when there is no recipe, when it can be built),
            "fused" (required) or "dali" (DALI's operators: the graph the GPU path runs).
        The returned `clock` must get `runs_per_epoch` (from the Loader) before the first run
        when FMix or `mix_off_from_epoch` is used, and `run_offset` on resume.
    Returns: a BuiltPipeline (pipe unbuilt; outputs named by `output_map`).
    """
    _check_common(batch_size, image_size, device, shard_id, num_shards, num_threads)
    _check_train_augment(crop, dtype, scale, ratio, image_size, pad)
    source, n_classes = _source(data, num_classes)
    if recipe is not None:
        if recipe.num_classes != n_classes:
            raise ValueError(f"recipe.num_classes={recipe.num_classes} but the data has {n_classes} classes")
        # mixing runs on the uint8 HWC images before normalisation (a quarter of the bytes)
        recipe = recipe.with_(layout="HWC", fmix_size=recipe.fmix_size or (image_size, image_size))
    if executor not in ("auto", "fused", "dali"):
        raise ValueError(f"executor must be 'auto', 'fused' or 'dali', got {executor!r}")
    fused = {"auto": None, "fused": True, "dali": False}[executor]  # for the no-mixing path
    decoder, dev_id = _device_args(device, device_id)
    fmix_bank = None
    clock = BatchClock()
    if recipe is not None and "fmix" in recipe.candidates:
        fmix_bank = dm.FMixMaskBank.from_recipe(recipe, batch_size, seed=recipe.seed + seed,
                                                clock=clock)

    @pipeline_def(batch_size=int(batch_size), num_threads=num_threads, device_id=dev_id,
                  seed=seed * 1000 + shard_id + 1,
                  enable_checkpointing=enable_checkpointing, prefetch_queue_depth=prefetch_queue_depth)
    def pipe():
        encoded, labels = read(source, train=True, shard_id=shard_id, num_shards=num_shards,
                               seed=seed, name=reader_name)
        images = decode_train(encoded, decoder=decoder, crop=crop, scale=scale, ratio=ratio,
                              image_size=image_size)
        if recipe is None:
            return finish_train(images, crop=crop, pad=pad, image_size=image_size, dtype=dtype,
                                fused=fused), labels
        enabled = None
        if mix_off_from_epoch is not None:
            enabled = MixOffSchedule(batch_size, mix_off_from_epoch, clock)
        norm = Normalization(IMAGENET_MEAN, IMAGENET_STD, mirror=fn.random.coin_flip(), dtype=_dtype(dtype))
        out = dm.random_mix(images, labels, recipe, fmix_bank=fmix_bank, enabled=enabled,
                            image_size=(image_size, image_size), normalize=norm, clock=clock,
                            executor=executor)
        out = out._replace(images=random_shift(out.images, crop=crop, pad=pad, image_size=image_size))
        if explain:
            return out.outputs() + tuple(getattr(out, n) for n in _explained(recipe))
        return out.outputs()

    if explain and recipe is None:
        raise ValueError("explain=True needs a recipe")
    output_map = ["images", "labels"] if recipe is None else dm.output_names(recipe)
    if explain:
        output_map = output_map + _explained(recipe)
    kw = {} if checkpoint is None else {"checkpoint": checkpoint}
    return BuiltPipeline(pipe(**kw), output_map, reader_name, source, n_classes, recipe, fmix_bank, clock)


def val_pipeline(data, *, batch_size: int, image_size: int, device: str = "cpu", device_id=None,
                 shard_id: int = 0, num_shards: int = 1, num_threads: int = 2,
                 num_classes: int | None = None, crop: str = "center", crop_fraction: float = 0.875,
                 dtype: str = "float32", reader_name: str = "Reader") -> BuiltPipeline:
    """Build the validation pipeline: outputs (images NCHW, labels int32 (N, 1)).

    crop: "center" (resize shorter side to round(image_size / crop_fraction), centre crop) or
    "pad"/"none" (resize to image_size x image_size, for small images). Deterministic.
    """
    _check_common(batch_size, image_size, device, shard_id, num_shards, num_threads)
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
    source, n_classes = _source(data, num_classes)
    decoder, dev_id = _device_args(device, device_id)

    @pipeline_def(batch_size=int(batch_size), num_threads=num_threads, device_id=dev_id, seed=0)
    def pipe():
        encoded, labels = read(source, train=False, shard_id=shard_id, num_shards=num_shards, name=reader_name)
        images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
        if crop == "center":
            images = fn.resize(images, resize_shorter=round(image_size / crop_fraction))
            images = _normalise(images, mirror=0, dtype=dtype, crop=image_size)
        else:
            images = fn.resize(images, size=[image_size, image_size])
            images = _normalise(images, mirror=0, dtype=dtype)
        return images, labels

    return BuiltPipeline(pipe(), ["images", "labels"], reader_name, source, n_classes)
