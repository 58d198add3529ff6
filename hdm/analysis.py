"""Numbers behind Fig. 2 and Table 1, computed from runs' per-epoch metric tables (pandas).

Fig. 2's claim is that our loss tracks localisation accuracy more consistently than pixel-wise MSE does. We
quantify "consistently" per run, over the plotted epochs:

- ``spearman``: Spearman rank correlation between the validation loss and the accuracy over epochs. A loss that
  tracks accuracy perfectly gives -1 (loss down <=> accuracy up).
- ``inconsistent_epochs``: epochs in which the loss fell while the accuracy did not rise (the pattern Fig. 2a
  shows for MSE), and its share among the epochs in which the loss fell.

Over several seeds these become mean ± std (:func:`summarise_over_seeds`). Table 1's solver ablation without
training: :func:`solver_agreement` compares the exact and the entropic loss on the same heatmaps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from hdm.loss import HDMLoss
from hdm.targets import target_weight


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"metrics table lacks columns {missing}; it has {list(frame.columns)}")


def loss_accuracy_consistency(
    metrics: pd.DataFrame, loss: str, accuracy: str, first_epoch: int = 2, last_epoch: int | None = None
) -> dict:
    """How consistently ``loss`` tracks ``accuracy`` over epochs ``first_epoch..last_epoch`` (inclusive).

    Args:
        metrics: one row per epoch with an ``epoch`` column (1-based) and the two named columns.
        loss, accuracy: column names (e.g. "val_mse" and "AP"). first_epoch, last_epoch: Fig. 2 plots 2..15.
    Returns:
        dict with spearman (float, NaN if either series is constant), epochs (int), loss_fell (int),
        inconsistent_epochs (int), inconsistent_share (float, NaN if the loss never fell).
    """
    _check_columns(metrics, ["epoch", loss, accuracy])
    keep = metrics["epoch"] >= first_epoch
    if last_epoch is not None:
        keep &= metrics["epoch"] <= last_epoch
    window = metrics[keep].sort_values("epoch")
    if len(window) < 2:
        raise ValueError(f"need at least 2 epochs in [{first_epoch}, {last_epoch}] to compare, got {len(window)}")
    loss_values = window[loss].to_numpy(float)
    acc_values = window[accuracy].to_numpy(float)
    if np.ptp(loss_values) == 0 or np.ptp(acc_values) == 0:
        rho = float("nan")
    else:
        rho = float(spearmanr(loss_values, acc_values).statistic)
    fell = np.diff(loss_values) < 0
    not_up = np.diff(acc_values) <= 0
    inconsistent = int((fell & not_up).sum())
    return {
        "spearman": rho,
        "epochs": len(window),
        "loss_fell": int(fell.sum()),
        "inconsistent_epochs": inconsistent,
        "inconsistent_share": inconsistent / fell.sum() if fell.any() else float("nan"),
    }


def consistency_table(runs: dict[tuple[str, int], pd.DataFrame], losses: dict[str, str], accuracy: str, **window) -> pd.DataFrame:
    """One row per (method, seed, loss): :func:`loss_accuracy_consistency` of every run against every loss.

    Args:
        runs: (method, seed) -> metrics table. losses: label -> column, e.g. {"MSE": "val_mse", "ours": "val_hdm"}.
        accuracy: accuracy column. window: first_epoch / last_epoch.
    """
    rows = []
    for (method, seed), metrics in runs.items():
        for label, column in losses.items():
            rows.append({"method": method, "seed": seed, "loss": label,
                         **loss_accuracy_consistency(metrics, column, accuracy, **window)})
    return pd.DataFrame(rows)


def summarise_over_seeds(table: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Mean and std (ddof=1; NaN for one seed) of ``values`` grouped by ``by``, plus the seed count ``n``."""
    _check_columns(table, by + values)
    grouped = table.groupby(by, sort=False)[values]
    summary = grouped.agg(["mean", "std"])
    summary.columns = [f"{value}_{stat}" for value, stat in summary.columns]
    summary["n"] = grouped.size()
    return summary.reset_index()


def mean_std_strings(summary: pd.DataFrame, values: list[str], scale: float = 1.0, digits: int = 1) -> pd.DataFrame:
    """Format ``<v>_mean`` / ``<v>_std`` columns as "m ± s" strings (std omitted when NaN), values × ``scale``."""
    out = pd.DataFrame(index=summary.index)
    for value in values:
        mean, std = summary[f"{value}_mean"] * scale, summary[f"{value}_std"] * scale
        out[value] = [f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(mean, std)]
    return out


# ---------------------------------------------------------------------------------------------------------
# Fig. 3: where the model fails


