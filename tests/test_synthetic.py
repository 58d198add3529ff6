"""The synthetic COCO-format dataset: determinism, COCO compatibility (pycocotools), annotation conventions,
statistics, the on-disk cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hdm.data import synthetic

REAL_COCO = Path(__file__).parent / "data" / "coco" / "test_coco.json"
SIZE = (192, 160)  # (W, H): not square, so that a swapped W/H would show


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path]:
    """A 40-image split shared by the read-only tests."""
    return synthetic.generate(tmp_path_factory.mktemp("syn"), "val", 40, seed=7, image_size=(256, 256))


def _images(image_dir: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(image_dir.glob("*.jpg"))]


def test_same_seed_same_bytes_and_pixels_other_seed_differs(tmp_path):
    a_ann, a_dir = synthetic.generate(tmp_path / "a", "train", 4, seed=3, image_size=SIZE)
    b_ann, b_dir = synthetic.generate(tmp_path / "b", "train", 4, seed=3, image_size=SIZE)
    c_ann, c_dir = synthetic.generate(tmp_path / "c", "train", 4, seed=4, image_size=SIZE)
    v_ann, v_dir = synthetic.generate(tmp_path / "v", "val", 4, seed=3, image_size=SIZE)
    assert a_ann.read_bytes() == b_ann.read_bytes()
    a_img, b_img, c_img, v_img = (_images(d) for d in (a_dir, b_dir, c_dir, v_dir))
    assert len(a_img) == 4 and all(im.shape == (SIZE[1], SIZE[0], 3) for im in a_img)
    assert all(np.array_equal(x, y) for x, y in zip(a_img, b_img))
    assert a_ann.read_bytes() != c_ann.read_bytes()
    assert not any(np.array_equal(x, y) for x, y in zip(a_img, c_img))
    assert not any(np.array_equal(x, y) for x, y in zip(a_img, v_img))  # train and val never share images


def test_categories_match_real_coco(sample):
    ours = json.loads(sample[0].read_text())["categories"]
    real = json.loads(REAL_COCO.read_text())["categories"]
    assert len(ours) == 1 and ours[0]["id"] == 1 and ours[0]["name"] == "person"
    assert ours[0]["keypoints"] == real[0]["keypoints"]
    assert ours[0]["skeleton"] == real[0]["skeleton"]


def test_cocoeval_of_ground_truth_gives_ap_one(sample):
    gt = COCO(str(sample[0]))
    dets = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt.dataset["annotations"]
    ]
    ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ap, ap50, ap75, apm, apl, ar = ev.stats[:6]
    assert ap == pytest.approx(1.0) and ap50 == pytest.approx(1.0) and ar == pytest.approx(1.0)
    assert apm == pytest.approx(1.0) and apl == pytest.approx(1.0)  # both size ranges are present


def test_cocoeval_penalises_shifted_keypoints(sample):
    """A 6 px shift of every joint must cost AP (the annotations are not degenerate, e.g. huge areas)."""
    gt = COCO(str(sample[0]))
    dets = []
    for a in gt.dataset["annotations"]:
        kp = np.array(a["keypoints"], dtype=float).reshape(-1, 3)
        kp[:, :2] += 6.0
        dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 1.0})
    ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0.0 < ev.stats[0] < 0.9


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools mask.decode under numpy 2
def test_annotation_conventions(sample):
    dataset = json.loads(sample[0].read_text())
    images = {im["id"]: im for im in dataset["images"]}
    assert len(images) == 40 and all((im["width"], im["height"]) == (256, 256) for im in images.values())
    ids = [a["id"] for a in dataset["annotations"]]
    assert len(set(ids)) == len(ids)
    for a in dataset["annotations"]:
        im = images[a["image_id"]]
        kp = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        v = kp[:, 2]
        assert set(np.unique(v)) <= {0, 1, 2}
        assert a["num_keypoints"] == int((v > 0).sum()) >= synthetic._MIN_LABELLED
        assert a["category_id"] == 1 and a["iscrowd"] == 0
        assert np.all(kp[v == 0, :2] == 0)
        lab = kp[v > 0, :2]
        # Labelled joints lie on pixel centres' range of the image (pixel-index convention).
        assert np.all(lab >= 0) and np.all(lab[:, 0] <= im["width"] - 1) and np.all(lab[:, 1] <= im["height"] - 1)
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        assert np.all((lab[:, 0] + 0.5 >= x) & (lab[:, 0] + 0.5 <= x + w))
        assert np.all((lab[:, 1] + 0.5 >= y) & (lab[:, 1] + 0.5 <= y + h))
        # Independent check of the box convention: pycocotools rasterises the box over the joints' pixels.
        polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        box_mask = mask_utils.decode(mask_utils.frPyObjects(polygon, im["height"], im["width"]))[..., 0]
        pix = np.round(lab).astype(int)
        assert np.all(box_mask[pix[:, 1], pix[:, 0]] == 1)
        assert 0 < a["area"] <= w * h


def test_drawing_puts_a_disc_centre_at_its_keypoint():
    """OpenCV's fixed-point drawing, as the generator uses it, centres a disc on the pixel-index coordinate:
    no systematic half-pixel offset (rasterisation alone moves a single centroid by < 0.3 px)."""
    rng = np.random.default_rng(0)
    errors = []
    for x, y in rng.uniform(15, 33, (50, 2)):
        canvas = np.zeros((48, 48), np.uint8)
        cv2.circle(canvas, synthetic._fx((x, y)), int(8 * synthetic._SCALE), 1, -1, cv2.LINE_8, synthetic._SHIFT)
        rows, cols = np.nonzero(canvas)
        errors.append((cols.mean() - x, rows.mean() - y))
    errors = np.array(errors)
    assert np.all(np.abs(errors.mean(0)) < 0.06) and np.abs(errors).max() < 0.3


def test_skeleton_keeps_bone_lengths_and_sides():
    rng = np.random.default_rng(0)
    lengths = {k: v * 200 for k, v in synthetic._PROPORTIONS.items()}
    bones = {(5, 7): "upper_arm", (6, 8): "upper_arm", (7, 9): "forearm", (8, 10): "forearm",
             (11, 13): "thigh", (12, 14): "thigh", (13, 15): "shin", (14, 16): "shin"}  # fmt: skip
    for _ in range(50):
        j = synthetic._skeleton_3d(synthetic._sample_pose(rng), lengths)["joints"]
        for (a, b), name in bones.items():
            assert np.linalg.norm(j[a] - j[b]) == pytest.approx(lengths[name])
        assert np.linalg.norm(j[5] - j[6]) == pytest.approx(lengths["shoulder_width"])
    # Facing the camera, upright, arms and legs hanging: the person's left is on the image right, head on top.
    still = {k: 0.0 for k in synthetic._sample_pose(rng)}
    j = synthetic._skeleton_3d(still, lengths)["joints"]
    for left, right in ((1, 2), (3, 4), (5, 6), (9, 10), (11, 12), (15, 16)):
        assert j[left, 0] > j[right, 0]
    assert j[0, 1] < j[5, 1] < j[11, 1] < j[13, 1] < j[15, 1]
    assert j[15, 1] - j[0, 1] == pytest.approx(0.9 * 200, rel=0.05)  # nose to ankle ~ 0.9 h


def test_statistics_in_sane_ranges(sample):
    stats = synthetic.dataset_statistics(sample[0])
    assert stats["images"] == 40
    assert stats["min_persons_per_image"] >= 1 and stats["max_persons_per_image"] <= 3
    assert 1.0 < stats["persons_per_image"] < 3.0
    assert stats["persons"] == pytest.approx(stats["persons_per_image"] * 40)
    assert 0.05 < stats["occluded_share"] < 0.5
    assert stats["medium_share"] > 0.2 and stats["large_share"] > 0.1
    assert stats["small_share"] + stats["medium_share"] + stats["large_share"] == pytest.approx(1.0)
    assert 10 < stats["keypoints_per_person"] <= 17


def test_cache_generates_once_under_hdm_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path))
    ann, image_dir = synthetic.synthetic_split("smoke", "val", seed=1)
    assert tmp_path / "synthetic" in ann.parents and tmp_path / "synthetic" in image_dir.parents
    assert len(list(image_dir.glob("*.jpg"))) == synthetic.PRESETS["smoke"].num_val
    mtime = ann.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("generate() called although the split is cached")

    monkeypatch.setattr(synthetic, "generate", fail)
    assert synthetic.synthetic_split("smoke", "val", seed=1) == (ann, image_dir)
    assert ann.stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "synthetic").iterdir()] == [ann.parents[1].name]  # no temporary left


def test_interrupted_generation_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path))

    def interrupted(root, *args, **kwargs):
        (Path(root) / "images").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthetic.synthetic_split("smoke", "train", seed=0)
    assert list((tmp_path / "synthetic").iterdir()) == []


def test_bad_arguments_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="smoke"):
        synthetic.synthetic_split("huge")
    with pytest.raises(ValueError, match="train"):
        synthetic.synthetic_split("smoke", split="testing")
    with pytest.raises(ValueError, match="64"):
        synthetic.generate(tmp_path, "train", 1, 0, image_size=(32, 32))


def test_render_preview_writes_a_grid(sample, tmp_path):
    out = synthetic.render_preview(*sample, tmp_path / "preview.png", n=4)
    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 2 * 256, 3 * 2 * 256, 3)
    assert math.isclose(float(grid[512:, 512:].mean()), 255.0)  # the two unused cells are blank
    assert float(grid[:512, :512].std()) > 10.0  # a drawn sample


def _edited_package(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the ``hdm`` package with ``old`` replaced by ``new`` in ``data/synthetic.py``; returns the folder
    to put on PYTHONPATH."""
    import shutil

    root = tmp_path / "edited"
    shutil.copytree(Path(synthetic.__file__).parents[1], root / "hdm", ignore=shutil.ignore_patterns("__pycache__"))
    source = root / "hdm" / "data" / "synthetic.py"
    text = source.read_text()
    assert text.count(old) == 1, old
    source.write_text(text.replace(old, new))
    return root


