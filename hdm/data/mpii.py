"""MPII Human Pose in HRNet's json layout, as a top-down dataset (sample dict: ``hdm.data.transforms``).

Each json entry is one person: ``{"image": "015601864.jpg", "center": [x, y], "scale": s, "joints": [[x, y]
x 16], "joints_vis": [0/1 x 16]}`` with Matlab (1-based) pixel coordinates and ``s`` = person height / 200 px.
Conversion, as HRNet's ``mpii.py``:

* the centre moves down by ``15 s`` px and the scale grows 1.25x (to avoid cutting off limbs), then centre
  and joints move by -1 px to 0-based pixels: ``center = (cx - 1, cy + 15 s - 1)``, ``scale = 1.25 s``;
* the scale becomes ``(1.25 s, 1.25 s H_in / W_in)``: HRNet crops 1.25 s x 200 px of width and takes the
  height from the input's aspect ratio (for the usual 256 x 256 input both are 1.25 s).

Sample fields specific to MPII:

* ``keypoint_flags`` is ``joints_vis`` (1 = annotated), ``image_joints`` are 0-based image px;
* ``image_id`` counts the json's distinct images in order of first appearance; ``annotation_id`` is the
  person's row in the json (the order of ``gt_valid.mat``); ``area`` is ``(200 s)^2``; ``box_score`` 1;
* ``head_size`` (float32, image px) only when ``gt_valid`` is given: 0.6 x the diagonal of the person's head box
  (``headboxes_src`` of HRNet's ``gt_valid.mat``), the PCKh normaliser. Without it the key is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from hdm.data.errors import EmptyDatasetError, missing
from hdm.data.keypoints import MPII
from hdm.data.transforms import Augmentation, PersonRecord, TopDownDataset, with_scale_aspect
from hdm.data.validation import read_json, validate_mpii
from hdm.paths import data_root

MPII_SOURCE = (
    "Get the MPII Human Pose images (mpii_human_pose_v1.tar.gz) from http://human-pose.mpi-inf.mpg.de/ and "
    "HRNet's annotations (annot/train.json, valid.json, gt_valid.mat) from the HRNet release "
    "(github.com/leoxiaobin/deep-high-resolution-net.pytorch)."
)
HEAD_SIZE_FACTOR = 0.6  # PCKh head size = 0.6 x head-box diagonal (MPII evaluation code)
CENTER_SHIFT_Y = 15.0  # px per unit of scale, HRNet's downward centre shift
MPII_PADDING = 1.25


class MpiiPaths(NamedTuple):
    """Where the real MPII files are expected."""

    train: Path  # <root>/annot/train.json
    valid: Path  # <root>/annot/valid.json
    gt_valid: Path  # <root>/annot/gt_valid.mat
    image_dir: Path  # <root>/images/


def mpii_paths(root: Path | str | None = None) -> MpiiPaths:
    """The expected MPII layout under ``root`` (default ``hdm.paths.data_root() / "mpii"``)."""
    root = Path(root) if root is not None else data_root() / "mpii"
    annot = root / "annot"
    return MpiiPaths(annot / "train.json", annot / "valid.json", annot / "gt_valid.mat", root / "images")


def _layout() -> list[str]:
    p = mpii_paths()
    return [str(p.train), str(p.valid), f"{p.gt_valid}  (head boxes, for PCKh)", f"{p.image_dir}/"]


def head_sizes(gt_valid: Path | str, num_persons: int) -> np.ndarray:
    """(N,) float64 image px: 0.6 x head-box diagonal of each person of ``gt_valid.mat``.

    Args:
        gt_valid: HRNet's ``gt_valid.mat``; ``headboxes_src`` is (2, 2, N): [corner (top-left, bottom-right),
            coordinate (x, y), person].
        num_persons: N expected (the json's length).
    """
    from scipy.io import loadmat

    if not Path(gt_valid).is_file():
        raise missing("MPII head boxes", gt_valid, _layout(), MPII_SOURCE)
    boxes = loadmat(str(gt_valid)).get("headboxes_src")
    if boxes is None or boxes.ndim != 3 or boxes.shape[:2] != (2, 2) or boxes.shape[2] != num_persons:
        shape = None if boxes is None else boxes.shape
        raise ValueError(
            f"{gt_valid}: expected 'headboxes_src' of shape (2, 2, {num_persons}) to match the json, got {shape}"
        )
    return HEAD_SIZE_FACTOR * np.linalg.norm(boxes[1] - boxes[0], axis=0)


def mpii_records(entries: list[dict], image_dir: Path, aspect: float, heads: np.ndarray | None) -> list[PersonRecord]:
    """One ``PersonRecord`` per json entry, converted as the module docstring says."""
    k = MPII.num_joints
    image_ids: dict[str, int] = {}
    records = []
    for row, entry in enumerate(entries):
        s = float(entry["scale"])
        cx, cy = (float(v) for v in entry["center"])
        center = np.array([cx - 1.0, cy + CENTER_SHIFT_Y * s - 1.0])
        flags = np.asarray(entry.get("joints_vis", np.zeros(k)), dtype=np.int64).reshape(k)
        joints = np.asarray(entry["joints"], np.float64).reshape(k, 2) - 1.0 if "joints" in entry else np.zeros((k, 2))
        records.append(
            PersonRecord(
                image_path=image_dir / entry["image"],
                image_size=None,
                center=center,
                scale=with_scale_aspect(np.array([MPII_PADDING * s, MPII_PADDING * s]), aspect),
                joints=np.where(flags[:, None] > 0, joints, 0.0),
                flags=flags,
                image_id=image_ids.setdefault(entry["image"], len(image_ids)),
                annotation_id=row,
                area=(200.0 * s) ** 2,
                head_size=None if heads is None else float(heads[row]),
            )
        )
    return records


class MpiiTopDown(TopDownDataset):
    """MPII persons in HRNet's json layout, one sample per json entry.

    Args:
        ann_file: ``annot/train.json`` or ``annot/valid.json`` (``mpii_paths()``).
        image_dir: the MPII images folder.
        input_hw: (H_in, W_in) crop px. heatmap_hw: (H_hm, W_hm) = input_hw / stride.
        train: augment (validation crops each entry as is).
        gt_valid: HRNet's ``gt_valid.mat`` (head boxes, rows in the json's order) to add "head_size"; or None.
        flip, scale_factor, rotation_factor, rotation_prob, half_body_prob, half_body_min_joints:
            training augmentation (``hdm.data.transforms.Augmentation``); defaults are HRNet's MPII recipe.
        seed: base seed of the per-sample augmentation draws (see ``set_epoch``).
    Raises:
        DatasetNotFoundError: a file or the image folder is missing. EmptyDatasetError: the json is empty.
        AnnotationError: the json is malformed (the one-line message names the file, the entry and the fix).
    """

    def __init__(
        self,
        ann_file: Path | str,
        image_dir: Path | str,
        input_hw: tuple[int, int] = (256, 256),
        heatmap_hw: tuple[int, int] = (64, 64),
        train: bool = False,
        gt_valid: Path | str | None = None,
        flip: bool = True,
        scale_factor: float = 0.25,
        rotation_factor: float = 30.0,
        rotation_prob: float = 0.6,
        half_body_prob: float = 0.0,
        half_body_min_joints: int = 8,
        seed: int = 0,
    ):
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        if not self.ann_file.is_file():
            raise missing("MPII annotations", self.ann_file, _layout(), MPII_SOURCE)
        if not self.image_dir.is_dir():
            raise missing("MPII image folder", self.image_dir, _layout(), MPII_SOURCE)
        entries = validate_mpii(read_json(self.ann_file), self.ann_file, MPII.num_joints)
        if not entries:
            raise EmptyDatasetError(f"no person to yield: {self.ann_file} is an empty list")
        heads = None if gt_valid is None else head_sizes(gt_valid, len(entries))
        records = mpii_records(entries, self.image_dir, input_hw[1] / input_hw[0], heads)
        augmentation = Augmentation(
            flip=flip,
            scale_factor=scale_factor,
            rotation_factor=rotation_factor,
            rotation_prob=rotation_prob,
            half_body_prob=half_body_prob,
            half_body_min_joints=half_body_min_joints,
        )
        super().__init__(records, MPII, input_hw, heatmap_hw, train, augmentation, seed)
