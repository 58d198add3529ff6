"""hdm.data: joint definitions, the COCO-format and MPII top-down datasets, augmentation.

Real samples (tests/data/coco, tests/data/mpii; see tests/data/LICENSES.md) check loading, geometry round trips
and crops against independent references; a painted synthetic image checks that augmented joints stay on
their pixels, including left/right swapping under flips."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.cocoeval import COCOeval
from scipy.io import savemat
from torch.utils.data import default_collate

from hdm.data import DatasetNotFoundError, EmptyDatasetError
from hdm.data.coco import CocoTopDown, coco_paths
from hdm.data.keypoints import COCO, COCO_SIGMAS, MPII, flip_pairs_from_names
from hdm.data.mpii import MpiiTopDown, mpii_paths
from hdm.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from hdm.geometry import box_to_center_scale, crop_matrix, heatmap_to_image, hflip_matrix

DATA = Path(__file__).parent / "data"
COCO_IMAGES = DATA / "coco"
COCO_JSON, COCO_DETS = COCO_IMAGES / "test_coco.json", COCO_IMAGES / "test_coco_det_AP_H_56.json"
MPII_JSON, MPII_IMAGES = DATA / "mpii" / "test_mpii.json", DATA / "mpii"
DTYPES = {
    "image": (torch.float32, (3, 256, 192)),
    "joints": (torch.float32, (17, 2)),
    "visibility": (torch.float32, (17,)),
    "keypoint_flags": (torch.int64, (17,)),
    "image_joints": (torch.float32, (17, 2)),
    "center": (torch.float32, (2,)),
    "scale": (torch.float32, (2,)),
    "rotation": (torch.float32, ()),
    "image_size": (torch.int64, (2,)),
    "image_id": (torch.int64, ()),
    "annotation_id": (torch.int64, ()),
    "area": (torch.float32, ()),
    "box_score": (torch.float32, ()),
}


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised -> (H, W, 3) float RGB in [0, 255]."""
    x = image.numpy().transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return x * 255.0


def to_image_px(sample) -> np.ndarray:
    """Sample joints (K, 2) heatmap px -> original-image px, undoing rotation, flip and the joint swap."""
    back = heatmap_to_image(
        sample["joints"][None].double(), sample["center"][None].double(), sample["scale"][None].double(),
        (64, 48), sample["rotation"][None].double(),  # heatmap (H, W)
    )[0].numpy()  # fmt: skip
    if sample["flipped"]:
        back = (back @ hflip_matrix(int(sample["image_size"][0]))[:2, :2].T + [int(sample["image_size"][0]) - 1, 0])
        back = back[COCO.flip_permutation()]
    return back


def expected_visibility(sample, size=(48, 64)) -> torch.Tensor:
    pix = torch.floor(sample["joints"] + 0.5)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < size[0]) & (pix[:, 1] >= 0) & (pix[:, 1] < size[1])
    return (inside & (sample["keypoint_flags"] > 0)).float()


# ---------------------------------------------------------------- joint definitions


def test_joint_definitions_match_coco_json_and_pycocotools():
    cat = json.loads(COCO_JSON.read_text())["categories"][0]
    assert list(COCO.names) == cat["keypoints"]
    assert {tuple(sorted(e)) for e in COCO.skeleton} == {tuple(sorted((a - 1, b - 1))) for a, b in cat["skeleton"]}
    assert np.allclose(COCO_SIGMAS, COCOeval(iouType="keypoints").params.kpt_oks_sigmas)
    for js in (COCO, MPII):
        assert flip_pairs_from_names(js.names) == tuple(sorted(js.flip_pairs))
        perm = js.flip_permutation()
        assert np.array_equal(perm[perm], np.arange(js.num_joints))
        for i, j in js.flip_pairs:  # twins differ only by side
            part = js.names[i].split("_", 1)[1]
            assert sorted([js.names[i], js.names[j]]) == ["left_" + part, "right_" + part]
        assert sorted(js.upper_body + js.lower_body) == list(range(js.num_joints))


