"""Bad days: each row is a case a user meets (train.py arguments, maybe a recipe file, a tiny
generated ImageFolder, maybe an operating-system failure) and the fragments its message must
hold. No case ends in a traceback, runs silently or prints "nan" as a result; a new case is one
row of CASES.

Rows run `train.main` in this process (one import of torch and DALI for all of them); most stop
before any training step. `test_messages_reach_the_user_in_one_line` runs one of them as a user
does, in a subprocess, for the exit status and the absence of a traceback. The data: 3 classes
of 8 train and 8 val 32x32 PNGs (batch 4: 6 steps an epoch).
"""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "4", "--no-progress", "--workers", "1", "--epochs", "1", "--image-size", "32"]


def _load_train():
    spec = importlib.util.spec_from_file_location("train_for_bad_days", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


train = _load_train()


# --------------------------------------------------------------------------- data and runs
def make_tree(root: Path, classes=("ant", "bee", "cat"), n: int = 8) -> Path:
    """An ImageFolder root with train/ and val/, `n` random 32x32 PNGs per class and split."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


def add_strays(root: Path) -> list[str]:
    """Entries the ImageFolder reader leaves out on its own, one per rule."""
    train_dir = root / "train"
    (train_dir / ".ipynb_checkpoints").mkdir()
    (train_dir / "README").write_text("not a class")
    (train_dir / "ant" / "nested").mkdir()
    (train_dir / "ant" / "notes.txt").write_text("not an image")
    (train_dir / "bee" / ".DS_Store").write_bytes(b"\0")
    return [".ipynb_checkpoints/", "README", "ant/nested/", "ant/notes.txt", "bee/.DS_Store"]


def make_shard(path: Path, labels) -> Path:
    """A webdataset shard (no classes.txt beside it) of 32x32 PNGs with these labels."""
    import io
    import tarfile

    rng = np.random.default_rng(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i, label in enumerate(labels):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(png, format="PNG")
            for ext, data in (("png", png.getvalue()), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Data-set name -> the train.py arguments that name it."""
    base = tmp_path_factory.mktemp("bad-days")
    strays = make_tree(base / "strays")
    add_strays(strays)
    labels = [i % 4 for i in range(16)]
    return {"tree3": ["--data", make_tree(base / "tree3")],
            "tree4": ["--data", make_tree(base / "tree4", ("a", "b", "c", "d"))],
            "strays": ["--data", strays],
            "shards4": ["--data", make_shard(base / "wds" / "train" / "train-0.tar", labels),
                        "--val-data", make_shard(base / "wds" / "val" / "val-0.tar", labels)]}


def run_main(argv) -> tuple[int, str]:
    """(exit status, everything printed) of `train.main(argv)` in this process."""
    from dali_mix.recipe import _WARNED

    _WARNED.clear()  # warnings are said once per process: here, once per row
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out = io.StringIO()
    status = 0
    with redirect_stdout(out), redirect_stderr(out):
        try:
            status = train.main([str(a) for a in argv])
        except SystemExit as exc:
            if isinstance(exc.code, str):
                print(exc.code)
                status = 1
            else:
                status = exc.code or 0
    return status, out.getvalue()


@pytest.fixture(scope="module")
def finished(trees, tmp_path_factory):
    """A finished one-epoch --mix none run on tree3 (its output directory)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    status, text = run_main([*trees["tree3"], *FAST, "--mix", "none", "--output", out])
    assert status == 0, text
    return out


# --------------------------------------------------------------------------- operating-system faults
def read_only(monkeypatch, target: Path) -> None:
    """Every write under `target` fails as on a read-only file system (we run as root, for
    whom a chmod'ed directory stays writable)."""
    target = os.path.abspath(target)
    real_open, real_mkdir = os.open, os.mkdir

    def under(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(target)

    def fake_open(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *a, **k)

    def fake_mkdir(path, *a, **k):
        if under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


class FullDisk:
    """A binary file on a disk that fills after `room` bytes: writes then fail with ENOSPC."""

    def __init__(self, f, room: int = 4096):
        self._f, self._room = f, room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def disk_full_after(saves: int):
    """A fault: the disk fills during every checkpoint write after the first `saves` (the
    temporary file's writes fail with ENOSPC; torch.save itself turns that into a RuntimeError
    about a file position, as on a real full disk)."""
    def install(monkeypatch, tmp_path):
        real_fdopen, count = os.fdopen, [0]

        def fdopen(fd, mode="r", *a, **k):
            f = real_fdopen(fd, mode, *a, **k)
            if mode == "wb" and "/.last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
                count[0] += 1
                if count[0] > saves:
                    return FullDisk(f)
            return f

        monkeypatch.setattr(os, "fdopen", fdopen)
    return install


# --------------------------------------------------------------------------- extra checks
def last_checkpoint_intact(step: int):
    def check(tmp_path, text):
        from dali_mix.checkpoint import load

        out = tmp_path / "run"
        assert load(out / "last.pt")["step_in_epoch"] == step
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    return check


def said_once(fragment: str):
    def check(tmp_path, text):
        assert text.count(fragment) == 1, text
    return check


def mixing_false(tmp_path, text):
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["mixing"] for r in records] == [False]


# --------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """One bad day. `args`: train.py arguments, with {data} (the ImageFolder root `data`
    names), {out} (tmp/run), {tmp}, {finished} (a finished --mix none run's directory);
    `recipe`: YAML text written to {tmp}/recipe.yaml; `setup(tmp)` prepares files;
    `fault(monkeypatch, tmp)` an OS failure; `expect`: fragments of the output; `absent`:
    fragments it must not hold; `status`: the exit status; `check(tmp, text)`: more checks."""

    id: str
    args: list
    expect: tuple
    status: int = 1
    data: str = "tree3"
    recipe: str | None = None
    setup: Callable | None = None
    fault: Callable | None = None
    absent: tuple = ("Traceback", "nan%")
    check: Callable | None = None


def _file_at_run(tmp):
    (tmp / "run").write_text("a file where the run directory goes")


class NotPlainData:
    """An object a checkpoint never holds (torch.load(weights_only=True) refuses it)."""


def _garbage_checkpoint(tmp):
    torch.save({"model": NotPlainData()}, tmp / "foreign.pt")


def _copy_finished(tmp, finished_dir):
    shutil.copytree(finished_dir, tmp / "run")


STOP = ["--stop-after-steps", "1"]

CASES = [
    # 1. output paths that cannot be written: one line naming the path and the OS cause
    Case("output-is-a-file", ["--output", "{out}"], ("cannot write {out}: it is a file, not a directory",),
         setup=_file_at_run),
    Case("output-under-a-file", ["--output", "{out}/sub"],
         ("cannot write {out}/sub: Not a directory (errno 20, ENOTDIR): {out} is a file",), setup=_file_at_run),
    Case("output-read-only", ["--output", "{out}"],
         ("cannot write {out}: Read-only file system (errno 30, EROFS)",),
         setup=lambda tmp: (tmp / "run").mkdir(), fault=lambda mp, tmp: read_only(mp, tmp / "run")),
    Case("output-under-read-only-parent", ["--output", "{tmp}/ro/run"],
         ("cannot write {tmp}/ro/run: Read-only file system (errno 30, EROFS)",),
         setup=lambda tmp: (tmp / "ro").mkdir(), fault=lambda mp, tmp: read_only(mp, tmp / "ro")),
    Case("step-log-under-a-file", ["--output", "{tmp}/out", "--step-log", "{out}/steps", *STOP],
         ("cannot write {out}/steps.rank0: Not a directory",), setup=_file_at_run),
    Case("disk-full-mid-run", ["--output", "{out}", "--save-every", "2"],
         ("cannot write {out}/last.pt: No space left on device (errno 28, ENOSPC); {out}/last.pt still holds "
          "the last complete checkpoint",), fault=disk_full_after(1), check=last_checkpoint_intact(2)),
    # 2. values that pass the field checks but cannot work on these images
    Case("cutout-longer-than-twice-the-image", ["--output", "{out}", "--recipe", "{tmp}/recipe.yaml"],
         ("cutout_length 1000 on 32x32 images: every hole covers the whole image; valid range for these "
          "images [2, 63]",), recipe="methods: [cutout]\ncutout_length: 1000\n"),
    Case("cutout-hole-can-cover-the-image", ["--output", "{out}", "--recipe", "{tmp}/recipe.yaml", *STOP],
         ("warning: cutout_length 40 on 32x32 images: a hole centred near the middle covers the whole image",),
         status=0, recipe="methods: [cutout]\ncutout_length: 40\n",
         check=said_once("a hole centred near the middle")),
    Case("cutout-length-1-erases-nothing", ["--output", "{out}", "--recipe", "{tmp}/recipe.yaml"],
         ("cutout_length must be an integer >= 2, got 1",), status=2,
         recipe="methods: [cutout]\ncutout_length: 1\n"),
    Case("erasing-fill-far-outside-the-pixels", ["--output", "{out}", "--recipe", "{tmp}/recipe.yaml"],
         ("erasing_fill 1e+06 is outside the values the images take: valid range [-2.118, 2.64]",),
         recipe="methods: [random_erasing]\nerasing_fill: 1.0e+6\n"),
    Case("erasing-fill-nan", ["--output", "{out}", "--recipe", "{tmp}/recipe.yaml"],
         ("erasing_fill must be 'random' or a finite number, got nan",), status=2,
         recipe="methods: [random_erasing]\nerasing_fill: .nan\n"),
    Case("image-size-1", ["--output", "{out}", "--image-size", "1"],
         ("--image-size 1 (--crop pad)", "valid range with crop 'pad': image_size >= 5")),
    Case("image-size-1-random-resized", ["--output", "{out}", "--image-size", "1", "--crop", "random_resized"],
         ("--image-size 1", "cutmix, resizemix, fmix need images of at least 2x2 px",)),
    Case("mixmo-b-larger-than-the-batch", ["--output", "{out}", "--mixmo", "cut", "--mixmo-b", "8"],
         ("--mixmo-b 8 with --batch-size 4: batch_repetition=8 must divide the batch size 4",)),
    Case("mixup-prob-above-1", ["--output", "{out}", "--mixup-prob", "1.5"],
         ("prob must be a finite number in [0, 1], got 1.5",), status=2),
    # 3. one rule for the number of classes
    Case("num-classes-below-the-data", ["--output", "{out}", "--num-classes", "2"],
         ("--num-classes 2 is smaller than the train data's 3 class folders", "label 2 would have no output")),
    Case("num-classes-above-the-data", ["--output", "{out}", "--num-classes", "5", *STOP],
         ("warning: --num-classes 5 is larger than the train data's 3 class folders", "| 5 classes |"), status=0),
    Case("recipe-num-classes-disagrees", ["--output", "{out}", "--recipe", "{tmp}/recipe.yaml"],
         ("sets num_classes: 10 but the run has 3 classes",), recipe="methods: [mixup]\nnum_classes: 10\n"),
    Case("checkpoint-num-classes-disagrees", ["--output", "{out}", "--resume", "{finished}/last.pt", "--mix", "none",
                                              "--num-classes", "5"],
         ("--num-classes / the classes of the data: saved 3, now 5",)),
    # data that names no classes (webdataset shards, no classes.txt): --num-classes is the number
    Case("shards-with-labels-above-num-classes", ["--output", "{out}", "--num-classes", "2", "--mix", "none",
                                                  "--smoothing", "0"],
         ("has a label outside the run's classes (the data's, or --num-classes)", "outside [0, 2)"),
         data="shards4"),
    Case("shards-without-num-classes", ["--output", "{out}"],
         ("does not name its classes (no classes.txt): pass --num-classes",), data="shards4"),
    # 4. every entry the reader leaves out is named, with its rule
    Case("entries-that-are-not-samples", ["--output", "{out}", *STOP],
         ("5 entries are not samples and left out (24 images used)",
          "/.ipynb_checkpoints/: hidden", "/README: not inside a class folder",
          "/ant/nested/: a folder inside a class folder", "/ant/notes.txt: extension .txt is not an image",
          "/bee/.DS_Store: hidden", "train 24 imgs"), status=0, data="strays"),
    # 5. resume and evaluate at the edges
    Case("resume-a-finished-run", ["--output", "{out}", "--resume", "auto", "--mix", "none"],
         ("is finished: 1 of 1 epochs trained, final val top-1", "(epoch 1)"), status=0,
         setup="copy-finished", absent=("Traceback", "nan"), check=mixing_false),
    Case("evaluate-other-class-count", ["--evaluate", "--resume", "{finished}/last.pt"],
         ("the checkpoint's model has 3 classes but the data has 4",), data="tree4"),
    Case("evaluate-other-model", ["--evaluate", "--resume", "{finished}/last.pt", "--model", "resnet34"],
         ("the checkpoint holds a resnet18, not the --model resnet34",)),
    Case("evaluate-its-own-model", ["--evaluate", "--resume", "{finished}/last.pt"],
         ("val top-1", "(24 imgs)"), status=0),
    Case("unreadable-checkpoint", ["--output", "{out}", "--resume", "{tmp}/foreign.pt"],
         ("foreign.pt is unreadable (not a checkpoint of tensors and plain data",),
         setup=_garbage_checkpoint, absent=("Traceback", "will likely succeed", "weights_only=False")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_day(case: Case, trees, finished, tmp_path, monkeypatch):
    if case.setup == "copy-finished":
        _copy_finished(tmp_path, finished)
    elif case.setup is not None:
        case.setup(tmp_path)
    if case.recipe is not None:
        (tmp_path / "recipe.yaml").write_text(case.recipe)
    fill = dict(out=tmp_path / "run", tmp=tmp_path, finished=finished)
    argv = [*trees[case.data], *FAST, *(str(a).format(**fill) for a in case.args)]
    if case.fault is not None:
        case.fault(monkeypatch, tmp_path)
    status, text = run_main(argv)
    monkeypatch.undo()
    assert status == case.status, text
    for fragment in case.expect:
        assert fragment.format(**fill) in text, (fragment, text)
    for fragment in case.absent:
        assert fragment not in text, (fragment, text)
    if case.status == 1:  # an error is one line, "error: ..."
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, text
    if case.check is not None:
        case.check(tmp_path, text)


def test_disk_full_under_resume_auto_says_the_same_and_keeps_the_checkpoint(trees, tmp_path, monkeypatch):
    out = tmp_path / "run"
    status, text = run_main([*trees["tree3"], *FAST, "--output", out, "--stop-after-steps", "2"])
    assert status == 0, text
    disk_full_after(0)(monkeypatch, tmp_path)
    status, text = run_main([*trees["tree3"], *FAST, "--output", out, "--resume", "auto",
                             "--save-every", "2"])
    monkeypatch.undo()
    assert status == 1 and f"cannot write {out}/last.pt: No space left on device (errno 28, ENOSPC); " \
                           f"{out}/last.pt still holds the last complete checkpoint" in text, text
    last_checkpoint_intact(2)(tmp_path, text)
    status, text = run_main([*trees["tree3"], *FAST, "--output", out, "--resume", "auto"])
    assert status == 0 and "done: 1 epochs" in text, text  # space again: the run completes


def test_messages_reach_the_user_in_one_line(trees, tmp_path):
    """As a user runs it: exit status 1, one "error:" line on stderr, no traceback."""
    (tmp_path / "run").write_text("a file")
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, trees["tree3"]), *FAST,
                           "--output", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr == (f"error: cannot write {tmp_path / 'run'}: it is a file, not a directory "
                           "(errno 20, ENOTDIR)\n")


# --------------------------------------------------------------------------- the library's own checks
def _erase_batch(recipe, image_size=16, batch=4):
    """One batch of `random_mix` on uint8 HWC images of value 100, without normalize."""
    from nvidia.dali import fn, pipeline_def

    import dali_mix as dm

    images = [np.full((image_size, image_size, 3), 100, np.uint8) for _ in range(batch)]
    labels = [np.array([i % 2], np.int32) for i in range(batch)]

    @pipeline_def(batch_size=batch, num_threads=1, device_id=None, seed=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        y = fn.external_source(source=lambda: labels, batch=True)
        return dm.random_mix(x, y, recipe, image_size=image_size).outputs()

    p = pipe()
    p.build()
    return np.array(p.run()[0].as_tensor())


LIBRARY_CASES = [
    # (recipe fields, image side, fragment of the ValueError, or None: builds and runs)
    (dict(methods=["random_erasing"], erasing_prob=1.0, erasing_fill=1000.0), 16,
     "erasing_fill 1000 is outside the values the images take: valid range [0, 255]"),
    (dict(methods=["random_erasing"], erasing_prob=1.0, erasing_fill=-5.0), 16, "valid range [0, 255]"),
    (dict(methods=["cutout"], cutout_length=16), 8, "cutout_length 16 on 8x8 images: every hole covers the whole "
                                                   "image; valid range for these images [2, 15]"),
    (dict(methods=["cutmix"]), 1, "need images of at least 2x2 px"),
    (dict(methods=["random_erasing"], erasing_prob=1.0, erasing_fill=200.0), 16, None),
]


@pytest.mark.parametrize("fields, side, fragment", LIBRARY_CASES)
def test_random_mix_checks_the_recipe_against_its_images(fields, side, fragment):
    """A uint8 fill outside 0-255 wrapped around without a word (1000 became 232): refused
    now when the graph is built; a fill inside the range fills exactly that value."""
    import dali_mix as dm

    recipe = dm.MixRecipe(num_classes=2, **fields)
    if fragment is None:
        out = _erase_batch(recipe, side)
        assert set(np.unique(out)) <= {100, int(fields["erasing_fill"])} and (out == fields["erasing_fill"]).any()
        return
    with pytest.raises(ValueError) as exc:
        _erase_batch(recipe, side)
    assert fragment in str(exc.value)


def test_a_hole_that_can_cover_the_image_is_a_warning_said_once():
    import dali_mix as dm
    from dali_mix.recipe import _WARNED

    _WARNED.clear()
    recipe = dm.MixRecipe(num_classes=2, methods=["cutout"], cutout_length=9)  # 8x8: c = 4 covers it all
    with pytest.warns(UserWarning, match="cutout_length 9 on 8x8 images: a hole centred near the middle") as seen:
        out = _erase_batch(recipe, 8)
        _erase_batch(recipe, 8)
    assert len([w for w in seen if "cutout_length 9" in str(w.message)]) == 1
    assert (out == 0).any() and (out == 100).any()  # holes of zeros, the rest untouched
