"""``dali-mix data ...``: build the real data sets the project trains and benchmarks on.

::

    dali-mix data fashion-mnist [--root DIR] [--idx-dir DIR] [--limit N] [--samples-per-shard N]
    dali-mix data imagenet-like [--root DIR] [--num-images N] [--num-classes N] [--seed S]
    dali-mix data cifar --bin-dir DIR [--root DIR]   # CIFAR-10/100 binary version -> ImageFolder
    dali-mix data spoken-commands [--out DIR] [--seed S] [--takes N] [--workers N]
    dali-mix data scenes [--root DIR] [--train N] [--val N] [--size S] [--seed S]

Both are cached: running a command again prints the same paths at once.
"""
from __future__ import annotations

import argparse
import sys
import time


def _fashion_mnist(args: argparse.Namespace) -> int:
    from dali_mix.data.fashion_mnist import (
        FashionMNISTNotFoundError, IdxFormatError, prepare_fashion_mnist)

    started = time.perf_counter()
    try:
        data = prepare_fashion_mnist(root=args.root, idx_dir=args.idx_dir, limit=args.limit,
                                     samples_per_shard=args.samples_per_shard,
                                     install=not args.no_install)
    except (FashionMNISTNotFoundError, IdxFormatError) as exc:
        print(f"dali-mix data fashion-mnist: {exc}", file=sys.stderr)
        return 2
    print(f"root        {data.root}")
    print(f"train       {data.train_dir}  ({data.num_train} images)")
    print(f"val         {data.val_dir}  ({data.num_val} images)")
    print(f"classes     {', '.join(data.class_dirs)}")
    for shard, index in zip(data.train_shards + data.val_shards, data.train_index + data.val_index):
        print(f"shard       {shard}  index {index}")
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return 0


def _imagenet_like(args: argparse.Namespace) -> int:
    from dali_mix.data.imagenet_like import FILE_LIST, build_imagenet_like

    started = time.perf_counter()
    root = build_imagenet_like(root=args.root, num_images=args.num_images,
                               num_classes=args.num_classes, seed=args.seed,
                               quality=args.quality)
    print(f"root        {root}  ({args.num_images} JPEGs, {args.num_classes} classes)")
    print(f"file_list   {root / FILE_LIST}")
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return 0


def _cifar(args: argparse.Namespace) -> int:
    from dali_mix.data.cifar import CifarFormatError, prepare_cifar

    started = time.perf_counter()
    try:
        root = prepare_cifar(args.bin_dir, root=args.root, progress=not args.no_progress)
    except CifarFormatError as exc:
        print(f"dali-mix data cifar: {exc}", file=sys.stderr)
        return 2
    print(f"root        {root}  (train/ and val/: the test split)")
    print(f"train with  python train.py --data {root} --image-size 32 --crop pad")
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return 0


def _spoken_commands(args: argparse.Namespace) -> int:
    from dali_mix.data.spoken_commands import EspeakNotFoundError, prepare_spoken_commands

    started = time.perf_counter()
    try:
        data = prepare_spoken_commands(root=args.root, seed=args.seed, takes=args.takes,
                                       workers=args.workers, install=not args.no_install)
    except EspeakNotFoundError as exc:
        print(f"dali-mix data spoken-commands: {exc}", file=sys.stderr)
        return 2
    print(f"root        {data.root}  (Speech Commands layout, 16 kHz 1 s 16-bit WAV)")
    print(f"classes     {', '.join(data.classes)}")
    for split, n in (("train", data.num_train), ("validation", data.num_val), ("testing", data.num_test)):
        speakers = data.speakers[split]
        print(f"{split:<11} {n} clips, {len(speakers)} speakers"
              + (f" ({', '.join(speakers)})" if split != "train" else ""))
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return 0


