"""Annotation and image checks at load time (hdm.data.validation): every defect fails at once with one line that
names the file, the annotation and the fix; a damaged synthetic cache is regenerated, not served.

Each test reproduces a defect measured before the checks existed (the comment says how it failed then)."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from hdm.data import AnnotationError, CocoTopDown, CorruptImageError, DatasetNotFoundError, MpiiTopDown
from hdm.data import synthetic
from hdm.data.transforms import read_image
from hdm.data.validation import truncation
from hdm.metrics import coco_keypoint_eval

DATA = Path(__file__).parent / "data"
COCO_DIR = DATA / "coco"
COCO_JSON = COCO_DIR / "test_coco.json"
MPII_JSON, MPII_DIR = DATA / "mpii" / "test_mpii.json", DATA / "mpii"


def coco_dict() -> dict:
    return json.loads(COCO_JSON.read_text())


def write(tmp_path: Path, data, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def one_line(err: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


# ---------------------------------------------------------------- COCO-format json


def test_truncated_json_names_the_file_and_the_position(tmp_path):
    # was: json.JSONDecodeError "Unterminated string starting at: line 1 column 1990 (char 1989)", no file named
    text = json.dumps(coco_dict())
    path = write(tmp_path, text[: len(text) // 2])
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(path, COCO_DIR)
    one_line(err, str(path), "invalid JSON", "line 1 column", "truncated")
    assert isinstance(err.value, ValueError)


def test_top_level_list_is_refused_with_what_to_pass(tmp_path):
    # was: AssertionError inside pycocotools ("annotation file format <class 'list'> not supported")
    path = write(tmp_path, json.loads((COCO_DIR / "test_coco_det_AP_H_56.json").read_text()))
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(path, COCO_DIR)
    one_line(err, str(path), "top level is a JSON list", "'images', 'annotations' and 'categories'")


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_lists(tmp_path, key):
    data = coco_dict()
    del data[key]
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(write(tmp_path, data), COCO_DIR)
    one_line(err, "ann.json", f"no ['{key}']")


@pytest.mark.parametrize("key", ["bbox", "keypoints", "image_id", "category_id"])
def test_missing_annotation_field_names_the_annotation(tmp_path, key):
    # was (bbox): a bare KeyError: 'bbox'
    data = coco_dict()
    ann = data["annotations"][3]
    del ann[key]
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(write(tmp_path, data), COCO_DIR)
    one_line(err, "ann.json", f"annotation id {ann['id']}", f"lacks ['{key}']")


@pytest.mark.parametrize("bad", [None, float("nan"), "12.5"])
def test_visible_keypoint_without_a_number_is_refused_at_load(tmp_path, bad):
    # was: loads, then training crashes ~20 s later (NaN loss) with no file or annotation named
    data = coco_dict()
    ann = next(a for a in data["annotations"] if a["keypoints"][5 * 3 + 2] > 0)
    ann["keypoints"][5 * 3] = bad  # left_shoulder x
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(write(tmp_path, data), COCO_DIR)
    one_line(err, "ann.json", f"annotation id {ann['id']}", "keypoint 5 ('left_shoulder')")


def test_unlabelled_keypoints_may_hold_anything(tmp_path):
    data = coco_dict()
    ann = next(a for a in data["annotations"] if a["keypoints"][2] == 0)
    ann["keypoints"][0:2] = [None, float("nan")]
    ds = CocoTopDown(write(tmp_path, data), COCO_DIR)
    record = next(r for r in ds.records if r.annotation_id == ann["id"])
    assert record.flags[0] == 0 and np.all(record.joints[0] == 0)
    assert ds.coco.anns[ann["id"]]["keypoints"][:3] == [0, 0, 0]  # pycocotools sees no NaN either


def test_visibility_flag_must_be_a_number(tmp_path):
    data = coco_dict()
    ann = data["annotations"][0]
    ann["keypoints"][2] = None
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(write(tmp_path, data), COCO_DIR)
    one_line(err, f"annotation id {ann['id']}", "visibility flag")


def test_keypoint_list_length_must_be_three_times_the_category(tmp_path):
    data = coco_dict()
    ann = data["annotations"][2]
    ann["keypoints"] = ann["keypoints"][:-3]
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(write(tmp_path, data), COCO_DIR)
    one_line(err, f"annotation id {ann['id']}", "holds 48 numbers", "17 keypoints")


def test_bad_box_unknown_image_and_duplicate_ids(tmp_path):
    for change, expected in [
        (lambda d: d["annotations"][1].__setitem__("bbox", [1, 2, float("nan"), 4]), "has bbox"),
        (lambda d: d["annotations"][1].__setitem__("image_id", 999), "image_id 999"),
        (lambda d: d["annotations"][1].__setitem__("id", d["annotations"][0]["id"]), "appears twice"),
        (lambda d: d["images"][0].pop("width"), "lacks ['width']"),
    ]:
        data = coco_dict()
        change(data)
        with pytest.raises(AnnotationError) as err:
            CocoTopDown(write(tmp_path, data), COCO_DIR)
        one_line(err, "ann.json", expected)


def test_area_num_keypoints_and_iscrowd_are_filled_when_absent(tmp_path):
    # was: KeyError 'area' / 'num_keypoints' inside COCOeval
    data = coco_dict()
    for ann in data["annotations"]:
        del ann["area"], ann["num_keypoints"], ann["iscrowd"]
    ds = CocoTopDown(write(tmp_path, data), COCO_DIR)
    for ann in ds.coco.dataset["annotations"]:
        assert ann["area"] == pytest.approx(ann["bbox"][2] * ann["bbox"][3])
        assert ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3]) and ann["iscrowd"] == 0
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in ds.coco.dataset["annotations"] if a["num_keypoints"] > 0]  # fmt: skip
    assert coco_keypoint_eval(ds.coco, results)["AP"] == pytest.approx(1.0)
    assert coco_keypoint_eval(write(tmp_path, data, "path.json"), results)["AP"] == pytest.approx(1.0)


def test_truncated_detection_file(tmp_path):
    text = (COCO_DIR / "test_coco_det_AP_H_56.json").read_text()
    path = write(tmp_path, text[:100], "dets.json")
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(COCO_JSON, COCO_DIR, boxes=path)
    one_line(err, str(path), "invalid JSON")


# ---------------------------------------------------------------- MPII json


def test_mpii_json_checks(tmp_path):
    entries = json.loads(MPII_JSON.read_text())
    text = json.dumps(entries)
    with pytest.raises(AnnotationError) as err:
        MpiiTopDown(write(tmp_path, text[:-40], "cut.json"), MPII_DIR)
    one_line(err, "cut.json", "invalid JSON")
    with pytest.raises(AnnotationError) as err:
        MpiiTopDown(write(tmp_path, {"annotations": []}, "dict.json"), MPII_DIR)
    one_line(err, "dict.json", "COCO format")
    bad = json.loads(text)
    bad[2]["joints"][4] = [None, 3.0]  # labelled joint 4 of row 2
    with pytest.raises(AnnotationError) as err:
        MpiiTopDown(write(tmp_path, bad, "nan.json"), MPII_DIR)
    one_line(err, "nan.json", "entry 2", bad[2]["image"], "joint 4")
    bad = json.loads(text)
    del bad[1]["scale"]
    with pytest.raises(AnnotationError) as err:
        MpiiTopDown(write(tmp_path, bad, "noscale.json"), MPII_DIR)
    one_line(err, "entry 1", "lacks ['scale']")
    ok = json.loads(text)
    ok[0]["joints_vis"][3] = 0
    ok[0]["joints"][3] = [float("nan"), None]  # unlabelled: allowed, zeroed
    ds = MpiiTopDown(write(tmp_path, ok, "ok.json"), MPII_DIR)
    assert np.all(ds.records[0].joints[3] == 0) and ds.records[0].flags[3] == 0


# ---------------------------------------------------------------- images


def test_truncated_jpeg_fails_with_its_path_when_read(tmp_path):
    # was: OpenCV decodes the first half and fills the rest with grey, silently
    image = COCO_DIR / "000000000785.jpg"
    data = image.read_bytes()
    assert truncation(data) is None
    (tmp_path / image.name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError) as err:
        read_image(tmp_path / image.name)
    one_line(err, str(tmp_path / image.name), "truncated")
    # through the dataset: the sample of that image fails, naming the file
    ds = CocoTopDown(COCO_JSON, tmp_path)
    for name in {r.image_path.name for r in ds.records} - {image.name}:
        shutil.copy(COCO_DIR / name, tmp_path / name)
    index = next(i for i, r in enumerate(ds.records) if r.image_path.name == image.name)
    with pytest.raises(CorruptImageError, match=image.name):
        ds[index]


def test_complete_images_with_trailing_bytes_still_read(tmp_path):
    data = (COCO_DIR / "000000000785.jpg").read_bytes()
    (tmp_path / "padded.jpg").write_bytes(data + b"\x00" * 64)
    (tmp_path / "trailer.jpg").write_bytes(data + b"some trailer appended by a camera")
    reference = read_image(COCO_DIR / "000000000785.jpg")
    for name in ("padded.jpg", "trailer.jpg"):
        assert np.array_equal(read_image(tmp_path / name), reference)


def test_truncated_png_and_garbage_and_missing_images(tmp_path):
    import cv2

    ok, png = cv2.imencode(".png", np.full((32, 32, 3), 200, np.uint8))
    (tmp_path / "cut.png").write_bytes(png.tobytes()[:-20])
    with pytest.raises(CorruptImageError, match="cut.png.*PNG is truncated"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "noise.jpg").write_bytes(b"not an image at all")
    with pytest.raises(CorruptImageError, match="noise.jpg.*cannot decode"):
        read_image(tmp_path / "noise.jpg")
    with pytest.raises(DatasetNotFoundError, match="gone.jpg"):
        read_image(tmp_path / "gone.jpg")


# ---------------------------------------------------------------- the synthetic cache


@pytest.fixture
def cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path))
    ann, image_dir = synthetic.synthetic_split("smoke", "val", seed=3)
    return ann, image_dir, ann.read_bytes(), {p.name: p.read_bytes() for p in image_dir.glob("*.jpg")}


def _regenerated(ann, image_dir, original_json, original_images):
    assert synthetic.synthetic_split("smoke", "val", seed=3) == (ann, image_dir)
    assert ann.read_bytes() == original_json
    assert {p.name: p.read_bytes() for p in image_dir.glob("*.jpg")} == original_images
    assert len(CocoTopDown(ann, image_dir)) > 0
    assert [p.name for p in ann.parents[2].iterdir()] == [ann.parents[1].name]  # nothing left behind


def test_truncated_synthetic_json_is_regenerated(cached, caplog):
    # was: "Unterminated string starting at: line 1 column 1990" on every run until the cache was deleted by hand
    ann, image_dir, original_json, original_images = cached
    ann.write_bytes(original_json[:1990])
    with caplog.at_level("WARNING"):
        _regenerated(*cached)
    assert "damaged" in caplog.text and "regenerating" in caplog.text


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_damaged_synthetic_image_is_regenerated(cached, damage):
    ann, image_dir, _, originals = cached
    victim = image_dir / sorted(originals)[1]
    if damage == "missing":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(originals[victim.name][: len(originals[victim.name]) // 2])
    else:
        data = bytearray(originals[victim.name])
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    assert synthetic.cache_problem(ann.parents[1], ann, image_dir) is not None
    _regenerated(*cached)


def test_cache_without_manifest_gets_structural_checks(cached):
    ann, image_dir, _, originals = cached
    folder = ann.parents[1]
    (folder / synthetic.MANIFEST).unlink()
    assert synthetic.cache_problem(folder, ann, image_dir) is None  # an older cache, intact: served as is
    victim = image_dir / sorted(originals)[0]
    victim.write_bytes(originals[victim.name][:-100])
    assert "truncated" in synthetic.cache_problem(folder, ann, image_dir)
    _regenerated(*cached)
    assert (folder / synthetic.MANIFEST).is_file()


def test_truncation_check_is_cheap():
    """The check runs on every training read: on a complete JPEG it only looks at the last bytes."""
    data = (COCO_DIR / "000000000785.jpg").read_bytes()
    import timeit

    seconds = min(timeit.repeat(lambda: truncation(data), number=200, repeat=3)) / 200
    assert seconds < 2e-4 and math.isfinite(seconds)


# ---------------------------------------------------------------- issue 18: nothing silent, round two


def test_empty_image_file_is_named(tmp_path):
    # was: cv2.error "(-215:Assertion failed) !buf.empty() in function 'imdecode_'", a traceback naming no file
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(CorruptImageError) as err:
        read_image(tmp_path / "empty.jpg")
    one_line(err, str(tmp_path / "empty.jpg"), "empty (0 bytes)", "restore")


def test_zero_size_box_is_dropped_at_load_with_a_warning(tmp_path, caplog):
    # was: loaded, then the sample failed with "scale must be positive (units of 200.0 px), got [0. 0.]",
    # naming neither the file nor the annotation
    data = coco_dict()
    ann = data["annotations"][4]
    ann["bbox"][2:] = [0, 0]
    path = write(tmp_path, data)
    with caplog.at_level("WARNING", logger="hdm.data"):
        ds = CocoTopDown(path, COCO_DIR)
    assert [r.annotation_id for r in ds.records].count(ann["id"]) == 0 and len(ds) == len(data["annotations"]) - 1
    assert str(path) in caplog.text and f"annotation id {ann['id']}" in caplog.text and "zero size" in caplog.text
    for i in range(len(ds)):
        assert (ds.sample_geometry(i)["scale"] > 0).all()
    # a sub-pixel box clips to a point as well; a zero-width box with a height still crops
    data = coco_dict()
    data["annotations"][4]["bbox"][2:] = [0.5, 0.5]
    data["annotations"][5]["bbox"][2] = 0
    assert len(CocoTopDown(write(tmp_path, data), COCO_DIR)) == len(data["annotations"]) - 1
    # detector boxes: the same rule
    dets = json.loads((COCO_DIR / "test_coco_det_AP_H_56.json").read_text())
    dets[0]["bbox"][2:] = [0, 0]
    det_path = write(tmp_path, dets, "dets.json")
    caplog.clear()
    with caplog.at_level("WARNING", logger="hdm.data"):
        ds = CocoTopDown(COCO_JSON, COCO_DIR, boxes=det_path)
    assert len(ds) == len(dets) - 1 and "detection #0" in caplog.text and str(det_path) in caplog.text


def test_image_folder_that_is_a_file_is_not_called_missing(tmp_path):
    # was: "COCO image folder not found: .../test_coco.json does not exist." (it does: it is a file)
    with pytest.raises(DatasetNotFoundError) as err:
        CocoTopDown(COCO_JSON, COCO_JSON)
    assert f"{COCO_JSON} is a file, not a folder" in str(err.value) and "does not exist" not in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="is a folder, not a file"):
        CocoTopDown(COCO_DIR, COCO_DIR)
    with pytest.raises(DatasetNotFoundError, match="is a file, not a folder"):
        MpiiTopDown(MPII_JSON, MPII_JSON)


def test_string_ids_are_refused_showing_the_types(tmp_path):
    # was: "annotation id 442619, image_id 785 refers to image_id '785', which 'images' does not list"
    data = coco_dict()
    data["annotations"][0]["image_id"] = "785"
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(write(tmp_path, data), COCO_DIR)
    one_line(err, "annotation id 442619", "image_id '785' (str)", "785 (int)", "integers")
    # was: loaded (records hold int('785')); COCOeval then found no result on image '785'
    data = coco_dict()
    for image in data["images"]:
        image["id"] = str(image["id"])
    for ann in data["annotations"]:
        ann["image_id"] = str(ann["image_id"])
    with pytest.raises(AnnotationError) as err:
        CocoTopDown(write(tmp_path, data), COCO_DIR)
    one_line(err, "image #0 has id '785' (str)", "integers")


def test_json_image_size_is_checked_against_the_decoded_image(tmp_path):
    # was: swapped width/height clipped boxes to the wrong image, silently (oracle AP 1.0 -> 0.63)
    data = coco_dict()
    image = data["images"][0]
    image["width"], image["height"] = image["height"], image["width"]
    path = write(tmp_path, data)
    ds = CocoTopDown(path, COCO_DIR)
    index = next(i for i, r in enumerate(ds.records) if r.image_id == image["id"])
    with pytest.raises(AnnotationError) as err:
        ds[index]
    one_line(err, image["file_name"], "640 x 425", "width 425, height 640", str(path), "fix")
    ok = next(i for i, r in enumerate(ds.records) if r.image_id != image["id"])
    assert ds[ok]["image"].shape == (3, 256, 192)



def test_the_oracle_checks_json_image_sizes_without_decoding(tmp_path):
    # was: the oracle reads no pixels, so swapped width/height dropped persons silently (AP 1.0 -> 0.63, exit 0)
    from hdm.oracle import oracle_evaluate

    data = coco_dict()
    image = data["images"][0]
    image["width"], image["height"] = image["height"], image["width"]
    path = write(tmp_path, data)
    with pytest.raises(AnnotationError) as err:
        oracle_evaluate(CocoTopDown(path, COCO_DIR, train=False), "subpixel_dot", "local_com")
    one_line(err, image["file_name"], "640 x 425", "width 425, height 640", str(path))

def test_stale_num_keypoints_are_recomputed_with_one_warning(tmp_path, caplog):
    # was: num_keypoints 0 on labelled persons made COCOeval ignore them: AP NaN, no message
    from pycocotools.coco import COCO

    data = coco_dict()
    labelled = [a for a in data["annotations"] if any(v > 0 for v in a["keypoints"][2::3])]
    for ann in labelled:
        ann["num_keypoints"] = 0
    path = write(tmp_path, data)
    with caplog.at_level("WARNING", logger="hdm.data"):
        ds = CocoTopDown(path, COCO_DIR)
    assert caplog.text.count(str(path)) == 1 and f"{len(labelled)} annotations" in caplog.text
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in labelled]  # fmt: skip
    assert coco_keypoint_eval(ds.coco, results)["AP"] == pytest.approx(1.0)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        raw = COCO(str(path))  # a ground truth hdm did not load: checked when evaluated
    assert coco_keypoint_eval(raw, results)["AP"] == pytest.approx(1.0)
    assert all(a["num_keypoints"] == sum(v > 0 for v in a["keypoints"][2::3]) for a in raw.dataset["annotations"])


# ---------------------------------------------------------------- loss inputs


def test_integer_heatmaps_are_refused_by_the_losses():
    # was: RuntimeError "softmax_lastdim_kernel_impl" not implemented for 'Long'
    import torch

    from hdm.loss import HDMLoss, HeatmapMSELoss, suppliers

    heat = torch.zeros(2, 3, 8, 6, dtype=torch.int64)
    joints, weight = torch.full((2, 3, 2), 3.0), torch.ones(2, 3)
    for loss in (HDMLoss(), HDMLoss(solver="sinkhorn"), HDMLoss(supplier="softmax")):
        with pytest.raises(ValueError, match=r"pred_heatmaps .*torch\.int64.*\.float\(\)"):
            loss(heat, joints, weight)
    with pytest.raises(ValueError, match=r"torch\.int64.*\.float\(\)"):
        suppliers(heat)
    with pytest.raises(ValueError, match=r"pred_heatmaps .*torch\.int64"):
        HeatmapMSELoss()(heat, heat.float(), weight)
    assert HDMLoss()(heat.float(), joints, weight).dtype == torch.float32