def _cached_folders(package: Path, data: Path) -> list[str]:
    """The synthetic smoke val split's and a 1-image parts split's cache folders, as ``package`` computes them."""
    import os
    import subprocess
    import sys

    code = ("from hdm.data import synthetic, parts; print(synthetic.synthetic_split('smoke', 'val', 0)[0].parents[1]); "
            "print(parts.parts_split(1, 0))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(package), "HDM_DATA": str(data)}
    done = subprocess.run([sys.executable, "-c", code], cwd=package, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_a_change_of_the_generator_code_regenerates_the_caches(tmp_path, monkeypatch):
    """Issue #18, item 2: the caches were keyed by a hand-bumped version, so a real change of the drawing (here
    the image noise) was served the old images. Now any code change of the generator is another cache folder
    (its syntax hash; docs and comments do not count)."""
    from hdm.data import parts

    data = tmp_path / "data"
    monkeypatch.setenv("HDM_DATA", str(data))
    ours = [str(synthetic.synthetic_split("smoke", "val", 0)[0].parents[1]), str(parts.parts_split(1, 0))]
    noisier = _cached_folders(_edited_package(tmp_path / "a", "uniform(1.0, 6.0)", "uniform(40.0, 60.0)"), data)
    assert noisier[0] != ours[0] and noisier[1] != ours[1]
    first = sorted(Path(noisier[0]).rglob("*.jpg"))[0]
    assert first.read_bytes() != (Path(ours[0]) / "images" / "val" / first.name).read_bytes()  # drawn anew
    comment = _cached_folders(_edited_package(tmp_path / "b", "# from washed-out to vivid", "# another comment"), data)
    assert comment == ours  # a comment is not code: the cache is kept


# ------------------------------------------------------------------ the held-out test split (issue 19, item 4)


def _split_contents(ann: Path, image_dir: Path) -> tuple[set[str], set[str], list[list[float]]]:
    """SHA-1 of every image's bytes and of its decoded pixels, and every person's keypoints."""
    import hashlib

    images = sorted(image_dir.glob("*.jpg"))
    files = {hashlib.sha1(p.read_bytes()).hexdigest() for p in images}
    pixels = {hashlib.sha1(cv2.imread(str(p), cv2.IMREAD_COLOR).tobytes()).hexdigest() for p in images}
    keypoints = [a["keypoints"] for a in json.loads(ann.read_text())["annotations"]]
    return files, pixels, keypoints


def test_the_test_split_is_disjoint_from_train_and_val_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path / "data"))
    splits = {split: synthetic.synthetic_split("smoke", split, seed=0) for split in synthetic.SPLITS}
    test_ann, test_dir = splits["test"]
    assert "test" in test_ann.name and test_dir.name == "test"
    assert len(list(test_dir.glob("*.jpg"))) == synthetic.PRESETS["smoke"].num_test == 12
    assert synthetic.PRESETS["default"].num_test == 300 and synthetic.PRESETS["long"].num_test == 400
    contents = {split: _split_contents(*paths) for split, paths in splits.items()}
    test_files, test_pixels, test_kps = contents["test"]
    assert len(test_files) == len(test_pixels) == 12  # no two test images alike either
    for split in ("train", "val"):
        files, pixels, kps = contents[split]
        assert not test_files & files and not test_pixels & pixels, split  # no identical image
        assert not any(kp in kps for kp in test_kps), split  # no person annotated alike
    # another seed's val never meets this seed's test: the streams differ by the split's key, not by the seed
    other_val = _split_contents(*synthetic.synthetic_split("smoke", "val", seed=1))
    assert not test_files & other_val[0]
    # deterministic: generated again elsewhere, the same bytes; cached: served, not regenerated
    again_ann, again_dir = synthetic.generate(tmp_path / "again", "test", 12, seed=0)
    assert again_ann.read_bytes() == test_ann.read_bytes()
    assert all((again_dir / p.name).read_bytes() == p.read_bytes() for p in test_dir.glob("*.jpg"))

    def fail(*args, **kwargs):
        raise AssertionError("generate() called although the test split is cached")

    monkeypatch.setattr(synthetic, "generate", fail)
    assert synthetic.synthetic_split("smoke", "test", seed=0) == splits["test"]


def test_split_streams_are_distinct_and_seeds_bounded(tmp_path):
    import zlib

    keys = [synthetic.split_stream(s) for s in synthetic.SPLITS] + [zlib.crc32(b"pretrain")]  # parts.py's stream
    assert len(set(keys)) == len(keys) and all(0 <= k < 2**32 for k in keys)
    with pytest.raises(ValueError, match="seed must be in"):
        synthetic.generate(tmp_path, "test", 1, seed=2**32)
