"""``dali-mix preview``: a PNG grid of mixed training samples, made by the training pipeline.

::

    dali-mix preview [SOURCE ...] [--recipe FILE | --mix NAME] [--num N] [--num-classes C]
                     [--image-size S] [--seed S] [--device cpu|gpu] --out grid.png

Sound: a SOURCE folder in the Speech Commands layout (``dali-mix data spoken-commands``) is
previewed through :func:`pipelines.audio.train_pipeline`: each tile is a mixed log-mel
spectrogram (low frequencies at the bottom, time to the right; grey = normalised value, -3 black
to +3 white), ``image_size`` is then ``[mels, frames]``.

The samples come from :func:`pipelines.classification.train_pipeline` itself (``explain=True``,
one run of ``num`` samples), so the grid shows exactly what a training step sees: the crop
(``crop="pad"`` for images of at most 64 px, else ``"random_resized"``), the flip, and the
mixing of ``recipe``. Images are de-normalised with the pipeline's ImageNet mean/std, rounded to
uint8, and upscaled with nearest neighbour by an integer factor so that a tile is at least
112 px wide (28 -> 112). Under each tile: the method (``recipe.candidates[method]`` or
``none``) with lambda (3 decimals), then the class of the sample's own label (``a:``) and of
its partner's (``b:``).

The PNG carries its own description in a ``tEXt`` chunk with key ``"dali-mix"`` (read it back
with :func:`read_preview_metadata` or ``PIL.Image.open(path).text["dali-mix"]``), JSON::

    {"format": "dali-mix/preview/1", "source": ..., "image_size": S, "crop": "pad", "seed": 0,
     "upscale": 4, "num_classes": C, "classes": [...], "recipe": {...MixRecipe fields...},
     "tiles": [{"index": i, "row": r, "col": c, "box": [x0, y0, x1, y1],   # image pixels only
                "method": "cutmix", "method_id": 1, "label_a": 3, "label_b": 7,
                "class_a": "Dress", "class_b": "Sneaker", "lam": 0.53125,
                "target": [... C floats: the pipeline's target row ...]}, ...]}

``box`` is the tile's image region in the grid (x1, y1 exclusive, as ``Image.crop`` takes it);
``lam`` and ``target`` are the pipeline's float32 values (exact in JSON).

Python: ``image, tiles = make_preview(source, recipe, num=16)`` then
``save_preview(image, tiles, "grid.png")`` (``make_preview`` also leaves the full metadata in
``image.info["dali-mix"]``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tarfile
from pathlib import Path

import numpy as np

from dali_mix.methods import DEFAULT_CANDIDATES, METHODS

PNG_KEY = "dali-mix"
FORMAT = "dali-mix/preview/1"
SMALL_IMAGE = 64  # images of at most this side use crop="pad" (as train.py does for 28/32 px data)
LARGE_IMAGE_SIZE = 224  # default output side for larger images
MIN_TILE = 112  # tiles are upscaled (nearest, integer factor) to at least this side
MIX_NAMES = ("randommix", "none")  # besides the single method names of dali_mix.METHODS
_GAP = 4
_PAD = 2


# --------------------------------------------------------------------------- recipe / source


def default_source() -> str:
    """The embedded Fashion-MNIST train ImageFolder (converted on first use)."""
    from dali_mix.data.fashion_mnist import prepare_fashion_mnist

    return str(prepare_fashion_mnist().train_dir)


def recipe_for(mix: str, num_classes: int):
    """A MixRecipe from a `--mix` value: "randommix" (RandomMix's default candidates, equal
    weights, the default), "none", a method name, or a comma-separated list of method names."""
    from dali_mix.recipe import MixRecipe
    from dali_mix.methods import DEFAULT_CANDIDATES

    mix = mix.strip().lower()
    if mix == "randommix":
        methods = list(DEFAULT_CANDIDATES)
    elif mix == "none":
        methods = []
    else:
        methods = [m.strip() for m in mix.split(",") if m.strip()]
    return MixRecipe(methods=methods, num_classes=num_classes)


def _first_image_size(source) -> tuple[int, int] | None:
    """(width, height) of the first image of a resolved Source, or None if it cannot be read."""
    from PIL import Image

    from dali_mix.data.sources import IMAGE_EXTENSIONS

    try:
        if source.kind == "folder":
            with Image.open(source.files[0]) as im:
                return im.size
        if source.kind == "file_list":
            with open(source.files[0]) as f:
                for line in f:
                    parts = line.split()
                    if parts:
                        path = os.path.join(source.root, " ".join(parts[:-1]))
                        with Image.open(path) as im:
                            return im.size
            return None
        with tarfile.open(source.files[0]) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_EXTENSIONS):
                    with Image.open(tar.extractfile(member)) as im:
                        return im.size
    except Exception:  # noqa: BLE001 - only a hint for the crop; the pipeline reports real errors
        return None
    return None


def choose_geometry(source, image_size: int | None) -> tuple[int, str]:
    """(image_size, crop) for a source: small images (<= 64 px) use crop="pad" at their own size,
    others "random_resized" at 224 (or at `image_size` when given)."""
    size = _first_image_size(source)
    if size is not None:
        small = max(size) <= SMALL_IMAGE
        native = max(size)
    else:
        small = image_size is not None and image_size <= SMALL_IMAGE
        native = None
    if image_size is None:
        image_size = native if small and native else LARGE_IMAGE_SIZE
    return int(image_size), ("pad" if small else "random_resized")


def upscale_factor(image_size: int, min_tile: int = MIN_TILE) -> int:
    """Integer nearest-neighbour factor making a tile at least `min_tile` px (28 -> 4)."""
    return max(1, math.ceil(min_tile / image_size))


def denormalise(chw) -> np.ndarray:
    """A normalised CHW float image from the train pipeline -> HWC uint8 (rounded, clipped)."""
    from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD

    a = np.asarray(chw, dtype=np.float32).transpose(1, 2, 0)
    a = a * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def spectrogram_tile(chw) -> np.ndarray:
    """A (1, mels, frames) normalised log-mel spectrogram -> HWC uint8 RGB grey, low frequencies
    at the bottom, values -3..3 mapped to 0..255 (clipped)."""
    a = np.asarray(chw, dtype=np.float32)[0, ::-1]
    grey = np.clip(np.rint((a + 3.0) / 6.0 * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def upscale(hwc: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling (pixel replication) of an HWC array."""
    return np.repeat(np.repeat(hwc, factor, axis=0), factor, axis=1) if factor > 1 else hwc


