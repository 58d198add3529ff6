"""A synthetic human-pose dataset written in COCO keypoints format, generated on the fly and cached.

It lets the ``default`` scale train and evaluate on a laptop CPU through exactly the code path of real COCO:
the same loader reads its json and images, and pycocotools ``COCOeval`` scores it (AP, APM, APL, AR).

What an image holds (all drawn with OpenCV, seeded per image):
- a textured background (gradient, low-frequency noise, stripes, blobs) and distractors behind the people:
  random shapes and limb-like stick fragments in clothing and skin colours;
- 1-3 articulated figures with the 17 COCO joints. Each is a pseudo-3D kinematic skeleton (human proportions,
  joint angles sampled within human ranges, facing direction (yaw) anywhere in 360 deg, forward/side lean,
  in-plane roll, orthographic projection), drawn far-to-near as thick limbs, a torso polygon, a neck and a head
  disc with hair, eyes, nose and ears; own colours and limb thickness per figure. Figures overlap (the one drawn
  later is in front) and may be cut by the image border;
- occluders (rectangles, discs) over some joints, then mild blur, noise and JPEG compression.

Annotation conventions (checked against COCO, see below):
- ``keypoints`` are COCO *pixel indices*: (x, y) = (i, j) is the centre of pixel column i, row j; the image spans
  x in [-0.5, W - 0.5]. This is what real COCO keypoints are (integers in [0, W-1], while segmentation polygons
  and boxes are continuous in [0, W]: detectron2 adds 0.5 to COCO keypoints for that reason, and pycocotools
  rasterises polygon [1, 3] x [1, 3] to pixels 1..2). It is also hdm's convention (pixel centres on integers)
  and OpenCV's drawing convention, so figures are drawn at exactly the annotated coordinates (1/16 px fixed
  point). Unlike real COCO, coordinates are stored as floats with 2 decimals, not rounded to integers: the
  ground truth is exact, so sub-pixel decoding (the paper's subject) is not drowned in +-0.5 px label noise.
- ``v`` = 2 when the joint's pixel shows a body part of the same figure adjacent to that joint; 1 when it is
  inside the image but hidden (by an occluder, another figure, the figure's own torso or limbs, or, for eyes,
  ears and nose, by the head turning away); 0 with x = y = 0 when outside the pixel-centre range [0, W-1] x
  [0, H-1].
- ``bbox`` [x, y, w, h] is COCO's continuous box (pixel i covers [i, i + 1)), tight around every pixel the figure
  covers before occlusion (its amodal silhouette, clipped to the image), so it contains every labelled joint:
  ``x <= kx + 0.5 <= x + w``. ``area`` is the number of pixels where the figure is visible (COCO's visible
  segmentation area): it sets the OKS scale and the APM (32^2..96^2) / APL (> 96^2) split. No ``segmentation``.

Left/right: a figure's *left* limbs are drawn in a lighter shade of its clothing colour and its right limbs in a
darker one, in every image; together with the face (eyes and nose are drawn only on the side facing the camera),
left and right are therefore learnable. The cue is subtle on very dark or very light clothing, so some
left/right confusion remains part of the difficulty, as on real COCO.

Splits: ``train``, ``val`` and a held-out ``test`` split (same generator, a disjoint random stream per split:
``split_stream``), sized per preset (``PRESETS``: smoke 24/12/12, default 1200/300/300, long 4000/400/400).
Training validates on ``val``; ``test`` is only evaluated (``hdm.engine.evaluate(run, split="test")``), so the
settings and decoders chosen on ``val`` are reported on images nothing was chosen on.

The ``default`` preset (1200 train + 300 val images, 256 x 256, seed 0) has about 1.7 people per image, 14.3
labelled joints per person, 23 % of them occluded (v=1), and 3 % small / 64 % medium / 33 % large instances by
COCOeval's area ranges; it is generated in about 17 s on a 2-core CPU (``benchmarks/synthetic_speed.py``).

Cache key: a cache folder is named by the preset, split, seed and ``generator_version()``, the syntax hash of this
module (``hdm.codehash``): any change of its code (not of a docstring or comment) is another folder, generated
on first use, so changed drawing code never serves images drawn by the old code.

Cache integrity: ``synthetic_split`` writes ``manifest.json`` (size and SHA-1 of the json and of every image) into
each cache folder and checks it whenever the split is asked for (about 0.1 s for the ``default`` preset); a
truncated json, a missing, cut or altered image makes it regenerate the split (deterministic from its seed)
instead of serving it. Caches written before the manifest existed get a structural check instead (the json
parses and validates, every listed image is present with its JPEG end marker).

Public API: ``generate`` (write one split), ``synthetic_split`` (cached presets ``smoke`` / ``default`` /
``long``, splits ``SPLITS``), ``split_stream``, ``cache_problem``,
``generator_version``, ``dataset_statistics``, ``render_preview``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hdm import codehash
from hdm.data.errors import AnnotationError
from hdm.data.validation import read_json, truncation, validate_coco
from hdm.paths import data_root

log = logging.getLogger(__name__)



@functools.lru_cache(maxsize=1)
def generator_version() -> str:
    """12 hex digits of this module's syntax hash (``hdm.codehash``): part of every cache folder's name, so any
    change of the drawing code regenerates the data (docstrings and comments do not count)."""
    return codehash.syntax_hash([Path(__file__)], salt="synthetic generator")[:12]


KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# COCO's skeleton, 1-based joint indices as in the official annotation files.
SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
NUM_JOINTS = len(KEYPOINT_NAMES)
#: The splits: training, validation (chosen on each epoch) and a held-out test split (reported, never chosen on).
SPLITS = ("train", "val", "test")


def split_stream(split: str) -> int:
    """The 32-bit stream key of ``split`` (CRC-32 of its name): image i of ``split`` is drawn by
    ``default_rng([seed, split_stream(split), i])``. With seeds and indices below 2^32 each such entropy is three
    32-bit words, so two splits with different keys never share an image's entropy, whatever their seeds; the keys
    of ``SPLITS`` (and the pretraining parts' ``crc32(b"pretrain")``) are pairwise distinct (checked at import)."""
    return zlib.crc32(split.encode())


if len({split_stream(s) for s in (*SPLITS, "pretrain")}) != len(SPLITS) + 1:  # pragma: no cover - a renamed split
    raise RuntimeError(f"the random streams of the synthetic splits {SPLITS} and 'pretrain' collide: rename a split")


@dataclass(frozen=True)
class SyntheticPreset:
    """Size of a cached synthetic dataset.

    num_train, num_val, num_test: images per split. image_size: (W, H) image px.
    """

    num_train: int
    num_val: int
    num_test: int
    image_size: tuple[int, int] = (256, 256)

    def num_images(self, split: str) -> int:
        """Images of ``split`` (a key of ``SPLITS``)."""
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]


