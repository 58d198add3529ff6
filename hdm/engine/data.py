"""The datasets of a run, built from its config: ``build_data(cfg)``, from the files ``hdm.data.sources`` names
(and fingerprints for the run's identity); ``build_eval_data(cfg, split)`` for evaluation on "val" or on the
held-out synthetic "test" split.

A dataset knows nothing about methods: it yields image crops, joints in heatmap px, their visibility and the
crop geometry (``hdm.data``). Missing files raise ``hdm.data.DatasetNotFoundError`` (nothing is downloaded).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from torch.utils.data import Dataset, Subset

from hdm.config import Config
from hdm.data import CocoTopDown, MpiiTopDown
from hdm.data.sources import data_sources, eval_sources

log = logging.getLogger(__name__)


class Data(NamedTuple):
    """The datasets of a run. ``train`` is None when only evaluating; ``detections`` only for COCO with detector
    boxes. ``val_indices`` / ``det_indices``: the samples used; ``eval_image_ids``: images scored by COCOeval
    (None: every image of the annotations, the official protocol)."""

    train: Dataset | None
    val: CocoTopDown | MpiiTopDown
    val_indices: np.ndarray
    detections: CocoTopDown | None
    det_indices: np.ndarray | None
    eval_image_ids: list[int] | None

    @property
    def num_joints(self) -> int:
        return self.val.num_joints

    @property
    def coco_format(self) -> bool:
        return isinstance(self.val, CocoTopDown)


def augmentation(cfg: Config) -> dict:
    """The training augmentation keyword arguments of ``TopDownDataset`` from the config."""
    return dict(
        flip=cfg.flip, scale_factor=cfg.scale_factor, rotation_factor=cfg.rotation_factor,
        rotation_prob=cfg.rotation_prob, half_body_prob=cfg.half_body_prob,
        half_body_min_joints=cfg.half_body_min_joints, seed=cfg.seed,
    )  # fmt: skip


def whole_image_prefix(image_ids, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` samples, minus those whose image has samples past the cut (so every kept
    image keeps all its persons); at least the first image's samples. ``image_ids``: (N,). Returns sorted int64."""
    image_ids = np.asarray(image_ids)
    if limit is None or limit >= len(image_ids):
        return np.arange(len(image_ids))
    cut = set(image_ids[limit:].tolist())
    keep = [i for i in range(limit) if image_ids[i] not in cut]
    return np.asarray(keep or np.flatnonzero(image_ids == image_ids[0]), dtype=np.int64)


def base_dataset(dataset: Dataset):
    """The dataset under a ``Subset`` (or the dataset itself)."""
    return dataset.dataset if isinstance(dataset, Subset) else dataset


def build_data(cfg: Config, train: bool = True) -> Data:
    """The run's datasets (the train split only when ``train``).

    Raises ``hdm.data.DatasetNotFoundError`` for missing files (nothing is downloaded) and
    ``hdm.data.EmptyDatasetError`` when a split holds no person.
    """
    sizes = dict(input_hw=tuple(cfg.input_hw), heatmap_hw=tuple(cfg.heatmap_hw))
    keypoints = dict(joint_set=cfg.joint_set, sigmas=None if cfg.sigmas is None else list(cfg.sigmas))
    sources = data_sources(cfg, train)  # the files the run's identity fingerprints (hdm.data.sources)
    train_set = detections = None
    if cfg.dataset == "mpii":
        gt_valid = sources["head_boxes"] if sources["head_boxes"].is_file() else None
        val = MpiiTopDown(sources["val_annotations"], sources["images"], train=False, gt_valid=gt_valid, **sizes)
        if gt_valid is None:
            log.warning("%s is missing: MPII validation reports PCK, not PCKh (no head sizes)", sources["head_boxes"])
        if train:
            train_set = MpiiTopDown(sources["train_annotations"], sources["images"], train=True, **sizes,
                                    **augmentation(cfg))  # fmt: skip
    else:
        val = CocoTopDown(sources["val_annotations"], sources["val_images"], train=False, **sizes, **keypoints)
        if "detections" in sources:
            detections = CocoTopDown(sources["val_annotations"], sources["val_images"], train=False,
                                     boxes=sources["detections"], **sizes, **keypoints)  # fmt: skip
        if train:
            train_set = CocoTopDown(sources["train_annotations"], sources["train_images"], train=True, **sizes,
                                    **augmentation(cfg), **keypoints)  # fmt: skip
    if cfg.dataset == "coco":
        val.joint_set.require_sigmas()  # a set without OKS sigmas fails now, not after the first epoch
    val_ids = np.array([r.image_id for r in val.records])
    val_indices = whole_image_prefix(val_ids, cfg.max_val_samples)
    subset = cfg.max_val_samples is not None and len(val_indices) < len(val)
    eval_image_ids = sorted(set(val_ids[val_indices].tolist())) if subset else None
    det_indices = None
    if detections is not None:
        det_ids = np.array([r.image_id for r in detections.records])
        det_indices = np.arange(len(detections)) if not subset else np.flatnonzero(np.isin(det_ids, eval_image_ids))
    if train_set is not None and cfg.max_train_samples is not None and cfg.max_train_samples < len(train_set):
        train_set = Subset(train_set, range(cfg.max_train_samples))
    return Data(train_set, val, val_indices, detections, det_indices, eval_image_ids)


def build_eval_data(cfg: Config, split: str = "val") -> Data:
    """The datasets a finished run is evaluated on: "val" is ``build_data(cfg, train=False)`` (``max_val_samples``
    and ``val_boxes`` apply); "test" is the held-out synthetic split (``hdm.data.sources.eval_sources``) at the
    run's crop and heatmap sizes, every person with its ground-truth box, every image scored (it sits in
    ``Data.val``, where ``validate`` reads it).

    Raises ``ValueError`` for another split or for "test" on coco or mpii (one line)."""
    if split == "val":
        return build_data(cfg, train=False)
    sources = eval_sources(cfg, split)
    test = CocoTopDown(sources["test_annotations"], sources["test_images"], train=False, input_hw=tuple(cfg.input_hw),
                       heatmap_hw=tuple(cfg.heatmap_hw), joint_set=cfg.joint_set,
                       sigmas=None if cfg.sigmas is None else list(cfg.sigmas))  # fmt: skip
    return Data(None, test, np.arange(len(test), dtype=np.int64), None, None, None)
