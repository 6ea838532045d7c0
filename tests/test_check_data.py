"""Tests for ``dali-mix check-data`` (dali_mix/data/check.py): planted faults in small trees built
with Pillow/numpy, the CLI's exit code and BAD lines, a clean list read back by a real DALI
pipeline, webdataset shards, file lists and the imbalance threshold."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image, ImageFile

from dali_mix_tools.cli import main as cli_main
from dali_mix.data.check import CheckReport, check_source, write_clean_list

RNG = np.random.default_rng(0)


def _rgb(size=24) -> Image.Image:
    """Returns a random RGB image."""
    return Image.fromarray(RNG.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _encoded(img: Image.Image, fmt: str = "JPEG") -> bytes:
    """Returns the image encoded in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _dali_only_bad(path) -> None:
    """A 32-bit integer TIFF: Pillow decodes it, DALI's decoder rejects it (DALI 2.4)."""
    Image.fromarray(RNG.integers(0, 1000, (16, 16), dtype=np.int32)).save(path, "TIFF")


def _clean_tree(root, counts=None):
    """Writes an ImageFolder with ``counts[class]`` random JPEGs per class; returns ``root``."""
    counts = counts or {"cat": 4, "dog": 5}
    for cls, n in counts.items():
        os.makedirs(root / cls, exist_ok=True)
        for i in range(n):
            _rgb().save(root / cls / f"{cls}{i}.jpg")
    return root


@pytest.fixture()
def faulty_tree(tmp_path):
    """An ImageFolder with one planted fault or oddity of each kind."""
    root = _clean_tree(tmp_path / "data", {"cat": 4, "dog": 5})
    (root / "empty").mkdir()
    data = _encoded(_rgb(64))
    (root / "cat" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "cat" / "zero.jpg").write_bytes(b"")
    (root / "dog" / "text.jpg").write_text("this is not an image\n")
    _dali_only_bad(root / "dog" / "int32.tif")
    _rgb().convert("CMYK").save(root / "dog" / "cmyk.jpg")
    Image.fromarray(RNG.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / "cat" / "gray.png")
    _rgb().convert("RGBA").save(root / "cat" / "alpha.png")
    (root / "cat" / "README.txt").write_text("ignored by fn.readers.file")
    return root


BAD_NAMES = {"truncated.jpg", "zero.jpg", "text.jpg", "int32.tif"}


