"""Datasets: COCO-format top-down keypoints (``coco``), MPII, the synthetic COCO-format generator (``synthetic``);
the checks run on annotation files and images (``validation``).

Every dataset yields the same sample dict (documented in ``hdm.data.transforms``): the image crop, the joints
in heatmap px, their visibility (the target weight of every method) and the crop geometry back to the image.
"""

from hdm.data.coco import CocoTopDown, coco_paths
from hdm.data.errors import AnnotationError, CorruptImageError, DatasetNotFoundError, EmptyDatasetError
from hdm.data.mpii import MpiiTopDown, mpii_paths

__all__ = [
    "AnnotationError",
    "CocoTopDown",
    "CorruptImageError",
    "DatasetNotFoundError",
    "EmptyDatasetError",
    "MpiiTopDown",
    "coco_paths",
    "mpii_paths",
]
