"""The number of classes: one rule for its four sources (the data, `--num-classes`, a recipe
file's `num_classes`, a checkpoint's).

- The data is the truth: the classes it names (class folders, a `classes.txt`) or, when it
  names none, its labels (0..largest label of a file list).
- `--num-classes` below that is an error naming both numbers (labels at or above the head's
  size would have no output); above it, a warning naming both (a deliberately larger head, as
  for a subset of ImageNet's classes), and the head gets `--num-classes` outputs.
- Data that names neither (webdataset shards without a `classes.txt`): `--num-classes` gives
  the number, and the loader refuses any label at or above it.
- A recipe file's or a checkpoint's number that differs from the result is an error naming
  both, never an override (`recipe_classes_mismatch`, and the resume and evaluate checks of
  `dali_mix_tools.training.resume`).
"""
from __future__ import annotations

from dali_mix.recipe import read_recipe_file
from dali_mix.data.sources import Source


def data_classes(source: Source) -> int | None:
    """The number of classes `source` names or its labels imply; None when it says nothing."""
    n = source.num_classes or 0
    if source.max_label is not None:
        n = max(n, source.max_label + 1)
    return n or None


def resolve_num_classes(flag: int | None, source: Source, spec: str) -> tuple[int, str | None]:
    """(number of classes, warning line or None) for the train `source` (given as `spec`) and
    the `--num-classes` `flag` (None: not given), by the module's rule; ValueError (one line,
    both numbers) when the flag is smaller than the data's count or neither says a number."""
    n_data = data_classes(source)
    if n_data is None:
        if flag is None:
            raise ValueError(f"the train source {spec} does not name its classes (no classes.txt): "
                             "pass --num-classes")
        return flag, None
    if source.kind == "folder":
        data_text = f"{n_data} class folders"
    elif source.named_classes:
        data_text = f"{n_data} classes (classes.txt)"
    else:
        data_text = f"{n_data} classes (labels up to {n_data - 1})"
    if flag is None or flag == n_data:
        return n_data, None
    if flag < n_data:
        raise ValueError(f"--num-classes {flag} is smaller than the train data's {data_text} in {spec}: "
                         f"{_labels(flag, n_data - 1)} would have no output; drop --num-classes (the data "
                         f"gives {n_data}) or pass a number >= {n_data}")
    return flag, (f"warning: --num-classes {flag} is larger than the train data's {data_text} in {spec}: "
                  f"the model gets {flag} outputs, {flag - n_data} of them never trained")


def recipe_classes_mismatch(path, num_classes: int) -> str | None:
    """Why the recipe file at `path` disagrees with the run's `num_classes` (one line naming
    both), or None when it does not set `num_classes` or sets the same number."""
    declared = read_recipe_file(path).get("num_classes")
    if declared is None or declared == num_classes:
        return None
    return (f"--recipe {path} sets num_classes: {declared} but the run has {num_classes} classes (from the "
            "data, or --num-classes); make them agree, or drop num_classes from the recipe (the trainer "
            "takes it from the data)")


def _labels(lo: int, hi: int) -> str:
    return f"label {lo}" if lo == hi else f"labels {lo}..{hi}"
