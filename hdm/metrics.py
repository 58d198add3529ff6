"""Pose metrics: COCO keypoint AP through pycocotools (with HRNet's rescoring and OKS-NMS), MPII PCKh,
box-normalised PCK and per-joint errors.

Legend: N person instances, K joints. Coordinates are (x, y) in **image px** of one common frame for
predictions and ground truth (decode in heatmap px, then map with ``hdm.geometry``).
Arrays may be numpy arrays or torch tensors (any device); results are numpy / python numbers.
Every score here is a fraction in [0, 1]; multiply by 100 for tables in %.

HRNet's COCO protocol (Sun et al. 2019, ``lib/dataset/coco.py``), reproduced by ``make_coco_results``:
rescore each pose by box score x mean of its joint max-values above 0.2, then greedy OKS-NMS at 0.9 per
image, then ``COCOeval(gt, dt, "keypoints")``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from os import PathLike
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "COCO_METRIC_NAMES",
    "COCO_SIGMAS",
    "MPII_JOINTS",
    "PCKH_GROUPS",
    "PCKResult",
    "coco_keypoint_eval",
    "localisation_error",
    "make_coco_results",
    "mpii_head_size",
    "oks",
    "oks_nms",
    "pck_bbox",
    "pck_joints",
    "pckh",
    "rescore",
    "resolve_sigmas",
]

#: Per-keypoint OKS constants of COCO (pycocotools ``kpt_oks_sigmas``), in COCO's keypoint order.
COCO_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0

#: Keys of ``coco_keypoint_eval``'s result, in the order of ``COCOeval.stats`` for keypoints.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")

#: MPII joint order (the order of HRNet's ``mpii`` annotations and of ``gt_valid.mat``).
MPII_JOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)  # fmt: skip

#: PCKh report groups of the official MPII evaluation. "Head" is the head top alone.
PCKH_GROUPS = {
    "Head": ("head_top",),
    "Shoulder": ("l_shoulder", "r_shoulder"),
    "Elbow": ("l_elbow", "r_elbow"),
    "Wrist": ("l_wrist", "r_wrist"),
    "Hip": ("l_hip", "r_hip"),
    "Knee": ("l_knee", "r_knee"),
    "Ankle": ("l_ankle", "r_ankle"),
}

#: Joints left out of the PCKh mean (the official protocol).
PCKH_MEAN_EXCLUDES = ("pelvis", "thorax")


def _np(x, dtype=np.float64) -> np.ndarray:
    """numpy copy of an array-like or torch tensor (detached, moved to CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# COCO keypoints


def _quiet(fn, *args, **kwargs):
    """Call ``fn`` with its prints (pycocotools talks a lot) captured and dropped."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def resolve_sigmas(sigmas, num_joints: int, what: str = "the poses") -> np.ndarray:
    """(K,) float64 OKS sigmas checked against ``num_joints``.

    Args:
        sigmas: K positive numbers; ``"uniform"`` for ``hdm.data.keypoints.UNIFORM_SIGMA`` each (only on
            request: no keypoint set gets it silently); None when unknown (raises, telling how to give them).
        num_joints: K of the poses / ground truth. what: what holds K joints, for the message.
    Raises:
        hdm.data.JointSetError (a ValueError): no sigmas, or not K of them, or not positive.
    """
    from hdm.data.errors import JointSetError
    from hdm.data.keypoints import UNIFORM_SIGMA

    fix = "pass the dataset's (sigmas=dataset.sigmas, from its joint set), K numbers, or sigmas='uniform'"
    if sigmas is None:
        raise JointSetError(f"no OKS sigmas for {what} ({num_joints} joints), so OKS cannot be computed: {fix}")
    if isinstance(sigmas, str):
        if sigmas != "uniform":
            raise JointSetError(f"sigmas must be K numbers or 'uniform', got {sigmas!r}")
        return np.full(num_joints, UNIFORM_SIGMA)
    values = _np(sigmas).reshape(-1)
    if values.size != num_joints:
        raise JointSetError(
            f"{values.size} OKS sigmas for {what} with {num_joints} joints (COCO's 17 sigmas fit only COCO's 17 "
            f"joints): {fix}"
        )
    if not np.all(np.isfinite(values) & (values > 0)):
        raise JointSetError(f"OKS sigmas must be positive numbers, got {values.tolist()}")
    return values


def _ground_truth_joints(gt, category_id) -> tuple[int, tuple | None]:
    """(K, names or None) of the keypoint category ``category_id`` of ``gt``."""
    cat = gt.cats[category_id]
    names = cat.get("keypoints") or None
    if names:
        return len(names), tuple(names)
    for ann in gt.dataset["annotations"]:
        if ann["category_id"] == category_id and "keypoints" in ann:
            return len(ann["keypoints"]) // 3, None
    raise ValueError(f"the ground truth's category {category_id} ({cat.get('name')!r}) holds no keypoints to evaluate")


def coco_keypoint_eval(
    gt, results: list[dict], image_ids: Sequence[int] | None = None, sigmas=None
) -> dict[str, float]:
    """COCO keypoint AP / AR with ``pycocotools.cocoeval.COCOeval(gt, dt, "keypoints")``, silently.

    Args:
        gt: a ``pycocotools.coco.COCO`` holding the ground truth (``dataset.coco``), or the path of its
            annotation json (read through ``hdm.data.coco.load_coco``). Either is checked once
            (``hdm.data.validation.validate_coco``): missing ``area``, ``num_keypoints``, ``iscrowd`` are filled in.
        results: COCO results, one dict per pose, all of one keypoint category of ``gt``:
            ``{"image_id": int, "category_id": int, "keypoints": [x, y, s] * K (image px), "score": float}``.
            Not modified.
        image_ids: evaluate on these images only (default: every image of ``gt``, the official protocol;
            images without a result then count as misses).
        sigmas: the K OKS constants (``dataset.sigmas``), or "uniform" (``resolve_sigmas``); None takes them
            from the joint set the ground truth's keypoint names identify (COCO's for COCO; see
            ``hdm.data.keypoints.JOINT_SETS``), and raises when that set has none.
    Returns:
        ``{"AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"}`` as fractions in [0, 1];
        NaN where pycocotools reports -1 (no ground truth in that area range).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from hdm.data.coco import load_coco
    from hdm.data.keypoints import resolve_joint_set
    from hdm.data.validation import validate_coco

    if isinstance(gt, (str, PathLike)):
        gt = load_coco(gt)
    if not isinstance(gt, COCO):
        raise TypeError(f"gt must be a pycocotools COCO object or an annotation json path, got {type(gt).__name__}")
    if not getattr(gt, "hdm_validated", False):
        validate_coco(gt.dataset, "the ground truth (a pycocotools COCO object)")
        gt.hdm_validated = True
    if len(results) == 0:
        raise ValueError("results is empty: there is nothing to evaluate; check the decoding / NMS step")
    missing = [k for k in ("image_id", "category_id", "keypoints", "score") if k not in results[0]]
    if missing:
        raise ValueError(f"results must be COCO result dicts; the first one lacks {missing}: {sorted(results[0])}")
    unknown = {r["image_id"] for r in results} - set(gt.getImgIds())
    if unknown:
        raise ValueError(
            f"results hold image_ids absent from the ground truth: {sorted(unknown)[:10]}; "
            "evaluate against the annotation file the images came from"
        )
    categories = sorted({r["category_id"] for r in results})
    if len(categories) != 1 or categories[0] not in gt.cats:
        gt_cats = {c: gt.cats[c].get("name") for c in gt.cats}
        raise ValueError(
            f"results use category_id {categories}; they must all be the ground truth's keypoint category "
            f"(categories: {gt_cats}): pass category_id=dataset.category_id to make_coco_results"
        )
    category = categories[0]
    k, names = _ground_truth_joints(gt, category)
    lengths = {len(r["keypoints"]) for r in results}
    if lengths != {3 * k}:
        raise ValueError(
            f"results hold keypoint lists of lengths {sorted(lengths)}, the ground truth has {k} joints "
            f"({3 * k} numbers [x, y, s] * K expected)"
        )
    if sigmas is None:
        sigmas = resolve_joint_set(names, k, source="the ground truth").require_sigmas()
    sigmas = resolve_sigmas(sigmas, k, f"the ground truth's keypoints{' (' + names[0] + ', ...)' if names else ''}")

    dt = _quiet(gt.loadRes, copy.deepcopy(list(results)))  # loadRes writes area/bbox/id into its input
    evaluator = COCOeval(gt, dt, "keypoints")
    evaluator.params.kpt_oks_sigmas = sigmas
    evaluator.params.catIds = [category]
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    _quiet(evaluator.evaluate)
    _quiet(evaluator.accumulate)
    _quiet(evaluator.summarize)
    return {name: (float("nan") if v < 0 else float(v)) for name, v in zip(COCO_METRIC_NAMES, evaluator.stats)}


