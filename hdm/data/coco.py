"""COCO-format top-down keypoint dataset: COCO 2017 person keypoints, and any COCO-format json (the synthetic
set of ``hdm.data.synthetic`` reads unchanged).

Persons come from ground-truth boxes or from a person detector's results file (COCO results format:
a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, e.g. HRNet's
``COCO_val2017_detections_AP_H_56_person.json``). Each box becomes (center, scale) at the model's aspect ratio,
enlarged 1.25x (``hdm.geometry.box_to_center_scale``). Samples are described in ``hdm.data.transforms``.

Which persons (as HRNet):
* ground-truth boxes: non-crowd annotations of the person category whose box, clipped to the image
  (``x2 = min(w - 1, x1 + max(0, bw - 1))``, same for y), is non-empty and whose area is positive; for
  training also at least one labelled keypoint (v > 0). Validation keeps persons without keypoints.
* detector boxes (validation only): every person box with ``score >= box_score_threshold``, unclipped;
  joints, visibility and flags are zeros and ``annotation_id`` is -1.

A box of zero size (clipped to a point: width and height both 0, e.g. ``w = h = 0`` or a sub-pixel box) has no
crop: such persons are skipped with one warning per file naming the annotation ids (detections: their
positions in the file); COCOeval still counts a skipped person's labelled joints, as a miss. HRNet keeps them and warps with a zero scale; a zero-width box with a height, like a
zero-height one with a width, still crops (at the model's aspect ratio) and is kept.

The images' ``width`` and ``height`` clip the boxes; they are checked against the decoded image when a sample
is read (``hdm.data.transforms.check_decoded_size``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hdm.data.errors import AnnotationError, EmptyDatasetError, missing
from hdm.data.keypoints import JointSet, resolve_joint_set
from hdm.data.transforms import Augmentation, PersonRecord, TopDownDataset
from hdm.data.validation import read_json, validate_coco, with_type
from hdm.geometry import box_to_center_scale
from hdm.paths import data_root

log = logging.getLogger(__name__)

COCO_SOURCE = (
    "Get COCO 2017 (train2017/val2017 images and annotations_trainval2017.zip) from https://cocodataset.org/#download; "
    "HRNet's person detections (COCO_val2017_detections_AP_H_56_person.json) come with the HRNet release "
    "(github.com/leoxiaobin/deep-high-resolution-net.pytorch)."
)
DETECTIONS_FILE = "COCO_val2017_detections_AP_H_56_person.json"


class CocoPaths(NamedTuple):
    """Where the real COCO files are expected."""

    ann_file: Path  # <root>/annotations/person_keypoints_<split>.json
    image_dir: Path  # <root>/images/<split>/
    detections: Path  # <root>/person_detection_results/COCO_val2017_detections_AP_H_56_person.json


def coco_paths(root: Path | str | None = None, split: str = "val2017") -> CocoPaths:
    """The expected real-COCO layout under ``root`` (default ``hdm.paths.data_root() / "coco"``)."""
    root = Path(root) if root is not None else data_root() / "coco"
    return CocoPaths(
        ann_file=root / "annotations" / f"person_keypoints_{split}.json",
        image_dir=root / "images" / split,
        detections=root / "person_detection_results" / DETECTIONS_FILE,
    )


def _layout(ann_file: Path | str = "person_keypoints_val2017.json") -> list[str]:
    """The expected files for the split that ``ann_file`` names (val2017 when it names none)."""
    match = re.fullmatch(r"person_keypoints_(\w+)\.json", Path(ann_file).name)
    paths = coco_paths(split=match.group(1) if match else "val2017")
    return [str(paths.ann_file), f"{paths.image_dir}/", f"{paths.detections}  (detector boxes, optional)"]


def load_coco(ann_file: Path | str):
    """``pycocotools.coco.COCO`` of ``ann_file``, checked (``hdm.data.validation.validate_coco``: one-line
    ``AnnotationError`` naming the file and annotation on a defect; missing ``area``/``num_keypoints``/``iscrowd``
    filled in) and indexed quietly (pycocotools prints progress otherwise)."""
    if not Path(ann_file).is_file():
        raise missing("COCO-format keypoint annotations", ann_file, _layout(ann_file), COCO_SOURCE)
    data = validate_coco(read_json(ann_file), ann_file)
    return coco_from_dict(data)


def coco_from_dict(data: dict):
    """A ``pycocotools.coco.COCO`` indexing an already checked annotation dict (no file read)."""
    from pycocotools.coco import COCO as CocoApi

    api = CocoApi()
    api.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    api.hdm_validated = True  # hdm.metrics.coco_keypoint_eval skips its own check of this ground truth
    return api


def keypoint_category(api, joint_set=None, sigmas=None, source: str = "the annotations") -> tuple[int, JointSet]:
    """(category id, joint set) of the keypoint category: the one named "person", else the only category, else
    the only one listing keypoint names.

    joint_set: None to detect the set from the category's keypoint names (``hdm.data.keypoints.resolve_joint_set``),
    a key of ``JOINT_SETS`` or a ``JointSet``. sigmas: K numbers or "uniform" to override the set's OKS sigmas.
    """
    cats = api.loadCats(api.getCatIds())
    chosen = [c for c in cats if c.get("name") == "person"] or (
        cats if len(cats) == 1 else [c for c in cats if c.get("keypoints")]
    )
    if len(chosen) != 1:
        names = [c.get("name") for c in cats]
        raise EmptyDatasetError(
            f"{source}: no single keypoint category to read (categories: {names}); keep one category with "
            "'keypoints' names, or name it 'person'"
        )
    cat = chosen[0]
    names = cat.get("keypoints") or None
    anns = api.dataset["annotations"]
    sizes = {len(a["keypoints"]) // 3 for a in anns if a["category_id"] == cat["id"] and "keypoints" in a}
    skeleton = [(a - 1, b - 1) for a, b in cat.get("skeleton") or []]
    num_joints = len(names) if names else (min(sizes) if sizes else None)
    resolved = resolve_joint_set(names, num_joints, joint_set, sigmas, skeleton, source)
    return cat["id"], resolved


person_category = keypoint_category  # the name used before other keypoint sets were supported


def annotation_joint_set(ann_file: Path | str, joint_set=None, sigmas=None) -> JointSet:
    """The joint set ``CocoTopDown(ann_file, ..., joint_set=joint_set, sigmas=sigmas)`` resolves, without its
    records or images (a check before training: e.g. ``.require_sigmas()``)."""
    api = load_coco(ann_file)
    return keypoint_category(api, joint_set, None if sigmas is None else list(sigmas), str(ann_file))[1]


def clean_box(bbox, width: int, height: int) -> np.ndarray | None:
    """HRNet's box sanitising: clip ``(x, y, w, h)`` image px to the image; None if nothing is left."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1])