def _scenes(args: argparse.Namespace) -> int:
    from dali_mix.data.scenes import prepare_scenes

    try:
        data = prepare_scenes(args.root, train=args.train, val=args.val, size=args.size, seed=args.seed,
                              progress=not args.no_progress)
    except ValueError as exc:
        print(f"dali-mix data scenes: {exc}", file=sys.stderr)
        return 2
    print(f"{data.root}: {data.counts['train']} train and {data.counts['val']} val scenes, "
          f"classes {', '.join(data.classes)}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` and its sub-commands on the top-level ``dali-mix`` parser."""
    parser = subparsers.add_parser("data", help="build the embedded real data sets",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    sub = parser.add_subparsers(dest="data_command", metavar="DATASET")

    fm = sub.add_parser("fashion-mnist",
                        help="Fashion-MNIST (Debian dataset-fashion-mnist) -> ImageFolder + webdataset")
    fm.add_argument("--root", default=None,
                    help="output folder (default $DALI_MIX_DATA/fashion-mnist[-limitN], "
                         "DALI_MIX_DATA defaults to ~/.cache/dali-mix)")
    fm.add_argument("--idx-dir", default=None,
                    help="folder with the idx files (default /usr/share/datasets/fashion-mnist)")
    fm.add_argument("--limit", type=_positive_int, default=None,
                    help="keep only N class-balanced samples per split (quick runs)")
    fm.add_argument("--samples-per-shard", type=_positive_int, default=10000,
                    help="samples per webdataset tar (default 10000)")
    fm.add_argument("--no-install", action="store_true",
                    help="never run apt-get to install the missing idx files")
    fm.set_defaults(func=_fashion_mnist)

    inl = sub.add_parser("imagenet-like",
                         help="ImageNet-sized JPEG ImageFolder from skimage.data photographs")
    inl.add_argument("--root", default=None,
                     help="output folder (default $DALI_MIX_DATA/imagenet-like-<num-images>)")
    inl.add_argument("--num-images", type=_positive_int, default=2000)
    inl.add_argument("--num-classes", type=_positive_int, default=10)
    inl.add_argument("--seed", type=int, default=0)
    inl.add_argument("--quality", type=_positive_int, default=90, help="JPEG quality (default 90)")
    inl.set_defaults(func=_imagenet_like)

    cf = sub.add_parser("cifar", help="CIFAR-10/100 binary distribution -> ImageFolder (never unpickles)")
    cf.add_argument("--bin-dir", required=True, help="the unpacked cifar-10-batches-bin or cifar-100-binary folder")
    cf.add_argument("--root", default=None, help="output folder (default $DALI_MIX_DATA/cifar10 or cifar100)")
    cf.add_argument("--no-progress", action="store_true")
    cf.set_defaults(func=_cifar)

    sc = sub.add_parser("spoken-commands",
                        help="keyword spotting: the 10 core Speech Commands words synthesised with "
                             "espeak-ng (Speech Commands layout, split by speaker)")
    sc.add_argument("--out", "--root", dest="root", default=None,
                    help="output folder (default $DALI_MIX_DATA/spoken-commands)")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--takes", type=_positive_int, default=4,
                    help="clips per speaker and word (default 4: 4040 clips with espeak-ng 1.51)")
    sc.add_argument("--workers", type=_positive_int, default=None,
                    help="synthesis processes (default: the number of cores)")
    sc.add_argument("--no-install", action="store_true",
                    help="never run apt-get to install a missing espeak-ng")
    sc.set_defaults(func=_spoken_commands)

    sn = sub.add_parser("scenes", help="segmentation: shapes of known classes on textured backgrounds, "
                                       "image/mask PNG pairs (images/ + masks/ per split)")
    sn.add_argument("--root", default=None, help="output folder (default $DALI_MIX_DATA/scenes-<size>)")
    sn.add_argument("--train", type=_positive_int, default=800)
    sn.add_argument("--val", type=_positive_int, default=200)
    sn.add_argument("--size", type=_positive_int, default=64, help="side of every scene, pixels (>= 16)")
    sn.add_argument("--seed", type=int, default=0)
    sn.add_argument("--no-progress", action="store_true")
    sn.set_defaults(func=_scenes)
    return parser