# ---------------------------------------------------------------- real COCO sample


def test_coco_gt_selection_matches_raw_json():
    anns = json.loads(COCO_JSON.read_text())["annotations"]
    persons = [a for a in anns if not a["iscrowd"] and a["area"] > 0]
    val = CocoTopDown(COCO_JSON, COCO_IMAGES)
    train = CocoTopDown(COCO_JSON, COCO_IMAGES, train=True)
    assert [r.annotation_id for r in val.records] == [a["id"] for a in sorted(persons, key=lambda a: a["image_id"])]
    assert len(train) == sum(1 for a in persons if any(v > 0 for v in a["keypoints"][2::3])) < len(val)


@pytest.mark.parametrize("train", [False, True])
def test_coco_sample_keys_shapes_dtypes_and_round_trip(train):
    ds = CocoTopDown(COCO_JSON, COCO_IMAGES, train=train, seed=3)
    anns = {a["id"]: a for a in json.loads(COCO_JSON.read_text())["annotations"]}
    samples = [ds[i] for i in range(len(ds))]
    for s in samples:
        assert set(s) == set(DTYPES) | {"flipped"} and isinstance(s["flipped"], bool)
        for key, (dtype, shape) in DTYPES.items():
            assert s[key].dtype == dtype and tuple(s[key].shape) == shape, key
        kp = np.asarray(anns[int(s["annotation_id"])]["keypoints"], float).reshape(17, 3)
        labelled = kp[:, 2] > 0
        assert np.array_equal(s["image_joints"].numpy(), np.where(labelled[:, None], kp[:, :2], 0).astype(np.float32))
        perm = COCO.flip_permutation() if s["flipped"] else np.arange(17)
        assert np.array_equal(s["keypoint_flags"].numpy(), kp[perm, 2])
        assert torch.equal(s["visibility"], expected_visibility(s))
        assert torch.all(s["joints"][s["keypoint_flags"] == 0] == 0)
        assert float(s["box_score"]) == 1.0 and float(s["area"]) == pytest.approx(anns[int(s["annotation_id"])]["area"])
        # heatmap -> image gives the annotation back (float32 storage of joints and crop: ~1e-4 px)
        back = to_image_px(s)
        assert np.all(np.abs(back - kp[:, :2])[labelled] < 2e-3)
    if train:
        assert any(s["flipped"] for s in samples) and any(not s["flipped"] for s in samples)
        assert any(float(s["rotation"]) != 0 for s in samples)
    else:
        assert all(not s["flipped"] and float(s["rotation"]) == 0 for s in samples)
    batch = default_collate(samples[:3])
    assert batch["joints"].shape == (3, 17, 2) and batch["image"].shape == (3, 3, 256, 192)
    assert batch["flipped"].dtype == torch.bool


def test_coco_validation_crop_matches_independent_warp():
    """The normalised crop equals a crop computed with HRNet's 3-point affine from an image read by PIL."""
    ds = CocoTopDown(COCO_JSON, COCO_IMAGES)
    s = ds[0]
    x, y, w, h = json.loads(COCO_JSON.read_text())["annotations"][0]["bbox"]
    w, h = min(639, x + w - 1) - x, min(424, y + h - 1) - y  # HRNet clips the box: x2 = x1 + w - 1
    c = np.array([x + w / 2, y + h / 2])
    if w > 0.75 * h:
        h = w / 0.75
    else:
        w = h * 0.75
    src_w = w * 1.25
    src = np.float32([c, c + [0, -src_w / 2], c + [-src_w / 2, -src_w / 2]])
    dst = np.float32([[96, 128], [96, 32], [0, 32]])
    rgb = np.asarray(Image.open(COCO_IMAGES / "000000000785.jpg").convert("RGB"))
    ref = cv2.warpAffine(rgb, cv2.getAffineTransform(src, dst), (192, 256), flags=cv2.INTER_LINEAR)
    diff = np.abs(to_uint8(s["image"]) - ref)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 8


