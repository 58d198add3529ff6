"""Why distribution matching loses, in the paper's terms (issue 19): finding a joint vs placing it precisely, and
whether the relu-normalised EMD itself pulls a map toward the all-≤ 0 state (the shift test).

Legend: N persons, K joints, H x W heatmap px. ``predictions`` are a run's evaluation arrays (``coords`` and
``joints`` (N, K, 2) heatmap px, ``visibility`` (N, K) > 0 where the joint counts in the heatmap, ``image_coords``,
``image_joints`` (N, K, 2) image px, ``keypoint_flags`` (N, K) COCO v, ``scale`` (N, 2), ``index`` (N,)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from hdm.analysis.errors import person_size
from hdm.loss import HDMLoss, has_supply

#: A joint is *found* when its error is at most this share of the person size (``miss_breakdown``'s rule).
FOUND_THRESHOLD = 0.1


def found_mask(predictions: dict[str, np.ndarray], threshold: float = FOUND_THRESHOLD) -> np.ndarray:
    """(N, K) bool: labelled joints whose image-px error is at most ``threshold`` x the person size."""
    error = np.linalg.norm(predictions["image_coords"] - predictions["image_joints"], axis=-1)
    return (predictions["keypoint_flags"] > 0) & (error <= threshold * person_size(predictions)[:, None])


def placing_errors(predictions: dict[str, np.ndarray]) -> np.ndarray:
    """(N, K) heatmap-px error of every joint (||coords - joints||)."""
    return np.linalg.norm(predictions["coords"] - predictions["joints"], axis=-1)


def finding_placing(runs: dict[tuple[str, int], dict[str, np.ndarray]], threshold: float = FOUND_THRESHOLD,
                    quantile: float = 0.9) -> pd.DataFrame:  # fmt: skip
    """Finding vs placing per run, placing judged on one common set of joints.

    Args:
        runs: ``{(method, seed): predictions}`` on the same persons (same ``index`` order). threshold: the found
            rule (share of the person size). quantile: the high quantile of the placing error reported.
    Returns:
        one row per run: method, seed, joints (labelled and counted in the heatmap), found_share, found_mean_err_hm
        (its own found joints), common_joints (found by *every* run given), common_mean_err_hm,
        common_median_err_hm, common_p90_err_hm (heatmap px, on that common set, so no model is judged on easier
        joints).
    """
    if not runs:
        raise ValueError("no runs to compare")
    first = next(iter(runs.values()))
    for key, pred in runs.items():
        if pred["index"].shape != first["index"].shape or not np.array_equal(pred["index"], first["index"]):
            raise ValueError(f"run {key} predicted other persons than {next(iter(runs))}: compare runs on one split")
    counted = (first["keypoint_flags"] > 0) & (first["visibility"] > 0)
    found = {key: found_mask(pred, threshold) & counted for key, pred in runs.items()}
    common = np.logical_and.reduce(list(found.values()))
    rows = []
    for (method, seed), pred in runs.items():
        errors = placing_errors(pred)
        on_common = errors[common]
        rows.append({
            "method": method, "seed": seed, "joints": int(counted.sum()),
            "found_share": float(found[(method, seed)].sum() / max(counted.sum(), 1)),
            "found_mean_err_hm": float(errors[found[(method, seed)]].mean()) if found[(method, seed)].any() else np.nan,
            "common_joints": int(common.sum()),
            "common_mean_err_hm": float(on_common.mean()) if common.any() else np.nan,
            "common_median_err_hm": float(np.median(on_common)) if common.any() else np.nan,
            f"common_p{round(100 * quantile)}_err_hm": float(np.quantile(on_common, quantile)) if common.any() else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


@torch.no_grad()
def shift_test(heatmaps: torch.Tensor, joints: torch.Tensor, weight: torch.Tensor,
               shifts=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
               loss: HDMLoss | None = None, tol: float = 1e-6) -> pd.DataFrame:  # fmt: skip
    """Does lowering a whole map lower the relu-normalised EMD? For each relative shift s, every counted joint's
    map becomes ``h - s * max(h)`` (s = 0: the map as trained; maps with max(h) <= 0 do not move) and is scored
    with ``loss`` (default the training loss, guarded relu suppliers).

    Args:
        heatmaps (N, K, H, W), joints (N, K, 2) heatmap px, weight (N, K) (> 0: the joint counts). tol: a joint
        counts as lowered when its EMD falls by more than ``tol`` relative (the ε guard alone moves the value of a
        map whose shape does not change by ~ε / Σ relu(h)).
    Returns:
        one row per shift: shift, mean_emd (over counted joints), mean_relative_change (of each joint's EMD),
        lowered_share (share of counted joints whose EMD falls by more than ``tol`` relative), no_positive_share
        (share of counted maps with no pixel > 0 after the shift).
    """
    loss = loss or HDMLoss(reduction="none")
    heatmaps = heatmaps.double()
    counted = weight > 0
    peak = heatmaps.flatten(-2).amax(-1).clamp_min(0)[..., None, None]
    base = loss.per_joint(heatmaps, joints.double(), weight.double())[counted]
    rows = []
    for shift in shifts:
        moved = heatmaps - shift * peak
        value = base if shift == 0 else loss.per_joint(moved, joints.double(), weight.double())[counted]
        scale = base.abs().clamp_min(1e-12)
        lowered = value < base - tol * scale
        rows.append({"shift": shift, "mean_emd": float(value.mean()),
                     "mean_relative_change": float(((value - base) / scale).mean()),
                     "lowered_share": float(lowered.double().mean()),
                     "no_positive_share": float((~has_supply(moved))[counted].double().mean())})  # fmt: skip
    return pd.DataFrame(rows)


def no_positive_share(heatmaps: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    """Share of maps (counted ones when ``weight`` (N, K) is given) with no pixel > 0: where relu suppliers have no
    mass, so the guard serves them as softmax suppliers (guarded) or they drop out (strict)."""
    dead = ~has_supply(heatmaps)
    if weight is not None:
        dead = dead[weight > 0]
    return float(dead.double().mean()) if dead.numel() else float("nan")
