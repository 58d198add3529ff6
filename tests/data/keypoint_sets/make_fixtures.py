"""Write the tiny COCO-format fixtures of other keypoint sets used by tests/test_keypoint_sets.py.

Run from the repository root: ``python tests/data/keypoint_sets/make_fixtures.py``. Deterministic (seed 0).
Two 160 x 120 drawn images (no real photo) and three annotation files, each with 2 images and 3 persons:

* ``crowdpose.json``: CrowdPose's 14 joints in CrowdPose's order and names; no ``area`` field (the loader
  fills it from the box).
* ``mhp.json``: 16 joints, MPII's order, LIP-style spellings (``R_Ankle``, ``B_Pelvis``...); no
  ``num_keypoints`` field.
* ``animal.json``: a made-up quadruped set of 9 joints in mixed spellings (``L_Eye``, ``rightEye``,
  ``leftFrontPaw``, ``Right-front-paw``, ``hind_paw_l``...) in category id 3 "quadruped", with its own sigmas
  listed in ``info.sigmas`` (not a COCO field: the test passes them explicitly).

Every labelled joint lies inside its box, so that every one falls inside the top-down crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).parent
SIZE = (160, 120)  # (W, H)
IMAGES = [{"id": 11, "file_name": "img_000011.jpg", "width": SIZE[0], "height": SIZE[1]},
          {"id": 12, "file_name": "img_000012.jpg", "width": SIZE[0], "height": SIZE[1]}]  # fmt: skip
# (image id, box x, y, w, h) of the three persons
PERSONS = [(11, 10.0, 8.0, 60.0, 100.0), (11, 84.0, 20.0, 50.0, 90.0), (12, 30.0, 12.0, 96.0, 100.0)]

CROWDPOSE = [
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
]  # fmt: skip
MHP = [
    "R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "B_Pelvis", "B_Spine", "B_Neck", "B_Head",
    "R_Wrist", "R_Elbow", "R_Shoulder", "L_Shoulder", "L_Elbow", "L_Wrist",
]  # fmt: skip
ANIMAL = [
    "nose", "L_Eye", "rightEye", "leftFrontPaw", "Right-front-paw", "hind_paw_l", "hind paw r", "withers",
    "tail_base",
]  # fmt: skip
ANIMAL_SIGMAS = [0.026, 0.025, 0.025, 0.062, 0.062, 0.089, 0.089, 0.079, 0.079]


def draw_images() -> None:
    rng = np.random.default_rng(0)
    for info in IMAGES:
        w, h = info["width"], info["height"]
        yy, xx = np.mgrid[0:h, 0:w]
        image = np.stack([xx * 255 / w, yy * 255 / h, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
        for _ in range(6):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.circle(image, centre, int(rng.integers(4, 20)), colour, -1)
        cv2.imwrite(str(HERE / info["file_name"]), image, [cv2.IMWRITE_JPEG_QUALITY, 80])


def keypoints(rng: np.random.Generator, box, k: int, unlabelled: int) -> list[float]:
    """[x, y, v] * k inside ``box`` (2-decimal floats), ``unlabelled`` random joints with v = 0 and x = y = 0."""
    x, y, w, h = box
    xy = np.round(np.stack([rng.uniform(x + 2, x + w - 2, k), rng.uniform(y + 2, y + h - 2, k)], 1), 2)
    v = rng.choice([1, 2], size=k, p=[0.3, 0.7])
    v[rng.choice(k, size=unlabelled, replace=False)] = 0
    out = []
    for (px, py), flag in zip(xy, v):
        out += [0, 0, 0] if flag == 0 else [float(px), float(py), int(flag)]
    return out


def write(name: str, names: list[str], category: dict, drop: str | None, seed: int, info: dict | None = None) -> None:
    rng = np.random.default_rng(seed)
    anns = []
    for n, (image_id, *box) in enumerate(PERSONS):
        kp = keypoints(rng, box, len(names), unlabelled=n)
        ann = {"id": 100 + n, "image_id": image_id, "category_id": category["id"], "iscrowd": 0, "bbox": box,
               "area": box[2] * box[3] * 0.6, "num_keypoints": sum(v > 0 for v in kp[2::3]), "keypoints": kp}  # fmt: skip
        if drop:
            del ann[drop]
        anns.append(ann)
    data = {"info": info or {}, "images": IMAGES, "annotations": anns,
            "categories": [dict(category, keypoints=names)]}  # fmt: skip
    (HERE / name).write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    draw_images()
    write("crowdpose.json", CROWDPOSE, {"id": 1, "name": "person", "skeleton": [[13, 14], [14, 1], [14, 2]]}, "area", 1)
    write("mhp.json", MHP, {"id": 1, "name": "person"}, "num_keypoints", 2)
    write("animal.json", ANIMAL, {"id": 3, "name": "quadruped", "supercategory": "animal"}, None, 3,
          {"description": "made-up quadruped keypoints", "sigmas": ANIMAL_SIGMAS})  # fmt: skip


if __name__ == "__main__":
    main()