PRESETS = {
    "smoke": SyntheticPreset(num_train=24, num_val=12, num_test=12),
    "default": SyntheticPreset(num_train=1200, num_val=300, num_test=300),
    "long": SyntheticPreset(num_train=4000, num_val=400, num_test=400),
}

# ------------------------------------------------------------------ body model
# Lengths and widths as fractions of the figure's standing height h (about 7.5 heads; segment ratios follow
# standard anthropometric tables: shoulder joint at 0.82 h, hip joint at 0.53 h).
_PROPORTIONS = {
    "torso": 0.29,  # neck base (mid-shoulder) to pelvis centre
    "shoulder_width": 0.22,  # between shoulder joints
    "hip_width": 0.16,  # between hip joints
    "neck": 0.11,  # neck base to head centre
    "head_radius": 0.062,
    "upper_arm": 0.17,
    "forearm": 0.15,
    "thigh": 0.245,
    "shin": 0.25,
    "hand": 0.05,
    "foot": 0.075,
}
_WIDTHS = {  # drawn thickness, fraction of h (times a per-figure factor)
    "upper_arm": 0.055, "forearm": 0.045, "hand": 0.04, "thigh": 0.08, "shin": 0.062, "foot": 0.04,
    "neck": 0.05, "chest_depth": 0.13, "hip_depth": 0.11, "hip_flesh": 0.03,
}  # fmt: skip
# Face points in the head frame (left, up, forward), in head radii; all within 0.93 radius of the centre so
# they project inside the head disc.
_FACE = {
    0: (0.0, -0.15, 0.92),  # nose
    1: (0.35, 0.2, 0.8), 2: (-0.35, 0.2, 0.8),  # eyes
    3: (0.9, 0.05, -0.1), 4: (-0.9, 0.05, -0.1),  # ears
}  # fmt: skip
_FACE_HIDDEN_DEPTH = 0.2  # a face point more than this many head radii behind the head centre is self-occluded

# Drawn parts: name -> (joints it can show as visible, side: +1 left, -1 right, 0 centre).
_PARTS = (
    ("torso", (5, 6, 11, 12), 0), ("head", (0, 1, 2, 3, 4), 0), ("neck", (), 0),
    ("l_upper_arm", (5, 7), 1), ("r_upper_arm", (6, 8), -1), ("l_forearm", (7, 9), 1), ("r_forearm", (8, 10), -1),
    ("l_hand", (9,), 1), ("r_hand", (10,), -1), ("l_thigh", (11, 13), 1), ("r_thigh", (12, 14), -1),
    ("l_shin", (13, 15), 1), ("r_shin", (14, 16), -1), ("l_foot", (15,), 1), ("r_foot", (16,), -1),
)  # fmt: skip
_PART_INDEX = {name: p for p, (name, _, _) in enumerate(_PARTS)}
_LABELS_PER_FIGURE = 16  # label map value of part p of figure f: f * 16 + p + 1 (<= 48 for 3 figures)
_LABEL_OCCLUDER = 255
_JOINT_LABELS = [[p for p, (_, joints, _) in enumerate(_PARTS) if k in joints] for k in range(NUM_JOINTS)]