def test_coco_detection_boxes():
    dets = json.loads(COCO_DETS.read_text())
    assert isinstance(dets, list) and all({"image_id", "category_id", "bbox", "score"} <= d.keys() for d in dets)
    for threshold in (0.0, 0.5):
        kept = [d for d in dets if d["category_id"] == 1 and d["score"] >= threshold]
        ds = CocoTopDown(COCO_JSON, COCO_IMAGES, boxes=COCO_DETS, box_score_threshold=threshold)
        assert len(ds) == len(kept)
    for i in (0, len(ds) - 1):
        s, d = ds[i], kept[i]
        center, scale = box_to_center_scale(d["bbox"], 0.75)
        assert int(s["annotation_id"]) == -1 and int(s["image_id"]) == d["image_id"]
        assert float(s["box_score"]) == pytest.approx(d["score"])
        assert np.allclose(s["center"], center) and np.allclose(s["scale"], scale)
        assert s["visibility"].sum() == 0 and s["joints"].abs().sum() == 0
        for key, (dtype, shape) in DTYPES.items():
            assert s[key].dtype == dtype and tuple(s[key].shape) == shape, key
    with pytest.raises(EmptyDatasetError, match="score >= 1.5"):
        CocoTopDown(COCO_JSON, COCO_IMAGES, boxes=COCO_DETS, box_score_threshold=1.5)
    with pytest.raises(ValueError, match="ground-truth boxes"):
        CocoTopDown(COCO_JSON, COCO_IMAGES, boxes=COCO_DETS, train=True)


def test_training_draws_are_reproducible_per_epoch():
    def draws(ds):
        return [ds.sample_geometry(i) for i in range(len(ds))]

    a = CocoTopDown(COCO_JSON, COCO_IMAGES, train=True, seed=7)
    b = CocoTopDown(COCO_JSON, COCO_IMAGES, train=True, seed=7)
    for x, y in zip(draws(a), draws(b)):
        assert torch.equal(x["joints"], y["joints"]) and x["flipped"] == y["flipped"]
    a.set_epoch(1)
    assert any(not torch.equal(x["scale"], y["scale"]) for x, y in zip(draws(a), draws(b)))
    b.set_epoch(1)
    assert all(torch.equal(x["scale"], y["scale"]) for x, y in zip(draws(a), draws(b)))
    assert torch.equal(a[2]["image"], b[2]["image"])


# ---------------------------------------------------------------- synthetic painted image

# 17 joints of an asymmetric figure, image px, at least 16 px apart
PAINTED = np.array([
    [120, 60], [130, 50], [108, 52], [146, 58], [96, 62], [160, 100], [86, 96], [182, 140], [70, 140],
    [196, 186], [52, 178], [148, 200], [102, 204], [160, 260], [90, 262], [176, 318], [78, 312],
], dtype=float)  # fmt: skip
PAINTED_FLAGS = np.array([2, 2, 1, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1, 2, 0])  # last joint unlabelled
CODE = 60 + 10 * np.arange(17)  # red value of joint k's disc


def write_painted_coco(tmp_path: Path) -> Path:
    """A 256 x 352 image with, per joint, a red disc (value CODE[k]) and a green Gaussian peak, + its json."""
    h, w = 352, 256
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.zeros((h, w, 3), np.float64)
    for k, (x, y) in enumerate(PAINTED):
        r2 = (xx - x) ** 2 + (yy - y) ** 2
        image[..., 0] = np.where(r2 <= 3.5**2, CODE[k], image[..., 0])
        image[..., 1] = np.maximum(image[..., 1], 255 * np.exp(-r2 / (2 * 2.0**2)))
    Image.fromarray(np.round(image).astype(np.uint8)).save(tmp_path / "painted.png")
    keypoints = np.concatenate([PAINTED, PAINTED_FLAGS[:, None]], 1)
    keypoints[PAINTED_FLAGS == 0] = 0
    full = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [50, 40, 150, 285], "area": 20000.0,
            "keypoints": keypoints.ravel().tolist(), "num_keypoints": int((PAINTED_FLAGS > 0).sum())}
    head_box = dict(full, id=2, bbox=[90, 40, 70, 40])  # a box around the head only: limbs fall outside
    data = {
        "images": [{"id": 1, "file_name": "painted.png", "width": w, "height": h}],
        "annotations": [full, head_box],
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO.names), "skeleton": []}],
    }
    path = tmp_path / "painted.json"
    path.write_text(json.dumps(data))
    return path