def rescore(box_score, maxvals, threshold: float = 0.2) -> np.ndarray:
    """HRNet's pose score: ``box_score · mean{ maxvals[k] : maxvals[k] > threshold }``.

    A pose with no joint above the threshold scores 0 (HRNet's ``kpt_score`` stays 0 when ``valid_num`` is 0).

    Args:
        box_score: (N,) detector (or GT box) scores. maxvals: (N, K) heatmap peaks. threshold: strict.
    Returns:
        (N,) float64.
    """
    box_score, maxvals = _np(box_score), _np(maxvals)
    if maxvals.ndim != 2 or box_score.shape != maxvals.shape[:1]:
        raise ValueError(f"expected box_score (N,) and maxvals (N, K), got {box_score.shape} and {maxvals.shape}")
    above = maxvals > threshold
    count = above.sum(axis=1)
    joint_score = np.where(count > 0, (maxvals * above).sum(axis=1) / np.maximum(count, 1), 0.0)
    return box_score * joint_score


def oks(pred, gt, area, visible=None, sigmas=COCO_SIGMAS) -> np.ndarray:
    """Object keypoint similarity (COCO), ``mean_{k visible} exp(-d_k² / (2 · area · (2σ_k)²))``.

    where ``d_k`` is the distance between predicted and true joint k (image px), ``area`` the object's
    area (px²; COCO's segment area for ground truth) and ``σ_k`` the keypoint's constant. Matches
    ``COCOeval.computeOks`` for a ground truth with at least one labelled keypoint (``visible = v > 0``).

    Args:
        pred, gt: (..., K, 2) image px, broadcastable. area: (...) px², broadcastable.
        visible: (..., K) bool, the joints that count (default: all). sigmas: (K,).
    Returns:
        (...) float64 in [0, 1]; 0 where no joint counts.
    """
    pred, gt, sigmas = _np(pred), _np(gt), _np(sigmas)
    k = sigmas.shape[-1]
    if pred.shape[-2:] != (k, 2) or gt.shape[-2:] != (k, 2):
        raise ValueError(f"expected pred, gt (..., K, 2) with K = len(sigmas) = {k}, got {pred.shape}, {gt.shape}")
    d2 = ((pred - gt) ** 2).sum(axis=-1)
    e = d2 / (2 * sigmas) ** 2 / (_np(area)[..., None] + np.spacing(1)) / 2
    weight = np.ones_like(e) if visible is None else np.broadcast_to(_np(visible, bool), e.shape).astype(np.float64)
    count = weight.sum(axis=-1)
    return np.where(count > 0, (np.exp(-e) * weight).sum(axis=-1) / np.maximum(count, 1), 0.0)