def _warn_zero_boxes(source, skipped: list[str]) -> None:
    """One warning for the persons of ``source`` skipped for a zero-size box (see the module docstring)."""
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        log.warning(
            "%s: %d person(s) skipped: a box of zero size (width and height 0 after clipping to the image) has no "
            "crop: %s; fix their bbox [x, y, w, h] to use them",
            source, len(skipped), shown,
        )


def gt_records(api, cat_id: int, joint_set: JointSet, image_dir: Path, aspect: float, train: bool,
               source: Path | str = "the annotations"):  # fmt: skip
    """One ``PersonRecord`` per kept ground-truth person (see the module docstring), by image id then file order.
    ``source``: the annotation file, named in warnings and in the records' ``size_source``."""
    records, zero_size = [], []
    k = joint_set.num_joints
    for image_id in sorted(api.imgs):
        info = api.imgs[image_id]
        for ann in api.imgToAnns.get(image_id, []):
            if ann.get("category_id") != cat_id or ann.get("iscrowd", 0):
                continue
            box = clean_box(ann["bbox"], info["width"], info["height"])
            area = float(ann["area"])  # filled from the box by validate_coco when the file has none
            if box is None or area <= 0:
                continue
            kp = np.asarray(ann.get("keypoints", [0] * 3 * k), dtype=np.float64)
            if kp.size != 3 * k:
                raise ValueError(f"annotation {ann['id']} has {kp.size // 3} keypoints, the category lists {k}")
            kp = kp.reshape(k, 3)
            flags = kp[:, 2].astype(np.int64)
            if train and not (flags > 0).any():
                continue
            center, scale = box_to_center_scale(box, aspect)
            if not (scale > 0).all():
                zero_size.append(f"annotation id {ann['id']} (image_id {image_id}, bbox {ann['bbox']})")
                continue
            records.append(
                PersonRecord(
                    image_path=image_dir / info["file_name"],
                    image_size=(int(info["width"]), int(info["height"])),
                    center=center,
                    scale=scale,
                    joints=np.where(flags[:, None] > 0, kp[:, :2], 0.0),
                    flags=flags,
                    image_id=int(image_id),
                    annotation_id=int(ann["id"]),
                    area=area,
                    size_source=source,
                )
            )
    _warn_zero_boxes(source, zero_size)
    return records


