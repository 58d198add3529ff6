"""Datasets: COCO-format top-down keypoints (``coco``), MPII, the synthetic COCO-format generator (``synthetic``);
joint sets (``keypoints``) and the checks run on annotation files and images (``validation``).

Every dataset yields the same sample dict (documented in ``hdm.data.transforms``): the image crop, the joints
in heatmap px, their visibility (the target weight of every method) and the crop geometry back to the image.
"""

from hdm.data.coco import CocoTopDown, coco_paths
from hdm.data.errors import (
    AnnotationError,
    CorruptImageError,
    DatasetNotFoundError,
    EmptyDatasetError,
    JointSetError,
)
from hdm.data.keypoints import JOINT_SETS, JointSet, get_joint_set
from hdm.data.mpii import MpiiTopDown, mpii_paths

__all__ = [
    "JOINT_SETS",
    "AnnotationError",
    "CocoTopDown",
    "CorruptImageError",
    "DatasetNotFoundError",
    "EmptyDatasetError",
    "JointSet",
    "JointSetError",
    "MpiiTopDown",
    "coco_paths",
    "get_joint_set",
    "mpii_paths",
]