def _keypoints_xy(keypoints, num_joints: int | None = None) -> np.ndarray:
    k = _np(keypoints)
    if k.ndim == 1:
        if k.size % 3:
            raise ValueError(f"flat keypoints must be [x, y, s] * K, got {k.size} numbers")
        k = k.reshape(-1, 3)
    if k.ndim != 2 or k.shape[1] not in (2, 3) or (num_joints is not None and k.shape[0] != num_joints):
        raise ValueError(f"keypoints must be (K, 2), (K, 3) or [x, y, s] * K with K = {num_joints}, got shape {k.shape}")
    return k[:, :2]


def oks_nms(results_per_image: Sequence[dict], threshold: float = 0.9, sigmas=COCO_SIGMAS) -> list[int]:
    """Greedy OKS non-maximum suppression over the poses of one image (HRNet's ``oks_nms``).

    Visit poses by decreasing score; keep a pose, drop every remaining one whose OKS with it exceeds
    ``threshold``. OKS between poses i and j counts every joint and uses their mean area ``(a_i + a_j) / 2``.

    Args:
        results_per_image: dicts with ``"keypoints"`` ((K, 2), (K, 3) or [x, y, s] * K, image px),
            ``"score"`` and ``"area"`` (px², e.g. the person box area).
        threshold: OKS above which the lower-scored pose is dropped.
        sigmas: (K,) OKS constants (default COCO's; pass ``dataset.sigmas`` for another keypoint set), or
            "uniform" (see ``resolve_sigmas``).
    Returns:
        indices into ``results_per_image`` of the kept poses, by decreasing score (ties: input order).
    """
    if len(results_per_image) == 0:
        return []
    num_joints = len(_keypoints_xy(results_per_image[0]["keypoints"]))
    sigmas = resolve_sigmas(sigmas, num_joints, "the poses to suppress")
    kpts = np.stack([_keypoints_xy(r["keypoints"], num_joints) for r in results_per_image])  # (N, K, 2)
    scores = np.array([float(r["score"]) for r in results_per_image])
    areas = np.array([float(r["area"]) for r in results_per_image])
    pair_oks = oks(kpts[:, None], kpts[None, :], 0.5 * (areas[:, None] + areas[None, :]), sigmas=sigmas)  # (N, N)

    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        order = [j for j in order if pair_oks[i, j] <= threshold]
    return keep