def _as_numpy(tl) -> np.ndarray:
    if hasattr(tl, "as_cpu"):
        tl = tl.as_cpu()
    return np.stack([np.asarray(tl[i]) for i in range(len(tl))])


def build_preview_pipeline(source, recipe=None, *, num: int = 16, image_size: int | None = None,
                           seed: int = 0, device: str = "cpu"):
    """The train pipeline `make_preview` runs (built; one run = the `num` samples of the grid).

    Returns (BuiltPipeline, recipe, image_size, crop). `recipe` None: RandomMix over the four
    pair methods for the source's classes. A folder in the Speech Commands layout goes through
    the audio pipeline: image_size is then (mels, frames) and crop "spectrogram".
    """
    from dali_mix.data.audio_sources import is_speech_commands, resolve_speech_commands
    from pipelines.classification import train_pipeline
    from dali_mix.data.sources import Source, resolve_source

    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    if isinstance(source, (str, os.PathLike)) and is_speech_commands(source):
        from pipelines.audio import train_pipeline as audio_train_pipeline

        splits = resolve_speech_commands(source)
        recipe = recipe if recipe is not None else recipe_for("randommix", len(splits.classes))
        built = audio_train_pipeline(splits.train, noise_files=splits.noise_files, batch_size=num, device=device,
                                     device_id=0 if device == "gpu" else None, seed=seed, num_threads=2,
                                     recipe=recipe, explain=True, prefetch_queue_depth=1)
        built.pipe.build()
        return built, built.recipe, tuple(built.recipe.fmix_size), "spectrogram"
    src = source if isinstance(source, Source) else resolve_source(source)
    n_classes = src.num_classes or (recipe.num_classes if recipe is not None else 0)
    if not n_classes:
        raise ValueError(f"data source {src.root!r} does not name its classes (no classes.txt): "
                         "give a recipe with num_classes")
    if recipe is None:
        recipe = recipe_for("randommix", n_classes)
    size, crop = choose_geometry(src, image_size)
    built = train_pipeline(src, batch_size=num, image_size=size, device=device,
                           device_id=0 if device == "gpu" else None, seed=seed, num_threads=2,
                           recipe=recipe, num_classes=n_classes, crop=crop, explain=True,
                           prefetch_queue_depth=1)
    built.pipe.build()
    return built, built.recipe, size, crop