def test_finds_every_planted_fault(faulty_tree):
    """Every planted fault is BAD with the right reason; oddities are notes only."""
    report = check_source(faulty_tree, workers=2, progress=False)
    assert isinstance(report, CheckReport)
    assert report.kind == "imagefolder"
    reasons = {os.path.basename(p): why for p, why in report.bad}
    assert set(reasons) == BAD_NAMES
    assert "truncated" in reasons["truncated.jpg"]
    assert "zero-byte" in reasons["zero.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "DALI" in reasons["int32.tif"]
    # allowed oddities are notes, not failures
    names = {k: {os.path.basename(p) for p in v} for k, v in report.notes.items()}
    assert names["cmyk"] == {"cmyk.jpg"}
    assert names["grayscale"] == {"gray.png"}
    assert names["alpha"] == {"alpha.png"}
    assert "README.txt" in names["ignored_by_reader"]
    assert report.empty_classes == ["empty"]
    # good counts per class; labels follow DALI's sorted-folder order (cat=0, dog=1, empty=2)
    assert report.class_counts == {"cat": 6, "dog": 6, "empty": 0}
    assert {g.label for g in report.good if g.path.startswith("dog/")} == {1}
    assert not report.ok
    problems = report.problems()
    assert any(line.startswith("EMPTY CLASS empty") for line in problems)


def test_clean_tree_passes_with_notes_only(tmp_path, capsys):
    """A clean tree (with CMYK/palette notes) is ok and the CLI exits 0."""
    root = _clean_tree(tmp_path / "data")
    _rgb().convert("CMYK").save(root / "cat" / "cmyk.jpg")
    _rgb().convert("P").save(root / "dog" / "palette.png")
    report = check_source(root, workers=2, progress=False)
    assert report.ok and not report.bad and not report.empty_classes
    assert set(report.notes) >= {"cmyk", "palette"}
    assert cli_main(["check-data", str(root), "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "BAD" not in out and "OK" in out and "cmyk" in out


def test_cli_exit_code_and_bad_lines(faulty_tree, capsys):
    """The CLI exits 1 and prints one BAD line per bad file plus the empty class."""
    rc = cli_main(["check-data", str(faulty_tree), "--workers", "2", "--no-progress"])
    assert rc == 1
    out = capsys.readouterr().out.splitlines()
    bad_lines = [line for line in out if line.startswith("BAD ")]
    assert len(bad_lines) == len(BAD_NAMES)
    for name in BAD_NAMES:
        assert any(f"{name}: " in line for line in bad_lines), name
    assert any(line.startswith("EMPTY CLASS empty") for line in out)
    assert not any("cmyk.jpg" in line for line in bad_lines)


def test_cli_missing_source_exits_2(tmp_path):
    """A source that does not exist is a usage error (exit 2)."""
    assert cli_main(["check-data", str(tmp_path / "nope"), "--no-progress"]) == 2


@pytest.mark.parametrize("absolute", [False, True])
def test_clean_list_decodes_in_dali(faulty_tree, tmp_path, absolute):
    """The clean list feeds fn.readers.file: every listed file decodes, no bad file is listed."""
    from nvidia.dali import fn, pipeline_def, types

    report = check_source(faulty_tree, workers=2, progress=False)
    clean = tmp_path / "clean.txt"
    n = write_clean_list(report, clean, absolute=absolute)
    lines = clean.read_text().splitlines()
    assert n == len(lines) == len(report.good) == 12
    assert not any(name in line for line in lines for name in BAD_NAMES)

    @pipeline_def(batch_size=4, num_threads=2, device_id=None)
    def pipe():
        """Reads the clean list and decodes it on the CPU."""
        enc, label = fn.readers.file(file_list=str(clean), file_root=str(faulty_tree),
                                     name="R", random_shuffle=False)
        return fn.decoders.image(enc, device="cpu", output_type=types.RGB), label

    p = pipe()
    p.build()
    assert p.reader_meta("R")["epoch_size"] == n
    labels = []
    for _ in range((n + 3) // 4):  # one epoch; the reader pads the last batch
        images, lab = p.run()
        for i in range(len(images)):
            assert np.array(images[i]).shape[-1] == 3
            labels.append(int(np.array(lab[i]).item()))
    assert sorted(labels[:n]) == sorted(g.label for g in report.good)


def test_bisection_names_only_dali_rejects(tmp_path):
    """Files only DALI rejects are found by bisecting failing batches; good ones survive."""
    root = tmp_path / "data"
    _clean_tree(root, {"a": 9, "b": 9})
    _dali_only_bad(root / "a" / "a4.tif")
    _dali_only_bad(root / "b" / "b8.tif")
    report = check_source(root, workers=2, progress=False, batch_size=8)
    assert sorted(os.path.basename(p) for p, _ in report.bad) == ["a4.tif", "b8.tif"]
    assert len(report.good) == 18


def _tar(path, members):
    """Writes a tar with ``(name, bytes)`` members; returns its path."""
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_webdataset_faults(tmp_path):
    """Corrupt image, missing .cls / image, negative and non-integer labels in shards."""
    good = _encoded(_rgb())
    corrupt = good[: len(good) // 2]
    shard0 = _tar(tmp_path / "shard-000.tar", [
        ("s0.jpg", good), ("s0.cls", b"0"),
        ("s1.jpg", corrupt), ("s1.cls", b"1"),      # truncated image
        ("s2.jpg", good),                           # no .cls
        ("s3.cls", b"1"),                           # no image
    ])
    shard1 = _tar(tmp_path / "shard-001.tar", [
        ("t0.png", _encoded(_rgb(), "PNG")), ("t0.cls", b"1\n"),
        ("t1.jpg", good), ("t1.cls", b"-3"),        # negative label
        ("t2.jpg", good), ("t2.cls", b"dog"),       # non-integer label
    ])
    report = check_source(str(tmp_path / "shard-{000..001}.tar"), workers=2, progress=False)
    assert report.kind == "webdataset"
    bad = {p.rsplit(":", 1)[1].split(".")[0]: why for p, why in report.bad}
    assert set(bad) == {"s1", "s2", "s3", "t1", "t2"}
    assert "truncated" in bad["s1"]
    assert "missing .cls" in bad["s2"]
    assert "missing image" in bad["s3"]
    assert "negative label" in bad["t1"]
    assert "not an integer" in bad["t2"]
    assert {(os.path.basename(g.path), g.key, g.label) for g in report.good} == {
        ("shard-000.tar", "s0", 0), ("shard-001.tar", "t0", 1)}
    assert not report.ok
    # same result from a glob / explicit list; the clean list holds keys, not a DALI file list
    assert len(check_source(str(tmp_path / "*.tar"), progress=False).bad) == 5
    assert len(check_source([shard0, shard1], progress=False).good) == 2
    out = tmp_path / "keys.txt"
    write_clean_list(report, out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("#") and len(lines) == 3
    assert lines[1].split("\t")[1:] == ["s0", "0"]


@pytest.mark.parametrize("where", ["data", "header"])
def test_webdataset_truncated_tar(tmp_path, where):
    """A shard cut inside a member's data or inside a header is reported."""
    good = _encoded(_rgb())
    padded = (len(good) + 511) // 512 * 512
    shard = _tar(tmp_path / "s.tar", [(f"k{i}.{ext}", good if ext == "jpg" else b"0")
                                      for i in range(3) for ext in ("jpg", "cls")])
    raw = shard.read_bytes()
    second = 2 * 512 + padded + 512  # k0.jpg header+data, k0.cls header+data
    cut = second + 512 + 100 if where == "data" else second + 200
    shard.write_bytes(raw[:cut])
    report = check_source(shard, progress=False)
    assert any(p == str(shard) and "tar" in why for p, why in report.bad), report.bad
    assert [g.key for g in report.good] == ["k0"]


def test_file_list_labels_and_missing_files(tmp_path, capsys):
    """Negative / non-integer labels and missing files in a DALI file list."""
    root = _clean_tree(tmp_path / "imgs", {"x": 3})
    lst = tmp_path / "list.txt"
    lst.write_text("x/x0.jpg 0\nx/x1.jpg -1\nx/x2.jpg 1.5\nx/missing.jpg 2\n")
    report = check_source(lst, file_root=str(root), progress=False)
    assert report.kind == "filelist"
    reasons = {os.path.basename(p): why for p, why in report.bad}
    assert set(reasons) == {"x1.jpg", "x2.jpg", "missing.jpg"}
    assert "negative label -1" in reasons["x1.jpg"]
    assert "not an integer" in reasons["x2.jpg"]
    assert "unreadable" in reasons["missing.jpg"]
    assert [(g.path, g.label) for g in report.good] == [("x/x0.jpg", 0)]
    rc = cli_main(["check-data", str(lst), "--file-root", str(root), "--no-progress"])
    assert rc == 1
    assert "negative label -1" in capsys.readouterr().out


def test_imbalance_threshold(tmp_path, capsys):
    """max/min class ratio above --imbalance-ratio fails; a higher threshold passes."""
    root = _clean_tree(tmp_path / "data", {"few": 2, "many": 25})
    report = check_source(root, workers=2, progress=False, use_dali=False)
    assert report.imbalance == pytest.approx(12.5)
    assert report.imbalanced and not report.ok and not report.bad
    assert any(line.startswith("IMBALANCE") for line in report.problems())
    assert check_source(root, imbalance_ratio=20, progress=False, use_dali=False).ok
    args = ["check-data", str(root), "--no-progress", "--no-dali"]
    assert cli_main(args) == 1
    assert "IMBALANCE" in capsys.readouterr().out
    assert cli_main(args + ["--imbalance-ratio", "13"]) == 0


def test_truncation_detected_even_if_pillow_relaxed(tmp_path):
    """ImageFile.LOAD_TRUNCATED_IMAGES=True does not hide truncation and is restored."""
    root = _clean_tree(tmp_path / "data", {"a": 2})
    data = _encoded(_rgb(64))
    (root / "a" / "cut.jpg").write_bytes(data[: len(data) // 2])
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        report = check_source(root, progress=False, use_dali=False)
        assert [os.path.basename(p) for p, _ in report.bad] == ["cut.jpg"]
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_import_has_no_side_effects():
    """Importing the module prints nothing and builds nothing; DALI itself is imported lazily by
    the module (the ``dali_mix`` package may still import it for its own mixers)."""
    import ast

    import dali_mix.data.check as check

    tree = ast.parse(open(check.__file__, encoding="utf-8").read())
    top_imports = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    top_imports += [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert not any(m and m.startswith(("nvidia", "PIL", "numpy")) for m in top_imports)
    proc = subprocess.run([sys.executable, "-c", "import dali_mix.data.check"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == ""


def test_hidden_folder_is_no_class_and_the_clean_list_has_training_labels(tmp_path):
    """A hidden folder (.ipynb_checkpoints) takes no label: the clean list's labels are exactly
    the labels the trainer's source listing assigns to the same files."""
    from dali_mix.data.sources import resolve_source

    root = _clean_tree(tmp_path / "data", {"cat": 3, "dog": 3})
    (root / ".ipynb_checkpoints").mkdir()
    _rgb().save(root / ".ipynb_checkpoints" / "x.jpg")
    _rgb().save(root / "dog" / ".hidden.jpg")
    report = check_source(root, progress=False, use_dali=False)
    assert list(report.class_counts) == ["cat", "dog"]
    assert report.ok
    clean = tmp_path / "clean.txt"
    write_clean_list(report, clean, absolute=True)
    listed = dict(line.rsplit(" ", 1) for line in clean.read_text().splitlines())
    source = resolve_source(root)
    assert {f: int(lab) for f, lab in listed.items()} == dict(zip(source.files, source.labels))


def test_file_list_label_beyond_classes_txt_is_bad(tmp_path, capsys):
    """With a classes.txt of 2 names, label 2 has no class: BAD, and the CLI exits 1."""
    _clean_tree(tmp_path, {"x": 3})
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    lst = tmp_path / "list.txt"
    lst.write_text("x/x0.jpg 0\nx/x1.jpg 1\nx/x2.jpg 2\n")
    report = check_source(lst, progress=False, use_dali=False)
    assert [(os.path.basename(p), why.split(" (")[0]) for p, why in report.bad] == [
        ("x2.jpg", "label 2 >= number of classes 2")]
    assert [g.label for g in report.good] == [0, 1]
    assert cli_main(["check-data", str(lst), "--no-progress", "--no-dali"]) == 1
    assert "label 2 >= number of classes 2" in capsys.readouterr().out
    # without classes.txt, --num-classes gives the bound
    (tmp_path / "classes.txt").unlink()
    assert check_source(lst, progress=False, use_dali=False).ok
    assert len(check_source(lst, progress=False, use_dali=False, num_classes=2).bad) == 1


def test_webdataset_label_beyond_classes_txt_is_bad(tmp_path):
    good = _encoded(_rgb())
    (tmp_path / "classes.txt").write_text("a\nb\n")
    _tar(tmp_path / "s.tar", [("k0.jpg", good), ("k0.cls", b"1"), ("k1.jpg", good), ("k1.cls", b"5")])
    report = check_source(tmp_path / "s.tar", progress=False, use_dali=False)
    assert len(report.bad) == 1 and "label 5 >= number of classes 2" in report.bad[0][1]