_MAX_PERSONS = 3
_PERSON_COUNT_PROBS = (0.45, 0.35, 0.20)  # 1, 2, 3 figures per image
_HEIGHT_RANGE = (0.28, 1.9)  # standing height, fraction of the image height, sampled log-uniformly
_MIN_LABELLED = 8  # a placement must keep at least this many joints inside the image
_MAX_OVERLAP = 0.45  # max intersection / smaller area of two figures' joint boxes
_SHIFT = 4  # OpenCV fixed-point bits: coordinates drawn with 1/16 px precision
_SCALE = 1 << _SHIFT
_JPEG_QUALITY = 92


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix (3, 3) by ``angle`` rad about the unit ``axis`` (3,) (right-hand rule)."""
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return c * np.eye(3) + s * cross + (1.0 - c) * np.outer(axis, axis)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _limb_direction(down, forward, outward, flexion: float, abduction: float) -> np.ndarray:
    """Unit direction (3,) of a limb hanging ``down``, swung ``flexion`` rad forward and ``abduction`` rad out."""
    d = (
        down * math.cos(flexion) * math.cos(abduction)
        + forward * math.sin(flexion) * math.cos(abduction)
        + outward * math.sin(abduction)
    )
    return _unit(d)


def _bend(d: np.ndarray, toward: np.ndarray, fallback: np.ndarray, angle: float, twist: float) -> np.ndarray:
    """Direction (3,) of the next segment: ``d`` turned ``angle`` rad toward ``toward`` (or ``fallback`` where
    ``toward`` is parallel to ``d``), the bending plane first twisted ``twist`` rad about ``d``."""
    n = toward - (toward @ d) * d
    if np.linalg.norm(n) < 1e-3:
        n = fallback - (fallback @ d) * d
    n = _unit(n)
    n = n * math.cos(twist) + np.cross(d, n) * math.sin(twist)
    return math.cos(angle) * d + math.sin(angle) * n


def _sample_pose(rng: np.random.Generator) -> dict[str, float]:
    """Joint angles (rad) within human ranges; a third of the figures stand relaxed, the rest move freely.

    yaw 0 faces the camera; roll is the in-plane rotation (mostly upright, 8 % anywhere within +-110 deg)."""
    relaxed = rng.random() < 0.35
    deg = math.radians
    pose = {
        # Most people face the camera more or less (as in photos); the rest face any direction.
        "yaw": deg(rng.normal(0, 35)) if rng.random() < 0.65 else rng.uniform(-math.pi, math.pi),
        "lean": deg(np.clip(rng.normal(5, 12), -20, 50)),
        "side": deg(rng.normal(0, 6)),
        "twist": deg(rng.normal(0, 12)),
        "head_pitch": deg(rng.normal(0, 10)),
        "head_yaw": deg(np.clip(rng.normal(0, 25), -70, 70)),
    }
    for side in ("l", "r"):
        if relaxed:
            arm = (rng.uniform(-20, 35), rng.uniform(0, 30), rng.uniform(0, 60))
            leg = (rng.uniform(-10, 20), rng.uniform(-3, 15), rng.uniform(0, 25))
        else:
            arm = (rng.uniform(-40, 170), rng.uniform(-10, 110), rng.uniform(0, 145))
            leg = (rng.uniform(-25, 110), rng.uniform(-10, 45), rng.uniform(0, 135))
        pose[f"{side}_shoulder_flex"], pose[f"{side}_shoulder_abd"], pose[f"{side}_elbow"] = map(deg, arm)
        pose[f"{side}_arm_twist"] = deg(rng.uniform(-50, 50))
        pose[f"{side}_hip_flex"], pose[f"{side}_hip_abd"], pose[f"{side}_knee"] = map(deg, leg)
        pose[f"{side}_leg_twist"] = deg(rng.uniform(-20, 20))
    roll = rng.normal(0, 12) if rng.random() > 0.08 else rng.uniform(-110, 110)
    pose["roll"] = deg(roll)
    return pose


def _skeleton_3d(pose: dict[str, float], lengths: dict[str, float]) -> dict[str, np.ndarray]:
    """Points (3,) px in camera axes (x right, y down, z into the scene), pelvis centre at the origin.

    Keys: ``joints`` (17, 3); ``neck``, ``head``, ``l_hand``, ``r_hand``, ``l_toe``, ``r_toe`` (3,);
    ``head_axes`` (3, 3) columns = head left, up, forward; ``torso_forward``, ``pelvis_forward`` (3,).
    """
    yaw = pose["yaw"]
    # Body frame (left, up, forward) -> camera; yaw 0 faces the camera, so the person's left is image right.
    body = np.array([[math.cos(yaw), 0.0, math.sin(yaw)], [0.0, -1.0, 0.0], [math.sin(yaw), 0.0, -math.cos(yaw)]]).T
    roll = _rot(np.array([0.0, 0.0, 1.0]), pose["roll"])
    pelvis = roll @ body  # columns: pelvis left, up, forward in camera axes
    e_l, e_u, e_f = np.eye(3)
    torso = pelvis @ _rot(e_l, pose["lean"]) @ _rot(e_f, pose["side"]) @ _rot(e_u, pose["twist"])
    head = torso @ _rot(e_l, pose["head_pitch"]) @ _rot(e_u, pose["head_yaw"])
    p_l, p_u, p_f = pelvis.T
    t_l, t_u, t_f = torso.T

    joints = np.zeros((NUM_JOINTS, 3))
    neck = t_u * lengths["torso"]
    joints[5] = neck + t_l * lengths["shoulder_width"] / 2
    joints[6] = neck - t_l * lengths["shoulder_width"] / 2
    joints[11] = p_l * lengths["hip_width"] / 2
    joints[12] = -p_l * lengths["hip_width"] / 2
    head_centre = neck + head[:, 1] * lengths["neck"]
    for k, offset in _FACE.items():
        joints[k] = head_centre + head @ np.array(offset) * lengths["head_radius"]

    points = {"neck": neck, "head": head_centre, "head_axes": head, "torso_forward": t_f, "pelvis_forward": p_f}
    for side, sign, (sh, el, wr, hp, kn, an) in (("l", 1, (5, 7, 9, 11, 13, 15)), ("r", -1, (6, 8, 10, 12, 14, 16))):
        arm = _limb_direction(-t_u, t_f, sign * t_l, pose[f"{side}_shoulder_flex"], pose[f"{side}_shoulder_abd"])
        joints[el] = joints[sh] + arm * lengths["upper_arm"]
        fore = _bend(arm, t_f, t_u, pose[f"{side}_elbow"], pose[f"{side}_arm_twist"])
        joints[wr] = joints[el] + fore * lengths["forearm"]
        points[f"{side}_hand"] = joints[wr] + fore * lengths["hand"]
        thigh = _limb_direction(-p_u, p_f, sign * p_l, pose[f"{side}_hip_flex"], pose[f"{side}_hip_abd"])
        joints[kn] = joints[hp] + thigh * lengths["thigh"]
        shin = _bend(thigh, -p_f, -p_u, pose[f"{side}_knee"], pose[f"{side}_leg_twist"])
        joints[an] = joints[kn] + shin * lengths["shin"]
        foot = _bend(shin, p_f, -p_u, math.pi / 2, 0.0)
        points[f"{side}_toe"] = joints[an] + foot * lengths["foot"]
    points["joints"] = joints
    return points


# ------------------------------------------------------------------ colours and textures
def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    """A BGR colour, each channel uniform in [low, high)."""
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _skin_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A BGR skin tone (hue 10-30 deg, from pale to dark)."""
    hsv = np.array([[[rng.uniform(5, 15), rng.uniform(60, 160), rng.uniform(70, 240)]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _shade(colour, side: int) -> tuple[int, int, int]:
    """The left/right cue: left parts (side +1) 30 % toward white, right parts (side -1) 20 % darker."""
    c = np.asarray(colour, dtype=np.float64)
    if side > 0:
        c = c + 0.3 * (255.0 - c)
    elif side < 0:
        c = 0.8 * c
    return tuple(int(round(v)) for v in c)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Textured background (H, W, 3) float32 in [0, 255]: gradient + low-frequency noise + stripes + blobs."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    img = c0 + ramp[..., None] * (c1 - c0)
    cells = int(rng.integers(3, 12))
    noise = rng.normal(0, rng.uniform(10, 45), (cells, cells, 3)).astype(np.float32)
    img += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 40)
        phase = (xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period)
        img += (np.sin(phase)[..., None] * rng.uniform(-30, 30, 3)).astype(np.float32)
    for _ in range(int(rng.integers(0, 6))):
        blob = np.zeros((height, width), np.float32)
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(8, width // 2)), int(rng.integers(8, height // 2)))
        cv2.ellipse(blob, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), rng.uniform(2, 12))
        img += blob[..., None] * rng.uniform(-80, 80, 3).astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    return grey + rng.uniform(0.3, 1.0) * (img - grey)  # from washed-out to vivid


def _fx(p) -> tuple[int, int]:
    """Point (x, y) px -> OpenCV fixed-point integers with ``_SHIFT`` fractional bits."""
    return int(round(p[0] * _SCALE)), int(round(p[1] * _SCALE))


def _draw_distractors(rng: np.random.Generator, img: np.ndarray, limb_colours: list) -> None:
    """Random shapes and limb-like stick fragments, drawn in place on ``img`` (H, W, 3) uint8."""
    height, width = img.shape[:2]
    size = min(width, height)
    for _ in range(int(rng.integers(1, 7))):
        colour = limb_colours[int(rng.integers(len(limb_colours)))] if rng.random() < 0.5 else _random_colour(rng)
        kind = rng.random()
        start = rng.uniform((0, 0), (width, height))
        if kind < 0.4:  # stick fragment: a chain of 1-3 thick segments, like a limb
            thickness = int(rng.integers(2, max(3, size // 12)))
            for _ in range(int(rng.integers(1, 4))):
                end = start + rng.uniform(0.05, 0.25) * size * _unit(rng.normal(size=2))
                cv2.line(img, _fx(start), _fx(end), colour, thickness, cv2.LINE_AA, _SHIFT)
                start = end
        elif kind < 0.6:
            radius = rng.uniform(0.02, 0.12) * size
            cv2.circle(img, _fx(start), int(radius * _SCALE), colour, -1, cv2.LINE_AA, _SHIFT)
        elif kind < 0.8:
            half = rng.uniform(0.02, 0.15, 2) * size
            box = cv2.boxPoints(((float(start[0]), float(start[1])), (2 * half[0], 2 * half[1]), rng.uniform(0, 180)))
            cv2.fillConvexPoly(img, np.round(box * _SCALE).astype(np.int32), colour, cv2.LINE_AA, _SHIFT)
        else:
            pts = start + rng.uniform(-0.12, 0.12, (3, 2)) * size
            cv2.fillConvexPoly(img, np.round(pts * _SCALE).astype(np.int32), colour, cv2.LINE_AA, _SHIFT)


# ------------------------------------------------------------------ figures
@dataclass
class _Figure:
    """One figure ready to draw: 2D geometry in image px (x, y) and its look."""

    points: dict  # from _skeleton_3d, placed: positions (x, y image px; z depth px), axes, head_radius px
    height: float  # standing height h, px
    thickness: float  # per-figure width factor
    colours: dict  # skin, hair, shirt, pants, lower_arm, lower_leg, shoes -> BGR


def _new_figure(rng: np.random.Generator, height_px: float) -> _Figure:
    """Sample a pose, body proportions and colours for a figure of standing height ``height_px`` px."""
    lengths = {name: frac * height_px * rng.uniform(0.92, 1.08) for name, frac in _PROPORTIONS.items()}
    points = _skeleton_3d(_sample_pose(rng), lengths)
    points["head_radius"] = lengths["head_radius"]
    skin = _skin_colour(rng)
    shirt, pants = _random_colour(rng), _random_colour(rng)
    colours = {
        "skin": skin,
        "hair": _random_colour(rng, 0, 90) if rng.random() < 0.8 else _random_colour(rng, 90, 230),
        "shirt": shirt,
        "pants": pants,
        "lower_arm": shirt if rng.random() < 0.5 else skin,
        "lower_leg": pants if rng.random() < 0.6 else skin,
        "shoes": _random_colour(rng, 0, 120) if rng.random() < 0.7 else skin,
    }
    return _Figure(points, height_px, rng.uniform(0.8, 1.45), colours)


def _translate(points: dict, offset: np.ndarray) -> dict:
    """Copy of ``points`` with every 3-D position moved by ``offset`` (3,) px (axes and directions untouched)."""
    moved = dict(points)
    for key in ("joints", "neck", "head", "l_hand", "r_hand", "l_toe", "r_toe"):
        moved[key] = points[key] + offset
    return moved


def _joint_box(joints: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) px of the joints (K, 3)."""
    return np.concatenate([joints[:, :2].min(0), joints[:, :2].max(0)])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes (x0, y0, x1, y1) over the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / max(smaller, 1e-6))


def _inside(joints: np.ndarray, width: int, height: int) -> np.ndarray:
    """(K,) bool: the joint's (x, y) lies in the pixel-centre range [0, W-1] x [0, H-1]."""
    x, y = joints[:, 0], joints[:, 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def _place_figures(rng: np.random.Generator, width: int, height: int) -> list[_Figure]:
    """1-3 figures placed in the image: each keeps >= ``_MIN_LABELLED`` joints inside and overlaps the earlier
    ones moderately. A figure that does not fit is resampled smaller every 10 tries; after 20 tries it is dropped,
    except the first, which always gets placed."""
    count = int(rng.choice(np.arange(1, _MAX_PERSONS + 1), p=_PERSON_COUNT_PROBS))
    placed: list[_Figure] = []
    boxes: list[np.ndarray] = []
    lo, hi = _HEIGHT_RANGE
    for n in range(count):
        figure = _new_figure(rng, height * math.exp(rng.uniform(math.log(lo), math.log(hi))))
        for attempt in range(200 if n == 0 else 20):
            if attempt and attempt % 10 == 0:  # hard to fit: a new, smaller figure
                figure = _new_figure(rng, figure.height * 0.8)
            box = _joint_box(figure.points["joints"])
            centre = rng.uniform((0.1 * width, 0.1 * height), (0.9 * width, 0.9 * height))
            offset = np.array([*(centre - (box[:2] + box[2:]) / 2), 0.0])
            candidate = _translate(figure.points, offset)
            if _inside(candidate["joints"], width, height).sum() < _MIN_LABELLED:
                continue
            new_box = _joint_box(candidate["joints"])
            if any(_overlap(new_box, b) > _MAX_OVERLAP for b in boxes):
                continue
            placed.append(_Figure(candidate, figure.height, figure.thickness, figure.colours))
            boxes.append(new_box)
            break
    if not placed:
        raise RuntimeError("Could not place any figure in 200 tries; this is a bug in the synthetic generator.")
    return placed


def _figure_parts(figure: _Figure) -> list[tuple[float, str, dict]]:
    """Drawing primitives of a figure, each (depth z px, part name, spec); farthest first after sorting.

    spec: {"kind": "line", "a", "b": (2,), "width": px, "colour"} | {"kind": "poly", "pts": (N, 2), "colour"} |
    {"kind": "head"}.
    """
    p, h, t, col = figure.points, figure.height, figure.thickness, figure.colours
    j = p["joints"]
    width = {name: max(2.0, frac * h * t) for name, frac in _WIDTHS.items()}
    parts = []

    def line(name, a, b, wname, colour, side):
        spec = {"kind": "line", "a": a[:2], "b": b[:2], "width": width[wname], "colour": _shade(colour, side)}
        parts.append(((a[2] + b[2]) / 2 - 0.02 * h, name, spec))

    for side, sign, (sh, el, wr, hp, kn, an) in (("l", 1, (5, 7, 9, 11, 13, 15)), ("r", -1, (6, 8, 10, 12, 14, 16))):
        line(f"{side}_upper_arm", j[sh], j[el], "upper_arm", col["shirt"], sign)
        line(f"{side}_forearm", j[el], j[wr], "forearm", col["lower_arm"], sign)
        line(f"{side}_hand", j[wr], p[f"{side}_hand"], "hand", col["skin"], sign)
        line(f"{side}_thigh", j[hp], j[kn], "thigh", col["pants"], sign)
        line(f"{side}_shin", j[kn], j[an], "shin", col["lower_leg"], sign)
        line(f"{side}_foot", j[an], p[f"{side}_toe"], "foot", col["shoes"], sign)

    # Torso: convex hull of shoulders and (widened) hips pushed forward and back by the body's depth.
    chest = p["torso_forward"] * width["chest_depth"] / 2
    belly = p["pelvis_forward"] * width["hip_depth"] / 2
    hip_out = (j[11] - j[12]) / max(np.linalg.norm(j[11] - j[12]), 1e-6) * width["hip_flesh"]
    hips = (j[11] + hip_out, j[12] - hip_out)
    corners = [j[5] + chest, j[5] - chest, j[6] + chest, j[6] - chest, *(h + s * belly for h in hips for s in (1, -1))]
    hull = cv2.convexHull(np.array([c[:2] for c in corners], dtype=np.float32))[:, 0]
    torso_z = (j[5, 2] + j[6, 2] + j[11, 2] + j[12, 2]) / 4
    parts.append((torso_z, "torso", {"kind": "poly", "pts": hull, "colour": col["shirt"]}))
    parts.append((torso_z + 1.0, "neck", {"kind": "line", "a": p["neck"][:2], "b": p["head"][:2],
                                          "width": width["neck"], "colour": col["skin"]}))  # fmt: skip
    parts.append((p["head"][2] - 0.05 * h, "head", {"kind": "head"}))
    parts.sort(key=lambda part: part[0], reverse=True)
    return parts


def _draw_head(img, labels, mask, figure: _Figure, label: int) -> None:
    """Head disc with hair, and the face points that turn toward the camera (eyes, nose dark; ears skin)."""
    p, col = figure.points, figure.colours
    r = p["head_radius"]
    centre = p["head"]
    hair_centre = centre + p["head_axes"] @ np.array([0.0, 0.3, -0.35]) * r
    hair = (hair_centre, 0.85 * r, col["hair"])
    skin = (centre, r, col["skin"])
    discs = [hair, skin] if hair_centre[2] > centre[2] else [skin, hair]  # hair behind the head is drawn first
    for c, radius, colour in discs:
        cv2.circle(img, _fx(c), int(radius * _SCALE), colour, -1, cv2.LINE_AA, _SHIFT)
    for target in (labels, mask):
        value = label if target is labels else 1
        cv2.circle(target, _fx(centre), int(r * _SCALE), value, -1, cv2.LINE_8, _SHIFT)
        cv2.circle(target, _fx(hair_centre), int(0.85 * r * _SCALE), value, -1, cv2.LINE_8, _SHIFT)
    dark, ruddy = tuple(int(0.35 * c) for c in col["skin"]), _shade(col["skin"], -1)
    features = ((1, 0.13, dark), (2, 0.13, dark), (0, 0.12, ruddy), (3, 0.2, ruddy), (4, 0.2, ruddy))
    for k, feature_radius, colour in features:  # eyes dark, nose and ears a darker skin tone
        if not _face_hidden(p, k):
            radius = max(0.6, feature_radius * r)
            cv2.circle(img, _fx(p["joints"][k]), int(radius * _SCALE), colour, -1, cv2.LINE_AA, _SHIFT)


def _face_hidden(points: dict, k: int) -> bool:
    """Face point ``k`` is behind the head (self-occluded) seen from the camera."""
    return bool(points["joints"][k, 2] - points["head"][2] > _FACE_HIDDEN_DEPTH * points["head_radius"])


def _draw_figure(img: np.ndarray, labels: np.ndarray, mask: np.ndarray, figure: _Figure, index: int) -> None:
    """Draw ``figure`` far-to-near on ``img`` (H, W, 3) uint8, its part labels on ``labels`` (H, W) uint8 and its
    silhouette (1) on ``mask`` (H, W) uint8, all in place."""
    for _, name, spec in _figure_parts(figure):
        label = index * _LABELS_PER_FIGURE + _PART_INDEX[name] + 1
        if spec["kind"] == "head":
            _draw_head(img, labels, mask, figure, label)
        elif spec["kind"] == "line":
            a, b, w = _fx(spec["a"]), _fx(spec["b"]), max(1, int(round(spec["width"])))
            cv2.line(img, a, b, spec["colour"], w, cv2.LINE_AA, _SHIFT)
            cv2.line(labels, a, b, label, w, cv2.LINE_8, _SHIFT)
            cv2.line(mask, a, b, 1, w, cv2.LINE_8, _SHIFT)
        else:
            pts = np.round(spec["pts"] * _SCALE).astype(np.int32)
            cv2.fillConvexPoly(img, pts, spec["colour"], cv2.LINE_AA, _SHIFT)
            cv2.fillConvexPoly(labels, pts, label, cv2.LINE_8, _SHIFT)
            cv2.fillConvexPoly(mask, pts, 1, cv2.LINE_8, _SHIFT)


def _draw_occluders(rng: np.random.Generator, img: np.ndarray, labels: np.ndarray, figures: list[_Figure]) -> None:
    """With probability 0.5, 1-2 rectangles or discs over random joints of random figures (in place)."""
    if not figures or rng.random() < 0.5:
        return
    height, width = img.shape[:2]
    for _ in range(int(rng.integers(1, 3))):
        figure = figures[int(rng.integers(len(figures)))]
        centre = figure.points["joints"][int(rng.integers(NUM_JOINTS)), :2] + rng.normal(0, 0.05 * figure.height, 2)
        size = rng.uniform(0.08, 0.3) * figure.height
        colour = _random_colour(rng)
        if rng.random() < 0.6:
            aspect = rng.uniform(0.4, 2.5)
            rect = ((float(centre[0]), float(centre[1])), (size * aspect, size / aspect), rng.uniform(0, 180))
            pts = np.round(cv2.boxPoints(rect) * _SCALE).astype(np.int32)
            cv2.fillConvexPoly(img, pts, colour, cv2.LINE_AA, _SHIFT)
            cv2.fillConvexPoly(labels, pts, _LABEL_OCCLUDER, cv2.LINE_8, _SHIFT)
        else:
            radius = int(size / 2 * _SCALE)
            cv2.circle(img, _fx(centre), radius, colour, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(labels, _fx(centre), radius, _LABEL_OCCLUDER, -1, cv2.LINE_8, _SHIFT)


def _annotate(figure: _Figure, index: int, labels: np.ndarray, mask: np.ndarray) -> dict:
    """COCO fields of one figure: keypoints (51 floats), num_keypoints, bbox, area (see the module docstring)."""
    height, width = labels.shape
    joints = np.round(figure.points["joints"][:, :2], 2)
    inside = _inside(joints, width, height)
    keypoints = []
    for k in range(NUM_JOINTS):
        if not inside[k]:
            keypoints += [0.0, 0.0, 0]
            continue
        x, y = joints[k]
        owner = int(labels[int(round(y)), int(round(x))])
        own = {index * _LABELS_PER_FIGURE + p + 1 for p in _JOINT_LABELS[k]}
        hidden = owner not in own or (k < 5 and _face_hidden(figure.points, k))
        keypoints += [float(x), float(y), 1 if hidden else 2]
    # Labelled joints always lie on their figure's silhouette; add their pixels anyway so the box holds them.
    pix = np.round(joints[inside]).astype(int)
    mask[pix[:, 1], pix[:, 0]] = 1
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    first = index * _LABELS_PER_FIGURE + 1
    area = int(np.count_nonzero((labels >= first) & (labels < first + _LABELS_PER_FIGURE)))
    return {
        "keypoints": keypoints,
        "num_keypoints": int(inside.sum()),
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "area": float(area),
    }


def _render_image(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """One synthetic image, its people and its drawing's label map.

    Returns image (H, W, 3) uint8 BGR (before JPEG); per figure (1-3, drawn back to front), a dict with
    COCO's ``keypoints`` [x, y, v] * 17 (image px, pixel indices), ``num_keypoints``, ``bbox`` [x, y, w, h]
    (continuous px) and ``area`` (visible px); and labels (H, W) uint8: 0 background, ``f * 16 + p + 1`` for
    part p of ``_PARTS`` of figure f, 255 occluders (what the drawing put on each pixel).
    """
    figures = _place_figures(rng, width, height)
    img = np.clip(_background(rng, width, height), 0, 255).astype(np.uint8)
    limb_colours = [c for f in figures for c in (f.colours["skin"], f.colours["shirt"], f.colours["pants"])]
    _draw_distractors(rng, img, limb_colours)
    labels = np.zeros((height, width), np.uint8)
    masks = [np.zeros((height, width), np.uint8) for _ in figures]
    for index, figure in enumerate(figures):
        _draw_figure(img, labels, masks[index], figure, index)
    _draw_occluders(rng, img, labels, figures)
    people = [_annotate(figure, index, labels, masks[index]) for index, figure in enumerate(figures)]
    if rng.random() < 0.7:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.1))
    noise = rng.normal(0.0, rng.uniform(1.0, 6.0), img.shape).astype(np.float32)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return img, people, labels


# ------------------------------------------------------------------ dataset files
def _categories() -> list[dict]:
    return [{
        "supercategory": "person", "id": 1, "name": "person",
        "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(pair) for pair in SKELETON],
    }]  # fmt: skip


def generate(
    root: Path, split: str, num_images: int, seed: int, image_size: tuple[int, int] = (256, 256)
) -> tuple[Path, Path]:
    """Write ``num_images`` synthetic images and their COCO keypoints json under ``root``.

    Layout (as COCO): ``root/annotations/person_keypoints_<split>.json`` and ``root/images/<split>/<id>.jpg``
    (ids from 1, 12 digits). Deterministic: the same (split, seed, num_images, image_size) gives byte-identical
    files; image i depends only on (seed, split, i).

    image_size: (W, H) image px. Returns (ann_file, image_dir).
    """
    width, height = (int(v) for v in image_size)
    if width < 64 or height < 64:
        raise ValueError(f"image_size must be (W, H) with both >= 64 px, got {image_size}; use e.g. (256, 256).")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}.")
    if not 0 <= seed < 2**32 or num_images > 2**32:
        raise ValueError(f"seed must be in [0, 2^32) and num_images <= 2^32 (so that splits never share an image's "
                         f"random stream), got seed {seed}, num_images {num_images}.")  # fmt: skip
    root = Path(root)
    image_dir = root / "images" / split
    ann_file = root / "annotations" / f"person_keypoints_{split}.json"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_file.parent.mkdir(parents=True, exist_ok=True)

    split_key = split_stream(split)  # train, val and test draw from disjoint streams, whatever the seeds
    images, annotations = [], []
    for i in tqdm(range(num_images), desc=f"synthetic {split}", unit="img", mininterval=1.0):
        image_id = i + 1
        img, people, _ = _render_image(np.random.default_rng([seed, split_key, i]), width, height)
        file_name = f"{image_id:012d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode image {file_name} as JPEG.")
        (image_dir / file_name).write_bytes(jpeg.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for person in people:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                **person})  # fmt: skip
    dataset = {
        "info": {"description": "hdm synthetic human poses", "version": generator_version(), "split": split,
                 "seed": seed},  # fmt: skip
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": _categories(),
    }
    ann_file.write_text(json.dumps(dataset, separators=(",", ":")))
    return ann_file, image_dir


def _cache_name(preset: str, split: str, seed: int) -> str:
    """Cache folder name: preset, split, seed, the generator's code hash and a hash of the split's sizes (its image
    count and image size, so that resizing one split regenerates no other)."""
    sizes = {"num_images": PRESETS[preset].num_images(split), "image_size": list(PRESETS[preset].image_size)}
    digest = hashlib.sha1(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:8]
    return f"{preset}_{split}_seed{seed}_g{generator_version()}_{digest}"


MANIFEST = "manifest.json"


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def write_manifest(folder: Path, ann_file: Path, image_dir: Path) -> Path:
    """Record the size and SHA-1 of the split's json and images in ``folder/manifest.json``."""
    folder = Path(folder)
    files = [Path(ann_file)] + sorted(Path(image_dir).glob("*.jpg"))
    entries = {p.relative_to(folder).as_posix(): [p.stat().st_size, _sha1(p)] for p in files}
    path = folder / MANIFEST
    path.write_text(json.dumps({"files": entries}, indent=0, sort_keys=True))
    return path


def cache_problem(folder: Path, ann_file: Path, image_dir: Path) -> str | None:
    """Why the cached split in ``folder`` must not be served (one line), or None when it is intact."""
    folder, ann_file, image_dir = Path(folder), Path(ann_file), Path(image_dir)
    if not folder.is_dir():
        return "not generated yet"
    if not ann_file.is_file():
        return f"{ann_file.name} is missing"
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
            entries = [(folder / rel, int(size), str(digest)) for rel, (size, digest) in files.items()]
        except (ValueError, KeyError, TypeError, AttributeError):
            return f"{MANIFEST} is unreadable"
        if folder / ann_file.relative_to(folder) not in {p for p, _, _ in entries}:
            return f"{MANIFEST} does not list {ann_file.name}"
        for path, size, digest in entries:
            if not path.is_file():
                return f"{path.relative_to(folder)} is missing"
            if path.stat().st_size != size:
                return f"{path.relative_to(folder)} has {path.stat().st_size} bytes, {size} were written"
            if _sha1(path) != digest:
                return f"{path.relative_to(folder)} is damaged (its SHA-1 differs from the one written)"
        return None
    try:  # a cache from before the manifest: structural checks only
        data = validate_coco(read_json(ann_file), ann_file)
    except AnnotationError as err:
        return str(err)
    for image in data["images"]:
        path = image_dir / image["file_name"]
        if not path.is_file():
            return f"{path.name} is missing"
        reason = truncation(path.read_bytes())
        if reason:
            return f"{path.name}: {reason}"
    return None


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold an exclusive advisory lock on ``folder`` (a directory; no lock file is left behind) where the
    platform has ``fcntl``; a no-op elsewhere."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def synthetic_split(preset: str = "default", split: str = "train", seed: int = 0) -> tuple[Path, Path]:
    """(ann_file, image_dir) of a cached synthetic split under ``data_root()/synthetic``, generated if missing
    and regenerated if damaged (``cache_problem``: the manifest's sizes and checksums, see the module docstring).

    Generation writes to a temporary sibling folder that is renamed into place at the end, so an interrupted
    run never leaves a partial cache; concurrent callers wait on a lock of ``data_root()/synthetic`` while one
    of them generates. preset: a key of ``PRESETS``; split: "train", "val" or "test" (held out: same generator,
    a disjoint random stream, ``split_stream``; ``num_test`` images).
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown synthetic preset {preset!r}; expected one of {sorted(PRESETS)}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    config = PRESETS[preset]
    folder = data_root() / "synthetic" / _cache_name(preset, split, seed)
    ann_file = folder / "annotations" / f"person_keypoints_{split}.json"
    image_dir = folder / "images" / split
    if cache_problem(folder, ann_file, image_dir) is None:
        return ann_file, image_dir
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent):
        problem = cache_problem(folder, ann_file, image_dir)  # another process may have fixed it meanwhile
        if problem is None:
            return ann_file, image_dir
        if folder.exists():
            log.warning("synthetic cache %s is damaged (%s): regenerating it from seed %d", folder, problem, seed)
        tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        trash = folder.parent / f".{folder.name}.damaged-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            count = config.num_images(split)
            tmp_ann, tmp_images = generate(tmp, split, count, seed, config.image_size)
            write_manifest(tmp, tmp_ann, tmp_images)
            if folder.exists():
                os.rename(folder, trash)
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(trash, ignore_errors=True)
    return ann_file, image_dir


# ------------------------------------------------------------------ inspection
def dataset_statistics(ann_file: Path) -> dict:
    """Summary of a COCO keypoints json.

    Returns: images, persons, persons_per_image (mean), min/max_persons_per_image, occluded_share (v=1 among
    labelled joints), small/medium/large_share (COCOeval's area ranges: < 32^2, 32^2..96^2, > 96^2 px),
    keypoints_per_person (mean num_keypoints).
    """
    dataset = json.loads(Path(ann_file).read_text())
    anns = dataset["annotations"]
    per_image = np.bincount([a["image_id"] for a in anns], minlength=max(im["id"] for im in dataset["images"]) + 1)
    counts = per_image[[im["id"] for im in dataset["images"]]]
    vis = np.array([a["keypoints"][2::3] for a in anns]).reshape(-1)
    area = np.array([a["area"] for a in anns], dtype=np.float64)
    labelled = max(int((vis > 0).sum()), 1)
    return {
        "images": len(dataset["images"]),
        "persons": len(anns),
        "persons_per_image": float(counts.mean()),
        "min_persons_per_image": int(counts.min()),
        "max_persons_per_image": int(counts.max()),
        "occluded_share": float((vis == 1).sum() / labelled),
        "small_share": float((area < 32**2).mean()),
        "medium_share": float(((area >= 32**2) & (area <= 96**2)).mean()),
        "large_share": float((area > 96**2).mean()),
        "keypoints_per_person": float(np.mean([a["num_keypoints"] for a in anns])),
    }


_PREVIEW_COLOURS = {1: (0, 165, 255), -1: (255, 128, 0), 0: (0, 200, 0)}  # BGR: left orange, right blue, centre


def _joint_side(k: int) -> int:
    name = KEYPOINT_NAMES[k]
    return 1 if name.startswith("left") else -1 if name.startswith("right") else 0


def render_preview(ann_file: Path, image_dir: Path, out_png: Path, n: int = 6) -> Path:
    """Grid (3 columns) of the first ``n`` images, 2x enlarged, with boxes, skeletons and joints drawn.

    Left joints/limbs orange, right blue, face green; filled dots v=2, rings v=1. Returns ``out_png``.
    """
    dataset = json.loads(Path(ann_file).read_text())
    by_image: dict[int, list] = {}
    for ann in dataset["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    zoom = 2
    tiles = []
    for info in dataset["images"][:n]:
        img = cv2.imread(str(Path(image_dir) / info["file_name"]), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"Cannot read {Path(image_dir) / info['file_name']}; regenerate the dataset.")
        img = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        for ann in by_image.get(info["id"], []):
            kp = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            xy = (kp[:, :2] + 0.5) * zoom - 0.5  # pixel-index coordinates under a zoom of the pixel grid
            x, y, w, h = ann["bbox"]
            cv2.rectangle(img, _fx((x * zoom - 0.5, y * zoom - 0.5)), _fx(((x + w) * zoom - 0.5, (y + h) * zoom - 0.5)),
                          (255, 255, 255), 1, cv2.LINE_AA, _SHIFT)  # fmt: skip
            for a, b in SKELETON:
                a, b = a - 1, b - 1
                if kp[a, 2] > 0 and kp[b, 2] > 0:
                    side = _joint_side(a) if _joint_side(a) == _joint_side(b) else 0
                    cv2.line(img, _fx(xy[a]), _fx(xy[b]), _PREVIEW_COLOURS[side], 2, cv2.LINE_AA, _SHIFT)
            for k in range(NUM_JOINTS):
                if kp[k, 2] > 0:
                    fill = -1 if kp[k, 2] == 2 else 1
                    cv2.circle(img, _fx(xy[k]), 3 * _SCALE, _PREVIEW_COLOURS[_joint_side(k)], fill, cv2.LINE_AA, _SHIFT)
        tiles.append(img)
    if not tiles:
        raise ValueError(f"{ann_file} holds no images to preview.")
    cols = min(3, len(tiles))
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % cols)
    rows = [np.concatenate(tiles[r : r + cols], axis=1) for r in range(0, len(tiles), cols)]
    grid = np.concatenate(rows, axis=0)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), grid):
        raise RuntimeError(f"OpenCV could not write {out_png}.")
    return out_png