def test_augmented_joints_sit_on_their_painted_dots(tmp_path):
    ann = write_painted_coco(tmp_path)
    ds = CocoTopDown(ann, tmp_path, train=True, scale_factor=0.25, rotation_factor=30, rotation_prob=1.0,
                     half_body_prob=0.0, seed=11)  # fmt: skip
    seen_flip = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[0]
        seen_flip.add(s["flipped"])
        rgb = to_uint8(s["image"])
        perm = COCO.flip_permutation() if s["flipped"] else np.arange(17)
        assert np.array_equal(s["keypoint_flags"].numpy(), PAINTED_FLAGS[perm])
        assert torch.equal(s["visibility"], expected_visibility(s))
        assert s["visibility"].sum() >= 10
        for k in np.flatnonzero(s["visibility"].numpy()):
            q = s["joints"][k].numpy() * 4  # input px
            cx, cy = int(round(q[0])), int(round(q[1]))
            x0, y0 = max(cx - 3, 0), max(cy - 3, 0)
            win = rgb[y0 : cy + 4, x0 : cx + 4, 1]
            py, px = np.unravel_index(np.argmax(win), win.shape)
            assert math.dist((px + x0, py + y0), q) <= 1.0, (epoch, k)  # brightest pixel at the joint
            assert abs(rgb[cy, cx, 0] - CODE[perm[k]]) <= 3, (epoch, k)  # and it is this joint's own dot
    assert seen_flip == {False, True}


def test_flip_crops_the_mirrored_image_around_the_mirrored_centre(tmp_path):
    """HRNet flips the image array and sets centre x -> W - 1 - x; the composed warp must give the same crop."""
    ann = write_painted_coco(tmp_path)
    ds = CocoTopDown(ann, tmp_path, train=True, scale_factor=0.0, rotation_prob=0.0, half_body_prob=0.0, seed=2)
    record = ds.records[0]
    rgb = np.asarray(Image.open(tmp_path / "painted.png").convert("RGB"))
    flipped = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[0]
        expected_center = record.center * [-1, 1] + [255, 0] if s["flipped"] else record.center
        assert np.allclose(s["center"].numpy(), expected_center, atol=1e-4)
        source = np.ascontiguousarray(rgb[:, ::-1]) if s["flipped"] else rgb
        ref = cv2.warpAffine(source, crop_matrix(expected_center, record.scale, 0.0, (256, 192))[:2], (192, 256))
        assert np.abs(to_uint8(s["image"]) - ref).max() < 1.5
        flipped += s["flipped"]
    assert 0 < flipped < 6


def test_joints_pushed_outside_the_heatmap_are_invisible(tmp_path):
    ann = write_painted_coco(tmp_path)
    s = CocoTopDown(ann, tmp_path).sample_geometry(1)  # the head-only box
    j = s["joints"]
    outside = (j[:, 0] < -0.5) | (j[:, 0] >= 47.5) | (j[:, 1] < -0.5) | (j[:, 1] >= 63.5)
    assert outside.any() and (~outside & (s["keypoint_flags"] > 0)).any()
    assert torch.equal(s["visibility"], ((~outside) & (s["keypoint_flags"] > 0)).float())
    assert s["visibility"][16] == 0  # unlabelled