def run_preview_pipeline(built) -> dict[str, np.ndarray]:
    """One run of a built preview pipeline -> {output name: (N, ...) array}."""
    outs = built.pipe.run()
    return {name: _as_numpy(t) for name, t in zip(built.output_map, outs)}


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def make_preview(source, recipe=None, *, num: int = 16, image_size: int | None = None, seed: int = 0,
                 device: str = "cpu", min_tile: int = MIN_TILE):
    """Run the train pipeline once on `num` samples and lay them out as a labelled grid.

    Args:
        source: anything `train_pipeline` accepts (ImageFolder root, .txt file list, webdataset
            shard(s)/dir/glob, a Source); None: the embedded Fashion-MNIST train set.
        recipe: a MixRecipe (its num_classes must match the data), or None for RandomMix over
            its default candidates (mixup, cutmix, resizemix, fmix). A recipe with a
            four-image candidate (RICAP, Mosaic) labels its tiles with every source's class and
            share (tile metadata "sources").
        num: samples (tiles), one pipeline batch. image_size: output side of the pipeline
            (default: the images' own side if <= 64 px, else 224). seed: the pipeline seed.
        device: "cpu" or "gpu" (decoder "mixed" on GPU 0).
        min_tile: tiles are upscaled (nearest, integer factor) to at least this many pixels.
    Returns:
        (PIL RGB image, tiles): one dict per tile (see the module docstring); the image's
        `info["dali-mix"]` holds the full metadata JSON that `save_preview` writes.
    """
    from PIL import Image, ImageDraw, ImageFont

    if source is None:
        source = default_source()
    built, recipe, size, crop = build_preview_pipeline(source, recipe, num=num, image_size=image_size,
                                                       seed=seed, device=device)
    out = run_preview_pipeline(built)
    images = out["images"]
    spectrograms = crop == "spectrogram"
    tile_h, tile_w = size if spectrograms else (size, size)
    labels_a = out["labels_a"].reshape(-1)
    labels_b = out["labels_b"].reshape(-1)
    lam = out["lam"].reshape(-1).astype(np.float32)
    method = out["method"].reshape(-1)
    targets = out.get("targets")
    names = list(built.source.classes) or [str(i) for i in range(built.num_classes)]
    candidates = recipe.candidates

    factor = upscale_factor(min(tile_h, tile_w), min_tile)
    side, side_w = tile_h * factor, tile_w * factor
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    l, t, r, b = probe.textbbox((0, 0), "Ag|y", font=font)
    line_h = (b - min(t, 0)) + 2
    text_h = 3 * line_h + _PAD
    cols = math.ceil(math.sqrt(num))
    rows = math.ceil(num / cols)
    cell_w, cell_h = side_w + _GAP, side + text_h + _GAP
    grid = Image.new("RGB", (cols * cell_w + _GAP, rows * cell_h + _GAP), "white")
    draw = ImageDraw.Draw(grid)
    tiles = []
    for i in range(num):
        row, col = divmod(i, cols)
        x0, y0 = _GAP + col * cell_w, _GAP + row * cell_h
        m = int(method[i])
        mname = candidates[m] if 0 <= m < len(candidates) else "none"
        a, bb = int(labels_a[i]), int(labels_b[i])
        class_a = names[a] if 0 <= a < len(names) else str(a)
        class_b = names[bb] if 0 <= bb < len(names) else str(bb)
        tile = upscale(spectrogram_tile(images[i]) if spectrograms else denormalise(images[i]), factor)
        grid.paste(Image.fromarray(tile, "RGB"), (x0, y0))
        lines = [f"{mname}  lam={float(lam[i]):.3f}", f"a: {class_a}", f"b: {class_b}"]
        slots = None
        if "shares" in out:  # a many-source plan: every slot with a share, largest first
            slots = [{"label": int(y), "class": names[int(y)] if 0 <= int(y) < len(names) else str(int(y)),
                      "share": float(s)} for y, s in zip(out["labels"][i].reshape(-1),
                                                          out["shares"][i].reshape(-1).astype(np.float32))]
            per_class: dict[str, float] = {}
            for s_ in slots:
                per_class[s_["class"]] = per_class.get(s_["class"], 0.0) + s_["share"]
            shown = sorted(((c, w) for c, w in per_class.items() if w > 0), key=lambda cw: -cw[1])
            text = [f"{c} {w:.2f}" for c, w in shown]
            lines[1:] = [" ".join(text[:2]), " ".join(text[2:])]
        for k, text in enumerate(lines):
            draw.text((x0, y0 + side + _PAD + k * line_h), _fit(draw, text, font, side_w), fill="black",
                      font=font)
        tiles.append({
            "index": i, "row": row, "col": col, "box": [x0, y0, x0 + side_w, y0 + side],
            "method": mname, "method_id": m, "label_a": a, "label_b": bb,
            "class_a": class_a, "class_b": class_b, "lam": float(lam[i]),
            "target": None if targets is None else [float(v) for v in targets[i].reshape(-1)],
            **({} if slots is None else {"sources": slots}),
        })
    meta = {
        "format": FORMAT,
        "source": str(getattr(built.source, "root", source)),
        "image_size": list(size) if spectrograms else size, "crop": crop, "seed": seed, "upscale": factor, "device": device,
        "num_classes": built.num_classes, "classes": names,
        "recipe": _jsonable(recipe.to_dict()),
        "tiles": tiles,
    }
    grid.info[PNG_KEY] = json.dumps(meta)
    return grid, tiles


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: list(o) if isinstance(o, (tuple, set)) else str(o)))


