"""`dali-mix preview` (dali_mix_tools/preview.py): the grid is what the training pipeline produced.

Checked on real Fashion-MNIST (600-image subset), CPU:

* the PNG carries its metadata (tEXt chunk "dali-mix", JSON); every tile's target row is the
  label-smoothed mix (1 - eps) (lam onehot(a) + (1 - lam) onehot(b)) + eps / C of its own
  labels and lambda, lam lies in [0, 1] and the method is a recipe candidate;
* the pixels: the same train pipeline (same seed, batch, crop), run here independently and
  de-normalised with the ImageNet mean/std, nearest-upscaled 4x (28 -> 112 px), equals the grid
  crop at each tile's box within one grey level (the pipeline's labels / lambdas match too);
  a tile compared with its neighbour's crop does not (so the check can fail);
* the tile class names are the source's class names for label_a / label_b, and text is drawn
  under each tile;
* the CLI (`dali_mix_tools.cli.main`) writes the PNG and returns 0 (also without SOURCE: the embedded
  Fashion-MNIST, here redirected to the small subset); a bad recipe file returns non-zero with
  an error naming the offending field.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import dali_mix as dm
from dali_mix_tools import preview as pv
from dali_mix_tools.cli import main
from dali_mix.execute import IMAGENET_MEAN, IMAGENET_STD
from pipelines.classification import train_pipeline

NUM = 8
SEED = 3
EPS = 0.1


@pytest.fixture(scope="module")
def recipe():
    return dm.MixRecipe(num_classes=10, label_smoothing=EPS)  # RandomMix over the 4 pair methods


@pytest.fixture(scope="module")
def grid(fmnist_small, recipe, tmp_path_factory):
    """(png path, metadata) of a preview of the small Fashion-MNIST train set."""
    image, tiles = pv.make_preview(str(fmnist_small.train_dir), recipe, num=NUM, seed=SEED)
    path = pv.save_preview(image, tiles, tmp_path_factory.mktemp("preview") / "grid.png")
    return path, pv.read_preview_metadata(path)


def test_png_metadata_in_text_chunk(grid):
    path, meta = grid
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        raw = im.text["dali-mix"]  # a tEXt chunk, readable without dali-mix
        size = im.size
    assert json.loads(raw) == meta
    assert meta["image_size"] == 28 and meta["crop"] == "pad" and meta["upscale"] == 4
    assert len(meta["tiles"]) == NUM
    cols = int(np.ceil(np.sqrt(NUM)))
    for i, t in enumerate(meta["tiles"]):
        assert (t["row"], t["col"]) == divmod(i, cols)
        x0, y0, x1, y1 = t["box"]
        assert x1 - x0 == y1 - y0 == 112  # 28 px upscaled 4x
        assert 0 <= x0 and 0 <= y0 and x1 <= size[0] and y1 <= size[1]


def test_tile_targets_match_labels_and_lambda(grid, recipe):
    _, meta = grid
    C = 10
    eye = np.eye(C)
    for t in meta["tiles"]:
        lam = t["lam"]
        assert 0.0 <= lam <= 1.0
        assert t["method"] in recipe.candidates
        assert recipe.candidates[t["method_id"]] == t["method"]
        want = (1 - EPS) * (lam * eye[t["label_a"]] + (1 - lam) * eye[t["label_b"]]) + EPS / C
        np.testing.assert_allclose(t["target"], want, atol=2e-6, err_msg=str(t))
        assert abs(sum(t["target"]) - 1.0) < 1e-5


def test_tile_labels_are_class_names(grid, fmnist_small):
    path, meta = grid
    classes = list(fmnist_small.class_dirs)  # ImageFolder class names = the reader's labels
    assert meta["classes"] == classes
    for t in meta["tiles"]:
        assert t["class_a"] == classes[t["label_a"]]
        assert t["class_b"] == classes[t["label_b"]]
    # the labels are drawn: dark text pixels in the strip under every tile
    with Image.open(path) as im:
        g = np.asarray(im.convert("L"))
    for t in meta["tiles"]:
        x0, _, x1, y1 = t["box"]
        strip = g[y1 + 1:y1 + 36, x0:x1]
        assert (strip < 100).sum() > 50, f"no text under tile {t['index']}"


def test_tiles_are_the_training_pipeline_output(grid, fmnist_small, recipe):
    """Re-run the same pipeline here and compare every tile with the grid, pixel by pixel."""
    path, meta = grid
    built = train_pipeline(str(fmnist_small.train_dir), batch_size=NUM, image_size=28, seed=SEED,
                           recipe=recipe, crop="pad", explain=True)
    built.pipe.build()
    outs = dict(zip(built.output_map, built.pipe.run()))
    images = np.stack([np.asarray(outs["images"][i]) for i in range(NUM)])
    lam = np.array([float(np.asarray(outs["lam"][i]).reshape(())) for i in range(NUM)])
    la = [int(np.asarray(outs["labels_a"][i]).reshape(())) for i in range(NUM)]
    lb = [int(np.asarray(outs["labels_b"][i]).reshape(())) for i in range(NUM)]
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    with Image.open(path) as im:
        grid_px = np.asarray(im.convert("RGB")).astype(np.int32)

    def crop(t):
        x0, y0, x1, y1 = t["box"]
        return grid_px[y0:y1, x0:x1]

    for i, t in enumerate(meta["tiles"]):
        assert (t["label_a"], t["label_b"]) == (la[i], lb[i])
        assert t["lam"] == pytest.approx(lam[i], abs=1e-7)
        hwc = np.clip(np.rint(images[i].astype(np.float64).transpose(1, 2, 0) * std + mean), 0, 255)
        big = np.asarray(Image.fromarray(hwc.astype(np.uint8), "RGB").resize((112, 112), Image.NEAREST))
        diff = np.abs(crop(t) - big.astype(np.int32))
        assert diff.max() <= 1, f"tile {i}: max diff {diff.max()}"
    # the comparison discriminates: tile 0's pixels are not tile 1's
    t0, t1 = meta["tiles"][0], meta["tiles"][1]
    assert np.abs(crop(t0) - crop(t1)).max() > 1


def test_cli_writes_png_and_exits_0(fmnist_small, tmp_path, capsys):
    out = tmp_path / "cli.png"
    code = main(["preview", str(fmnist_small.train_dir), "--num", "4", "--mix", "cutmix",
                 "--seed", "1", "--out", str(out)])
    assert code == 0
    meta = pv.read_preview_metadata(out)
    assert len(meta["tiles"]) == 4
    assert {t["method"] for t in meta["tiles"]} == {"cutmix"}
    assert "wrote" in capsys.readouterr().out


def test_cli_default_source_and_recipe_file(fmnist_small, tmp_path, monkeypatch):
    # without SOURCE the embedded Fashion-MNIST is used (redirected here to the small subset)
    monkeypatch.setattr(pv, "default_source", lambda: str(fmnist_small.train_dir))
    rfile = tmp_path / "r.yaml"
    rfile.write_text("methods: {mixup: 1.0}\nmixup_alpha: 0.4\nlabel_smoothing: 0.2\n")
    out = tmp_path / "default.png"
    assert main(["preview", "--recipe", str(rfile), "--num", "3", "--out", str(out)]) == 0
    meta = pv.read_preview_metadata(out)
    assert meta["source"] == str(fmnist_small.train_dir)
    assert meta["recipe"]["num_classes"] == 10 and meta["recipe"]["mixup_alpha"] == 0.4
    assert {t["method"] for t in meta["tiles"]} == {"mixup"}


@pytest.mark.parametrize("text,field", [
    ('{"mixup_alpha": -1}', "mixup_alpha"),
    ('{"methods": ["mixup", "snowmix"]}', "methods"),
    ('{"cutmix_alfa": 1.0}', "cutmix_alfa"),
])
def test_cli_bad_recipe_names_the_field(fmnist_small, tmp_path, capsys, text, field):
    rfile = tmp_path / "bad.json"
    rfile.write_text(text)
    out = tmp_path / "never.png"
    code = main(["preview", str(fmnist_small.train_dir), "--recipe", str(rfile), "--out", str(out)])
    assert code != 0
    err = capsys.readouterr().err
    assert field in err and "error" in err
    assert not out.exists()


def test_cli_missing_source_is_an_error(tmp_path, capsys):
    code = main(["preview", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")])
    assert code != 0
    assert "does not exist" in capsys.readouterr().err