def make_coco_results(
    image_coords,
    maxvals,
    image_ids,
    box_scores,
    areas,
    use_nms: bool = True,
    rescoring: bool = True,
    nms_threshold: float = 0.9,
    score_threshold: float = 0.2,
    sigmas=COCO_SIGMAS,
    category_id: int = 1,
) -> list[dict]:
    """Decoded poses → COCO results, the way HRNet evaluates: rescoring, then OKS-NMS per image.

    Args:
        image_coords: (N, K, 2) image px, (x, y). maxvals: (N, K) heatmap peaks (written as the keypoint
            scores). image_ids: (N,) COCO image ids. box_scores: (N,) person box scores (1 for GT boxes).
        areas: (N,) px², the pose's area for OKS-NMS (HRNet: the area of the enlarged person box).
        use_nms: run ``oks_nms`` per image at ``nms_threshold``.
        rescoring: score = ``rescore(box_scores, maxvals, score_threshold)``; otherwise the box score.
        sigmas: (K,) OKS constants for the NMS (default COCO's; pass ``dataset.sigmas`` for another keypoint
            set), or "uniform"; checked against K when NMS runs or when given (None only without NMS).
        category_id: the keypoint category of the ground truth (``dataset.category_id``; COCO's person is 1).
    Returns:
        list of ``{"image_id", "category_id", "keypoints": [x, y, s] * K, "score"}`` (python numbers),
        images in order of first appearance, poses by decreasing score within an image when NMS is on.
    """
    coords, maxvals = _np(image_coords), _np(maxvals)
    image_ids = _np(image_ids, np.int64)
    box_scores, areas = _np(box_scores), _np(areas)
    n = coords.shape[0]
    if coords.ndim != 3 or coords.shape[2] != 2 or maxvals.shape != coords.shape[:2]:
        raise ValueError(f"expected image_coords (N, K, 2) and maxvals (N, K), got {coords.shape} and {maxvals.shape}")
    for name, arr in (("image_ids", image_ids), ("box_scores", box_scores), ("areas", areas)):
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape (N,) = ({n},), got {arr.shape}")
    if use_nms or (sigmas is not None and sigmas is not COCO_SIGMAS):  # checked where used or given explicitly
        sigmas = resolve_sigmas(sigmas, coords.shape[1], "the poses")

    scores = rescore(box_scores, maxvals, score_threshold) if rescoring else box_scores
    poses = [
        {
            "image_id": int(image_ids[i]),
            "category_id": int(category_id),
            "keypoints": np.concatenate([coords[i], maxvals[i, :, None]], axis=1).ravel().tolist(),
            "score": float(scores[i]),
            "area": float(areas[i]),
        }
        for i in range(n)
    ]
    by_image: dict[int, list[dict]] = {}
    for pose in poses:
        by_image.setdefault(pose["image_id"], []).append(pose)

    results = []
    for group in by_image.values():
        kept = oks_nms(group, nms_threshold, sigmas) if use_nms else range(len(group))
        for i in kept:
            results.append({k: v for k, v in group[i].items() if k != "area"})
    return results


