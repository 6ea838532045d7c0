"""Wrong train labels on purpose: the Mixup paper's memorisation experiment.

`corrupt_labels(source, fraction, seed)` replaces the labels of round(fraction * N) train samples
of an ImageFolder source by a different class, drawn uniformly among the other C - 1: the same
samples and the same wrong classes for the same (seed, fraction, files), in every run and on every
rank (the draw depends on nothing else). Val data is never touched. The record lists which
samples were corrupted, so that `memorisation` can score the trained model on them against
their wrong labels (how much of the noise it learnt by heart) and against their true labels.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dali_mix.atomic import write_atomic
from dali_mix.data.sources import Source

RECORD_NAME = "label_noise.json"


@dataclass(frozen=True)
class LabelNoise:
    """Which samples were corrupted: indices into the source's files, their true and wrong labels."""

    fraction: float
    seed: int
    indices: tuple[int, ...]
    true_labels: tuple[int, ...]
    noisy_labels: tuple[int, ...]

    def write(self, out_dir: str | Path, source: Source, memorisation: dict | None = None) -> Path:
        """Write the record (with the corrupted files' paths, and the final model's scores on
        them when given) as OUT/label_noise.json, atomically."""
        doc = {**({"memorisation": memorisation} if memorisation else {}),"fraction": self.fraction, "seed": self.seed, "corrupted": len(self.indices),
               "samples": len(source.files), "indices": list(self.indices),
               "files": [source.files[i] for i in self.indices],
               "true_labels": list(self.true_labels), "noisy_labels": list(self.noisy_labels)}
        text = json.dumps(doc, indent=1) + "\n"
        return write_atomic(Path(out_dir) / RECORD_NAME, lambda f: f.write(text.encode()))


def corrupt_labels(source: Source, fraction: float, seed: int) -> tuple[Source, LabelNoise]:
    """(source with round(fraction * N) labels replaced by another class, the record)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--label-noise must be in [0, 1), got {fraction}")
    if source.kind != "folder":
        raise ValueError(f"--label-noise relabels an ImageFolder train source; {source.root} is a "
                         f"{source.kind.replace('_', ' ')} (convert it, or list it as a folder)")
    c = source.num_classes
    if c < 2:
        raise ValueError(f"--label-noise needs at least 2 classes, the train source has {c}")
    labels = np.asarray(source.labels, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x1ABE1])
    k = int(round(fraction * labels.size))
    idx = np.sort(rng.choice(labels.size, size=k, replace=False))
    noisy = (labels[idx] + rng.integers(1, c, size=k)) % c  # never the true class
    new = labels.copy()
    new[idx] = noisy
    record = LabelNoise(fraction, seed, tuple(int(i) for i in idx), tuple(int(v) for v in labels[idx]),
                        tuple(int(v) for v in noisy))
    return dataclasses.replace(source, labels=tuple(int(v) for v in new)), record


def corrupted_subset(source: Source, record: LabelNoise, noisy: bool) -> Source:
    """The corrupted samples alone as a folder source, labelled with their wrong (`noisy`) or
    their true labels: a val pipeline over it measures memorisation."""
    labels = record.noisy_labels if noisy else record.true_labels
    return dataclasses.replace(source, files=tuple(source.files[i] for i in record.indices), labels=labels,
                               num_samples=len(record.indices))