def test_half_body_crop_is_the_box_of_the_upper_or_lower_joints(tmp_path):
    ann = write_painted_coco(tmp_path)
    ds = CocoTopDown(ann, tmp_path, train=True, flip=False, scale_factor=0.0, rotation_prob=0.0,
                     half_body_prob=1.0, seed=5)  # fmt: skip
    labelled = PAINTED_FLAGS > 0
    parts = {"upper": [k for k in COCO.upper_body if labelled[k]], "lower": [k for k in COCO.lower_body if labelled[k]]}
    chosen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        s = ds.sample_geometry(0)
        for name, ks in parts.items():
            pts = PAINTED[ks]
            if np.allclose(s["center"].numpy(), pts.mean(0), atol=1e-4):
                w, h = pts.max(0) - pts.min(0)
                w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
                assert np.allclose(s["scale"].numpy(), np.array([w, h]) / 200 * 1.5, atol=1e-5)
                chosen.add(name)
                break
        else:
            pytest.fail(f"epoch {epoch}: centre {s['center']} is neither half-body centre")
    assert chosen == {"upper", "lower"}


# ---------------------------------------------------------------- MPII


def test_mpii_sample_loads_with_hrnet_conversion(tmp_path):
    entries = json.loads(MPII_JSON.read_text())
    ds = MpiiTopDown(MPII_JSON, MPII_IMAGES)
    assert len(ds) == len(entries) and ds.flip_pairs == MPII.flip_pairs
    for i, e in enumerate(entries):
        s = ds[i]
        assert s["image"].shape == (3, 256, 256) and s["joints"].shape == (16, 2) and "head_size" not in s
        assert np.allclose(s["center"], [e["center"][0] - 1, e["center"][1] + 15 * e["scale"] - 1])
        assert np.allclose(s["scale"], [1.25 * e["scale"]] * 2)
        vis = np.asarray(e["joints_vis"]) > 0
        assert np.allclose(s["image_joints"].numpy()[vis], np.asarray(e["joints"])[vis] - 1)
        assert np.all(s["image_joints"].numpy()[~vis] == 0) and np.all(s["visibility"].numpy()[~vis] == 0)
        w, h = Image.open(MPII_IMAGES / e["image"]).size
        assert s["image_size"].tolist() == [w, h]
        center, scale = s["center"][None].double(), s["scale"][None].double()
        back = heatmap_to_image(s["joints"][None].double(), center, scale, (64, 64))
        assert np.abs(back[0].numpy() - (np.asarray(e["joints"]) - 1))[vis].max() < 2e-3

    # head sizes from a gt_valid.mat in HRNet's layout: headboxes_src (2 corners, (x, y), N)
    boxes = np.zeros((2, 2, len(entries)))
    boxes[0] = [[10, 20, 30, 40, 50], [5, 5, 5, 5, 5]]
    boxes[1] = boxes[0] + [[30, 40, 6, 8, 3], [40, 30, 8, 6, 4]]
    savemat(tmp_path / "gt_valid.mat", {"headboxes_src": boxes})
    ds = MpiiTopDown(MPII_JSON, MPII_IMAGES, gt_valid=tmp_path / "gt_valid.mat")
    assert [float(ds[i]["head_size"]) for i in range(5)] == pytest.approx([30.0, 30.0, 6.0, 6.0, 3.0])
    savemat(tmp_path / "short.mat", {"headboxes_src": boxes[:, :, :3]})
    with pytest.raises(ValueError, match=r"\(2, 2, 5\)"):
        MpiiTopDown(MPII_JSON, MPII_IMAGES, gt_valid=tmp_path / "short.mat")


def test_mpii_training_flip_swaps_left_and_right():
    ds = MpiiTopDown(MPII_JSON, MPII_IMAGES, train=True, seed=1)
    flips = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds.sample_geometry(i)
            back = heatmap_to_image(s["joints"][None].double(), s["center"][None].double(), s["scale"][None].double(),
                                    (64, 64), s["rotation"][None].double())[0].numpy()  # fmt: skip
            if s["flipped"]:
                flips += 1
                back = np.stack([int(s["image_size"][0]) - 1 - back[:, 0], back[:, 1]], 1)[MPII.flip_permutation()]
            labelled = s["image_joints"].abs().sum(1).numpy() > 0
            assert np.abs(back - s["image_joints"].numpy())[labelled].max() < 2e-3
    assert flips > 0