# ---------------------------------------------------------------------------------------------------------
# PCK family


class PCKResult(NamedTuple):
    """``mean``: correct / visible over all joints; ``per_joint``: (K,) (NaN without visible joints);
    ``counts``: (K,) visible joints."""

    mean: float
    per_joint: np.ndarray
    counts: np.ndarray


def _check_pose_arrays(pred, gt, visible) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt, visible = _np(pred), _np(gt), _np(visible, bool)
    if pred.ndim != 3 or pred.shape[2] != 2 or gt.shape != pred.shape or visible.shape != pred.shape[:2]:
        raise ValueError(
            f"expected pred, gt (N, K, 2) and visible (N, K), got {pred.shape}, {gt.shape}, {visible.shape}"
        )
    return pred, gt, visible


def localisation_error(pred, gt, visible) -> np.ndarray:
    """Euclidean error of each joint, ``||pred - gt||`` in the unit of the inputs (px).

    Args:
        pred, gt: (N, K, 2), (x, y). visible: (N, K) bool, joints with a ground truth.
    Returns:
        (N, K) float64, NaN where the joint is not visible.
    """
    pred, gt, visible = _check_pose_arrays(pred, gt, visible)
    return np.where(visible, np.linalg.norm(pred - gt, axis=-1), np.nan)


def _pck(pred, gt, visible, norm, threshold: float) -> PCKResult:
    """PCK with a per-instance normaliser: a visible joint is correct when ``error / norm <= threshold``."""
    pred, gt, visible = _check_pose_arrays(pred, gt, visible)
    norm = _np(norm)
    if norm.shape != pred.shape[:1]:
        raise ValueError(f"the normaliser must have shape (N,) = ({pred.shape[0]},), got {norm.shape}")
    used = visible.any(axis=1)
    if not np.all(norm[used] > 0):
        raise ValueError("the normaliser (head or box size) must be > 0 for every instance with a visible joint")
    error = np.linalg.norm(pred - gt, axis=-1) / np.where(norm > 0, norm, 1.0)[:, None]
    correct = (error <= threshold) & visible
    counts = visible.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(counts > 0, correct.sum(axis=0) / counts, np.nan)
    total = counts.sum()
    mean = float(correct.sum() / total) if total else float("nan")
    return PCKResult(mean, per_joint, counts)


