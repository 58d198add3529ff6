"""Joint definitions of COCO (17 joints) and MPII (16 joints): names, flip pairs, skeletons, OKS sigmas,
and the upper/lower body split used by half-body augmentation.

Indices are 0-based positions in the dataset's joint order (K joints). A flip pair ``(i, j)`` names the
anatomical left/right twins that trade places when an image is mirrored horizontally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# The skeleton of the COCO person category, converted from its 1-based indices.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
# Per-joint OKS constants sigma_k of the COCO keypoint metric (pycocotools ``COCOeval.kpt_oks_sigmas``).
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
COCO_UPPER_BODY = tuple(range(0, 11))  # head, shoulders, elbows, wrists
COCO_LOWER_BODY = tuple(range(11, 17))  # hips, knees, ankles

MPII_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
)  # fmt: skip
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_SKELETON = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
)  # fmt: skip
MPII_UPPER_BODY = (7, 8, 9, 10, 11, 12, 13, 14, 15)  # thorax and above, arms
MPII_LOWER_BODY = (0, 1, 2, 3, 4, 5, 6)  # legs and pelvis


@dataclass(frozen=True)
class JointSet:
    """Everything a dataset needs to know about its K joints.

    ``upper_body``/``lower_body`` partition the joints for half-body augmentation; both are empty when the
    split is unknown (then half-body augmentation cannot be used). ``sigmas`` are the OKS constants (COCO only).
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    upper_body: tuple[int, ...] = ()
    lower_body: tuple[int, ...] = ()
    sigmas: tuple[float, ...] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def flip_permutation(self) -> np.ndarray:
        """(K,) int64 index array ``perm`` with ``mirrored_joints = joints[perm]`` (left and right swapped)."""
        return flip_permutation(self.num_joints, self.flip_pairs)


def flip_permutation(num_joints: int, flip_pairs) -> np.ndarray:
    """(K,) int64 permutation swapping each flip pair ``(i, j)`` and fixing every other joint."""
    perm = np.arange(num_joints, dtype=np.int64)
    for i, j in flip_pairs:
        perm[i], perm[j] = j, i
    return perm


def flip_pairs_from_names(names) -> tuple[tuple[int, int], ...]:
    """Index pairs ``(i, j)``, ``i < j``, sorted, of names ``"left_" + s`` and ``"right_" + s``."""
    index = {name: k for k, name in enumerate(names)}
    pairs = []
    for k, name in enumerate(names):
        twin = "right_" + name[len("left_") :]
        if name.startswith("left_") and twin in index:
            pairs.append(tuple(sorted((k, index[twin]))))
    return tuple(sorted(pairs))


COCO = JointSet(
    name="coco",
    names=COCO_JOINTS,
    flip_pairs=COCO_FLIP_PAIRS,
    skeleton=COCO_SKELETON,
    upper_body=COCO_UPPER_BODY,
    lower_body=COCO_LOWER_BODY,
    sigmas=COCO_SIGMAS,
)
MPII = JointSet(
    name="mpii",
    names=MPII_JOINTS,
    flip_pairs=MPII_FLIP_PAIRS,
    skeleton=MPII_SKELETON,
    upper_body=MPII_UPPER_BODY,
    lower_body=MPII_LOWER_BODY,
)


def joint_set_from_names(names, skeleton=()) -> JointSet:
    """The JointSet for a COCO-format category's keypoint ``names``: COCO's or MPII's when the names match,
    otherwise a generic one with flip pairs found from ``left_``/``right_`` names and no body split.

    Args:
        names: K joint names. skeleton: edges as 0-based index pairs (kept for the generic set only).
    """
    names = tuple(names)
    for known in (COCO, MPII):
        if names == known.names:
            return known
    return JointSet(name="custom", names=names, flip_pairs=flip_pairs_from_names(names), skeleton=tuple(skeleton))