def joint_errors(predictions: dict[str, np.ndarray], joint_names: list[str] | None = None) -> pd.DataFrame:
    """One row per labelled joint of a run's ``predictions.npz``: its localisation error and visibility.

    Args:
        predictions: arrays ``index, image_coords, image_joints, keypoint_flags, scale`` (N, K, ...) as written
            by the engine. joint_names: K names (default "joint<k>").
    Returns:
        columns sample (row in predictions), index (dataset index), joint, name, flag (COCO v: 1 occluded,
        2 visible), error_px (original-image px), error_rel (error / person size, the longer side of the
        crop box before padding: 200 * max(scale) / 1.25).
    """
    flags = predictions["keypoint_flags"]
    num, joints = flags.shape
    names = joint_names or [f"joint{k}" for k in range(joints)]
    errors = np.linalg.norm(predictions["image_coords"] - predictions["image_joints"], axis=-1)
    size = 200.0 * predictions["scale"].max(-1) / 1.25
    sample, joint = np.nonzero(flags > 0)
    return pd.DataFrame({
        "sample": sample, "index": predictions["index"][sample], "joint": joint,
        "name": [names[k] for k in joint], "flag": flags[sample, joint],
        "error_px": errors[sample, joint], "error_rel": errors[sample, joint] / size[sample],
    })


def error_by_visibility(errors: pd.DataFrame, worst_share: float = 0.05) -> pd.DataFrame:
    """Errors grouped by visibility flag, and how the worst ``worst_share`` of joints (by ``error_rel``) split.

    Returns one row per flag: joints, share_of_joints, mean/median error_rel and error_px, share_of_worst (the
    fraction of the worst joints that have this flag) and over_representation (share_of_worst / share_of_joints).
    """
    if errors.empty:
        raise ValueError("no labelled joints to analyse")
    cutoff = errors["error_rel"].quantile(1 - worst_share)
    worst = errors[errors["error_rel"] >= cutoff]
    rows = []
    for flag, group in errors.groupby("flag"):
        share = len(group) / len(errors)
        worst_part = (worst["flag"] == flag).mean()
        rows.append({"flag": int(flag), "visibility": {1: "occluded", 2: "visible"}.get(int(flag), str(flag)),
                     "joints": len(group), "share_of_joints": share,
                     "mean_error_rel": group["error_rel"].mean(), "median_error_rel": group["error_rel"].median(),
                     "mean_error_px": group["error_px"].mean(), "share_of_worst": worst_part,
                     "over_representation": worst_part / share})
    return pd.DataFrame(rows)


def solver_agreement(heatmaps: torch.Tensor, joints: torch.Tensor, visibility: torch.Tensor,
                     eps_values: tuple[float, ...] = (0.5, 0.1, 0.05)) -> pd.DataFrame:  # fmt: skip
    """Exact EMD vs. entropic (Sinkhorn) ``HDMLoss`` on the same heatmaps, per regularisation ``eps``.

    Args:
        heatmaps: (N, K, H, W) predicted maps. joints: (N, K, 2) heatmap px. visibility: (N, K).
        eps_values: Sinkhorn regularisations, heatmap px.
    Returns:
        one row per eps: ``eps``; ``joints`` (the counted joints); ``exact_loss`` and ``sinkhorn_loss`` (mean EMD
        per joint, heatmap px); ``relative_excess`` (mean of (sinkhorn - exact) / exact); ``gradient_cosine``
        (mean, and ``gradient_cosine_min``, over joints of the cosine between the two losses' gradients w.r.t.
        the joint's map).
    """
    height, width = heatmaps.shape[-2:]
    weight = target_weight(joints, visibility, (height, width))
    used = weight > 0
    if not used.any():
        raise ValueError("no joint counts (all invisible or outside the heatmap): nothing to compare")

    def value_and_gradient(loss_fn):
        pred = heatmaps.detach().clone().requires_grad_(True)
        values = loss_fn(pred, joints, weight)
        values.sum().backward()
        return values.detach()[used], pred.grad[used].flatten(1)

    exact, exact_grad = value_and_gradient(HDMLoss(reduction="none"))
    rows = []
    for eps in eps_values:
        entropic, entropic_grad = value_and_gradient(HDMLoss(solver="sinkhorn", sinkhorn_eps=eps, reduction="none"))
        cosine = torch.nn.functional.cosine_similarity(entropic_grad, exact_grad, dim=1)
        rows.append({
            "eps": eps, "joints": int(used.sum()), "exact_loss": exact.mean().item(),
            "sinkhorn_loss": entropic.mean().item(),
            "relative_excess": ((entropic - exact) / exact.clamp_min(1e-12)).mean().item(),
            "gradient_cosine": cosine.mean().item(), "gradient_cosine_min": cosine.min().item(),
        })  # fmt: skip
    return pd.DataFrame(rows)