def detection_records(api, cat_id: int, joint_set: JointSet, image_dir: Path, aspect: float, path, threshold: float,
                      ann_source: Path | str = "the annotations"):  # fmt: skip
    """One ``PersonRecord`` per person detection with ``score >= threshold``, in file order (zero-size boxes
    skipped with a warning). ``ann_source``: the annotation file that gives the images' sizes."""
    if not Path(path).is_file():
        raise missing("person detection results", path, _layout(), COCO_SOURCE)
    dets = read_json(path, fix="restore the file, or regenerate it with the person detector")
    required = {"image_id", "category_id", "bbox", "score"}
    if not isinstance(dets, list):
        raise AnnotationError(
            f"{path}: the top level is a JSON {type(dets).__name__}, expected COCO results format: a list of "
            "{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'} dicts"
        )
    for n, d in enumerate(dets):
        lacks = sorted(required - d.keys()) if isinstance(d, dict) else sorted(required)
        if lacks:
            raise AnnotationError(
                f"{path}: detection #{n} lacks {lacks}; COCO results format is a list of "
                "{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'} dicts"
            )
        box, score = d["bbox"], d["score"]
        finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        if not (isinstance(box, list) and len(box) == 4 and all(finite(b) for b in box) and finite(score)):
            raise AnnotationError(
                f"{path}: detection #{n} (image_id {d['image_id']}) has bbox {box!r} and score {score!r}; both must "
                "be finite numbers (bbox [x, y, w, h] image px)"
            )
    k = joint_set.num_joints
    records, zero_size = [], []
    for n, d in enumerate(dets):
        if d["category_id"] != cat_id or d["score"] < threshold:
            continue
        if d["image_id"] not in api.imgs:
            raise AnnotationError(
                f"{path}: detection #{n} is on image_id {with_type(d['image_id'])}, which the annotation file lacks; "
                "use the detections made on the images of that annotation file"
            )
        info = api.imgs[d["image_id"]]
        x, y, w, h = (float(v) for v in d["bbox"])
        center, scale = box_to_center_scale([x, y, w, h], aspect)
        if not (scale > 0).all():
            zero_size.append(f"detection #{n} (image_id {d['image_id']}, bbox {d['bbox']})")
            continue
        records.append(
            PersonRecord(
                image_path=image_dir / info["file_name"],
                image_size=(int(info["width"]), int(info["height"])),
                center=center,
                scale=scale,
                joints=np.zeros((k, 2)),
                flags=np.zeros(k, dtype=np.int64),
                image_id=int(d["image_id"]),
                annotation_id=-1,
                area=w * h,
                box_score=float(d["score"]),
                size_source=ann_source,
            )
        )
    _warn_zero_boxes(path, zero_size)
    return records


