"""The `dali-mix` command line (also `python -m dali_mix_tools`): one sub-command per concern,
each defined in its own module.

Each sub-command module exposes ``add_parser(subparsers)`` which registers the sub-command and
sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Modules are imported lazily so that ``dali-mix --help`` stays fast and a missing optional
dependency of one command does not break the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from dali_mix import __version__

# sub-command name -> module that defines it (``add_parser(subparsers)``)
SUBCOMMANDS = {
    "data": "dali_mix.data.cli",
    "check-data": "dali_mix.data.check",
    "preview": "dali_mix_tools.preview",
    "evaluate": "dali_mix_tools.training.evaluate",
    "plot": "dali_mix_tools.plot",
}
# The benchmarks are not part of the installed package: run them from a checkout with
# `python -m benchmarks.throughput` (benchmarks/RESULTS.md).


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dali-mix",
        description="Mixed-sample data augmentation inside NVIDIA DALI pipelines.",
    )
    parser.add_argument("--version", action="version", version=f"dali-mix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