def mpii_head_size(head_boxes) -> np.ndarray:
    """MPII head size: ``0.6 · ||(x2 - x1, y2 - y1)||``, the official ``SC_BIAS`` times the head box diagonal.

    Args:
        head_boxes: (N, 4) px, ``(x1, y1, x2, y2)`` (``gt_valid.mat`` ``headboxes_src``).
    Returns:
        (N,) px.
    """
    boxes = _np(head_boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"head_boxes must be (N, 4) = (x1, y1, x2, y2), got {boxes.shape}")
    return 0.6 * np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def pckh(pred, gt, visible, head_size, threshold: float = 0.5, joint_names: Sequence[str] = MPII_JOINTS) -> pd.DataFrame:
    """MPII PCKh per joint group, following the official evaluation (as in HRNet's ``mpii.py``).

    A visible joint is correct when ``||pred - gt|| / head_size <= threshold``. Per joint:
    ``PCKh_k = correct_k / visible_k``. Groups: Head = head top; Shoulder, Elbow, Wrist, Hip, Knee, Ankle =
    the plain average of the left and right joints' PCKh (joints without visible instances are skipped).
    Mean = ``Σ_k PCKh_k · visible_k / Σ_k visible_k`` over all joints but pelvis and thorax, i.e. correct /
    visible pooled over those 14 joints.

    Args:
        pred, gt: (N, K, 2) px, (x, y), one frame (e.g. original-image px). visible: (N, K) bool, the joint
            is annotated (MPII: not ``jnt_missing``). head_size: (N,) px, see ``mpii_head_size``.
        threshold: fraction of the head size. joint_names: (K,) names of the joints in array order
            (default: the MPII order, ``MPII_JOINTS``), in any spelling ``hdm.data.keypoints.canonical_name``
            reads (``r_ankle``, ``right_ankle``, ``R_Ankle``...): pass ``dataset.joint_set.names``.
    Returns:
        DataFrame indexed by ``Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean`` with columns
        ``pckh`` (fraction in [0, 1]; NaN without visible joints) and ``count`` (visible joints).
    """
    from hdm.data.keypoints import canonical_name

    pred, gt, visible = _check_pose_arrays(pred, gt, visible)
    joint_names = tuple(joint_names)
    index = {canonical_name(name): k for k, name in enumerate(joint_names)}
    needed = {n for names in PCKH_GROUPS.values() for n in names} | set(PCKH_MEAN_EXCLUDES)
    if len(joint_names) != pred.shape[1] or not {canonical_name(n) for n in needed} <= set(index):
        raise ValueError(
            f"joint_names must name the {pred.shape[1]} joints in array order and include {sorted(needed)} "
            f"(any spelling); got {joint_names}"
        )
    result = _pck(pred, gt, visible, head_size, threshold)
    index = {name: index[canonical_name(name)] for name in needed}

    rows = {}
    for group, names in PCKH_GROUPS.items():
        ks = [index[n] for n in names]
        values = result.per_joint[ks]
        seen = values[~np.isnan(values)]
        rows[group] = (float(seen.mean()) if seen.size else float("nan"), int(result.counts[ks].sum()))
    excluded = {index[n] for n in PCKH_MEAN_EXCLUDES}
    in_mean = [k for k in range(len(joint_names)) if k not in excluded]
    counts = result.counts[in_mean]
    correct = np.nan_to_num(result.per_joint[in_mean]) * counts
    rows["Mean"] = (float(correct.sum() / counts.sum()) if counts.sum() else float("nan"), int(counts.sum()))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["pckh", "count"])


def pck_bbox(pred, gt, visible, box_size, threshold: float = 0.1) -> PCKResult:
    """PCK normalised by the person box: a visible joint is correct when ``||pred - gt|| / box_size <= threshold``.

    Head-size free, so it works on COCO and synthetic data. ``box_size`` is the caller's choice of box
    length; we use ``max(w, h)`` of the person box (as mmpose's ``PCKAccuracy`` with bbox normalisation).

    Args:
        pred, gt: (N, K, 2) px, (x, y). visible: (N, K) bool. box_size: (N,) px, > 0.
        threshold: fraction of the box size.
    Returns:
        ``PCKResult(mean, per_joint (K,), counts (K,))``: mean = correct / visible pooled over all joints.
    """
    return _pck(pred, gt, visible, box_size, threshold)


def pck_joints(pred, gt, visible, joints: tuple[int, int], threshold: float = 0.2) -> PCKResult:
    """PCK normalised by the ground-truth distance between two joints of each instance, e.g. the torso
    diameter (``dataset.joint_set.torso_joints``: left shoulder to right hip, PCK@0.2 of LSP) or the head
    (``joint_set.head_joints``: head top to neck, a head size where no head box exists).

    Instances where either normalising joint is unlabelled, or both coincide, are left out (their joints count
    in neither ``counts`` nor ``mean``).

    Args:
        pred, gt: (N, K, 2) px, (x, y). visible: (N, K) bool. joints: the (i, j) joint indices.
        threshold: fraction of the instance's normalising distance.
    Returns:
        ``PCKResult(mean, per_joint (K,), counts (K,))``.
    """
    pred, gt, visible = _check_pose_arrays(pred, gt, visible)
    if joints is None:
        raise ValueError("this joint set has no normalising joints for PCK: use pck_bbox (box-normalised) instead")
    i, j = (int(v) for v in joints)
    k = pred.shape[1]
    if not (0 <= i < k and 0 <= j < k) or i == j:
        raise ValueError(f"joints must be two different indices in 0..{k - 1}, got {joints}")
    norm = np.linalg.norm(gt[:, i] - gt[:, j], axis=-1)
    usable = visible[:, i] & visible[:, j] & (norm > 0)
    return _pck(pred, gt, visible & usable[:, None], np.where(usable, norm, 1.0), threshold)