def save_preview(image, tiles=None, path="preview.png") -> Path:
    """Write `image` as PNG with its metadata in a tEXt chunk (key "dali-mix"). The metadata is
    `image.info["dali-mix"]` from `make_preview`, or {"tiles": tiles} when missing."""
    from PIL.PngImagePlugin import PngInfo

    text = image.info.get(PNG_KEY)
    if text is None:
        text = json.dumps({"format": FORMAT, "tiles": list(tiles or [])})
    info = PngInfo()
    info.add_text(PNG_KEY, text)  # tEXt (uncompressed, Latin-1: json.dumps escapes non-ASCII)
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=info, optimize=True)
    return path


def read_preview_metadata(path) -> dict:
    """The metadata dict stored in a preview PNG (raises ValueError if there is none)."""
    from PIL import Image

    with Image.open(path) as im:
        text = getattr(im, "text", {}).get(PNG_KEY)
    if text is None:
        raise ValueError(f"{path}: no {PNG_KEY!r} text chunk (not a dali-mix preview)")
    return json.loads(text)


# --------------------------------------------------------------------------- CLI


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``preview`` sub-command on ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "preview",
        help="write a PNG grid of mixed training samples with their methods, labels and lambdas",
        description=(
            "Run the training pipeline once (same decode, crop, flip, normalisation and mixing as "
            "train.py) and write a grid of the mixed samples, each labelled with its method, "
            "the two class names and lambda. The tile metadata (boxes, labels, lambda, target "
            "rows) is stored in the PNG as a tEXt chunk 'dali-mix' (JSON)."),
    )
    p.add_argument("source", nargs="*", metavar="SOURCE",
                   help="ImageFolder root, DALI file list (.txt), or webdataset .tar shard(s) / "
                        "folder / glob (default: the embedded Fashion-MNIST train set)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--recipe", metavar="FILE", default=None,
                   help="YAML/JSON MixRecipe file (num_classes is taken from the data)")
    g.add_argument("--mix", metavar="NAME", default="randommix",
                   help=f"randommix ({', '.join(DEFAULT_CANDIDATES)}; default), none, a method "
                        f"name ({', '.join(METHODS)}) or a comma-separated list of them")
    p.add_argument("--num", type=_positive_int, default=16, help="number of tiles (default: 16)")
    p.add_argument("--num-classes", type=_positive_int, default=None,
                   help="number of classes, for sources that do not name them (webdataset shards "
                        "without classes.txt); default: from the source")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="pipeline output side (default: the images' side if <= 64 px, else 224)")
    p.add_argument("--seed", type=int, default=0, help="pipeline seed (default: 0)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="default: cpu")
    p.add_argument("--out", "-o", required=True, metavar="PNG", help="output PNG file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``preview``; returns 0, or 2 with a message on stderr for a bad source or recipe."""
    from dali_mix.data.audio_sources import is_speech_commands, resolve_speech_commands
    from dali_mix.recipe import MixRecipe
    from dali_mix.data.sources import resolve_source

    try:
        if not args.source:
            spec = default_source()
        else:
            spec = args.source[0] if len(args.source) == 1 else list(args.source)
        if isinstance(spec, str) and is_speech_commands(spec):
            source, n = spec, len(resolve_speech_commands(spec).classes)
        else:
            source = resolve_source(spec)
            n = source.num_classes or args.num_classes or 0
        if args.recipe is not None:
            overrides = {"num_classes": n} if n else {}
            recipe = MixRecipe.from_file(args.recipe, **overrides)
        else:
            if not n:
                raise ValueError(f"data source {source.root!r} does not name its classes (no "
                                 "classes.txt): pass --num-classes")
            recipe = recipe_for(args.mix, n)
        image, tiles = make_preview(source, recipe, num=args.num, image_size=args.image_size,
                                    seed=args.seed, device=args.device)
        path = save_preview(image, tiles, args.out)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"dali-mix preview: error: {exc}", file=sys.stderr)
        return 2
    methods = {}
    for t in tiles:
        methods[t["method"]] = methods.get(t["method"], 0) + 1
    summary = ", ".join(f"{k} x{v}" for k, v in sorted(methods.items()))
    print(f"wrote {path} ({image.width}x{image.height}, {len(tiles)} tiles: {summary})")
    return 0