class CocoTopDown(TopDownDataset):
    """COCO-format person keypoints, one sample per person (see ``hdm.data.transforms`` for the sample dict).

    Args:
        ann_file: COCO keypoint annotations json (e.g. ``coco_paths().ann_file``).
        image_dir: folder of the images named by the json's ``file_name``.
        input_hw: (H_in, W_in) crop px. heatmap_hw: (H_hm, W_hm) = input_hw / stride.
        train: augment, and keep only persons with labelled keypoints.
        boxes: "gt" for ground-truth boxes, or the path of a person detection results json (validation only).
        box_score_threshold: keep detections with score >= this (HRNet: 0.0). Ignored for "gt".
        flip, scale_factor, rotation_factor, rotation_prob, half_body_prob, half_body_min_joints:
            training augmentation, see ``hdm.data.transforms.Augmentation`` (defaults: HRNet COCO).
        seed: base seed of the per-sample augmentation draws (see ``set_epoch``).
        joint_set: the keypoint set: None detects it from the category's keypoint names (built-in sets in any
            spelling and order, else a "custom" set with flip pairs from the names and no sigmas); a key of
            ``hdm.data.keypoints.JOINT_SETS`` (e.g. "crowdpose"); or a ``JointSet``.
        sigmas: K OKS constants, or "uniform" (``hdm.data.keypoints.UNIFORM_SIGMA`` each), overriding the set's;
            needed to evaluate a custom set with COCO AP.
    Attributes:
        coco: the checked ``pycocotools.coco.COCO`` ground truth. category_id: the keypoint category's id.
        joint_set: the resolved ``JointSet`` (names, flip pairs, sigmas...).
    Raises:
        DatasetNotFoundError: ann_file, image_dir or the detection file is missing.
        AnnotationError: a file is malformed (the message names it, the annotation and the fix).
        JointSetError: ``joint_set`` does not fit the annotations, or training flips joints without twins.
        EmptyDatasetError: no person to yield.
    """

    def __init__(
        self,
        ann_file: Path | str,
        image_dir: Path | str,
        input_hw: tuple[int, int] = (256, 192),
        heatmap_hw: tuple[int, int] = (64, 48),
        train: bool = False,
        boxes: str | Path = "gt",
        box_score_threshold: float = 0.0,
        flip: bool = True,
        scale_factor: float = 0.35,
        rotation_factor: float = 45.0,
        rotation_prob: float = 0.6,
        half_body_prob: float = 0.3,
        half_body_min_joints: int = 8,
        seed: int = 0,
        joint_set: str | JointSet | None = None,
        sigmas=None,
    ):
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        self.coco = load_coco(self.ann_file)
        if not self.image_dir.is_dir():
            raise missing("COCO image folder", self.image_dir, _layout(self.ann_file), COCO_SOURCE)
        use_gt = isinstance(boxes, str) and boxes == "gt"
        if train and not use_gt:
            raise ValueError(f"training needs ground-truth boxes (boxes='gt'), got boxes={str(boxes)!r}")
        cat_id, joint_set = keypoint_category(self.coco, joint_set, sigmas, str(self.ann_file))
        self.category_id = cat_id
        aspect = input_hw[1] / input_hw[0]
        if use_gt:
            records = gt_records(self.coco, cat_id, joint_set, self.image_dir, aspect, train, self.ann_file)
            source = f"{self.ann_file} (ground-truth boxes, train={train})"
        else:
            records = detection_records(
                self.coco, cat_id, joint_set, self.image_dir, aspect, boxes, box_score_threshold, self.ann_file
            )
            source = f"{boxes} (person detections with score >= {box_score_threshold})"
        if not records:
            raise EmptyDatasetError(f"no person to yield from {source}: check the file and the filters")
        augmentation = Augmentation(
            flip=flip,
            scale_factor=scale_factor,
            rotation_factor=rotation_factor,
            rotation_prob=rotation_prob,
            half_body_prob=half_body_prob,
            half_body_min_joints=half_body_min_joints,
        )
        super().__init__(records, joint_set, input_hw, heatmap_hw, train, augmentation, seed)
