"""The files a config's data come from (``data_sources``) and their fingerprint (``data_fingerprint``), part of
a run's identity (``hdm.runs.run_identity``): other annotations or images are another run.

The fingerprint is cheap: size and SHA-256 of the annotation files (json, mat), and the names and sizes of the
files in the image folders (not their contents). It covers what a run trains and validates on: both splits, the
person detections of ``val_boxes="detections"``, MPII's head boxes. Where the files are does not count. The
held-out synthetic test split (``eval_sources(cfg, "test")``) is no part of it: training never reads it, and a
cached evaluation on it records and checks its own fingerprint (``eval_fingerprint``).

``cfg`` is any object with the ``hdm.config.Config`` data fields (``dataset``, ``synthetic_preset``,
``data_seed``, ``val_boxes``); this module sits below ``hdm.config``.
"""

from __future__ import annotations

from pathlib import Path

from hdm.codehash import file_fingerprint, folder_fingerprint
from hdm.data import synthetic
from hdm.data.coco import coco_paths
from hdm.data.mpii import mpii_paths

#: Roles whose path is an image folder (fingerprinted by file names and sizes); every other role is a file.
FOLDERS = ("train_images", "val_images", "test_images", "images")
#: Roles a model's validation reads (``evaluate`` checks these against the run's).
VALIDATION = ("val_annotations", "val_images", "images", "detections", "head_boxes")
#: Splits a finished run is evaluated on (``eval_sources``): "val", validated on every epoch and part of the run's
#: identity, and "test", held out (synthetic data only), never seen by training nor by any choice made on "val".
EVAL_SPLITS = ("val", "test")


def data_sources(cfg, train: bool = True) -> dict[str, Path]:
    """The files and folders of ``cfg``'s data by role (validation only unless ``train``). Synthetic splits are
    generated on first use (``synthetic.synthetic_split``); real datasets are only named, so a path may not exist.

    Roles: synthetic and coco ``train_annotations``, ``train_images``, ``val_annotations``, ``val_images`` (coco
    with ``val_boxes="detections"``: ``detections``); mpii ``train_annotations``, ``val_annotations``,
    ``head_boxes`` (gt_valid.mat), ``images``.
    """
    if cfg.dataset == "mpii":
        paths = mpii_paths()
        sources = {"train_annotations": paths.train} if train else {}
        return {**sources, "val_annotations": paths.valid, "head_boxes": paths.gt_valid, "images": paths.image_dir}
    sources = {}
    for split in ("train", "val") if train else ("val",):
        if cfg.dataset == "synthetic":
            ann_file, image_dir = synthetic.synthetic_split(cfg.synthetic_preset, split, cfg.data_seed)
        else:
            ann_file, image_dir = coco_paths(split=f"{split}2017")[:2]
        sources[f"{split}_annotations"], sources[f"{split}_images"] = ann_file, image_dir
    if cfg.dataset == "coco" and cfg.val_boxes == "detections":
        sources["detections"] = coco_paths(split="val2017").detections
    return sources


def eval_sources(cfg, split: str = "val") -> dict[str, Path]:
    """The files a finished run is evaluated on, by role: "val" gives ``data_sources(cfg, train=False)`` (coco:
    val2017); "test" gives the held-out synthetic split's ``test_annotations`` and ``test_images`` (generated on
    first use: same generator, a disjoint random stream, ``synthetic.split_stream``).

    Raises ``ValueError`` (one line) for another split, or for "test" on coco or mpii, which have none here."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; expected one of {EVAL_SPLITS}")
    if split == "val":
        return data_sources(cfg, train=False)
    if cfg.dataset != "synthetic":
        raise ValueError(f"split 'test' is unavailable for {cfg.dataset}: only synthetic data have a held-out test "
                         "split here; evaluate on split 'val'")  # fmt: skip
    ann_file, image_dir = synthetic.synthetic_split(cfg.synthetic_preset, "test", cfg.data_seed)
    return {"test_annotations": ann_file, "test_images": image_dir}


def fingerprint(sources: dict[str, Path]) -> dict[str, dict]:
    """Per role of ``sources``: ``{"path": str, "size": bytes, "sha256": hex}`` for a file, ``{"path": str,
    "files": count, "bytes": total, "sha256": hex of the (name, size) list}`` for an image folder (``FOLDERS``),
    ``{"path": str, "missing": True}`` for a path that does not exist."""
    out = {}
    for role, path in sources.items():
        found = folder_fingerprint(path) if role in FOLDERS else file_fingerprint(path)
        out[role] = {"path": str(path), **(found if found is not None else {"missing": True})}
    return out


def data_fingerprint(cfg, train: bool = True) -> dict[str, dict]:
    """``fingerprint`` of ``data_sources(cfg, train)``: what a run's identity covers."""
    return fingerprint(data_sources(cfg, train))


def eval_fingerprint(cfg, split: str = "val") -> dict[str, dict]:
    """``fingerprint`` of ``eval_sources(cfg, split)``: recorded with each cached evaluation."""
    return fingerprint(eval_sources(cfg, split))


def without_paths(fingerprint: dict[str, dict]) -> dict[str, dict]:
    """``fingerprint`` without the paths: what a run's identity holds (the same files elsewhere are the same data)."""
    return {role: {k: v for k, v in entry.items() if k != "path"} for role, entry in fingerprint.items()}