# ---------------------------------------------------------------- missing and empty data


def test_missing_coco_files_raise_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HDM_DATA", raising=False)
    paths = coco_paths()
    assert str(paths.ann_file).endswith("data/coco/annotations/person_keypoints_val2017.json")
    assert str(paths.image_dir).endswith("data/coco/images/val2017")
    for args in [(paths.ann_file, paths.image_dir), (COCO_JSON, tmp_path / "nope")]:
        with pytest.raises(DatasetNotFoundError) as err:
            CocoTopDown(*args)
        msg = str(err.value)
        assert isinstance(err.value, FileNotFoundError)
        assert "data/coco/annotations/person_keypoints_val2017.json" in msg and "data/coco/images/val2017/" in msg
        assert "cocodataset.org" in msg and str(args[0] if args[0] == paths.ann_file else args[1]) in msg
    with pytest.raises(DatasetNotFoundError, match="person detection results"):
        CocoTopDown(COCO_JSON, COCO_IMAGES, boxes=tmp_path / "dets.json")


def test_missing_mpii_files_raise_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HDM_DATA", raising=False)
    paths = mpii_paths()
    for args, kwargs in [((paths.valid, paths.image_dir), {}), ((MPII_JSON, tmp_path / "x"), {}),
                         ((MPII_JSON, MPII_IMAGES), {"gt_valid": paths.gt_valid})]:  # fmt: skip
        with pytest.raises(DatasetNotFoundError) as err:
            MpiiTopDown(*args, **kwargs)
        msg = str(err.value)
        for part in ("data/mpii/annot/train.json", "data/mpii/annot/valid.json", "data/mpii/annot/gt_valid.mat",
                     "data/mpii/images/", "human-pose.mpi-inf.mpg.de"):  # fmt: skip
            assert part in msg


def test_empty_datasets_raise_clear_errors(tmp_path):
    data = json.loads(COCO_JSON.read_text())
    (tmp_path / "empty.json").write_text(json.dumps(dict(data, annotations=[])))
    with pytest.raises(EmptyDatasetError, match="no person"):
        CocoTopDown(tmp_path / "empty.json", COCO_IMAGES)
    no_kp = [dict(a, keypoints=[0] * 51) for a in data["annotations"]]
    (tmp_path / "nokp.json").write_text(json.dumps(dict(data, annotations=no_kp)))
    assert len(CocoTopDown(tmp_path / "nokp.json", COCO_IMAGES)) == 14  # validation keeps them
    with pytest.raises(EmptyDatasetError, match="train=True"):
        CocoTopDown(tmp_path / "nokp.json", COCO_IMAGES, train=True)
    (tmp_path / "empty_mpii.json").write_text("[]")
    with pytest.raises(EmptyDatasetError, match="empty list"):
        MpiiTopDown(tmp_path / "empty_mpii.json", MPII_IMAGES)


def test_reads_the_synthetic_coco_format_unchanged(tmp_path):
    synthetic = pytest.importorskip("hdm.data.synthetic")
    ann_file, image_dir = synthetic.generate(tmp_path, "val", num_images=2, seed=0, image_size=(128, 128))
    anns = json.loads(Path(ann_file).read_text())["annotations"]
    for train in (False, True):
        ds = CocoTopDown(ann_file, image_dir, train=train)
        assert ds.joint_set is COCO and 0 < len(ds) <= len(anns)
        for i in range(len(ds)):
            s = ds[i]
            assert s["image"].shape == (3, 256, 192) and torch.equal(s["visibility"], expected_visibility(s))
            labelled = s["keypoint_flags"].numpy()[COCO.flip_permutation() if s["flipped"] else np.arange(17)] > 0
            assert np.all(np.abs(to_image_px(s) - s["image_joints"].numpy())[labelled] < 2e-3)
