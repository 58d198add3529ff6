"""Figure and table helpers the notebooks share: one place that decides where outputs go and how they look.

Every figure is written as PNG and PDF under ``results/figures/``, every table as CSV and Markdown under
``results/tables/`` (paths from :mod:`hdm.paths`, so notebooks run from any directory).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hdm import paths

matplotlib.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10})

PRED_STYLE = {"baseline": dict(color="#1f77b4", marker="x"), "ours": dict(color="#d62728", marker="+"),
              "gt": dict(color="#2ca02c", marker="o", markerfacecolor="none")}


def save_figure(fig: plt.Figure, name: str, folder: Path | None = None) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.pdf`` under ``results/figures/`` (or ``folder``); returns both paths."""
    folder = Path(folder or paths.FIGURES)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".pdf"):
        path = folder / f"{name}{suffix}"
        fig.savefig(path, bbox_inches="tight", metadata={"CreationDate": None} if suffix == ".pdf" else None)
        written.append(path)
    return written


def save_table(table: pd.DataFrame, name: str, folder: Path | None = None, floatfmt: str = ".3f") -> list[Path]:
    """Write ``<name>.csv`` and ``<name>.md`` under ``results/tables/`` (or ``folder``); returns both paths."""
    folder = Path(folder or paths.TABLES)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / f"{name}.csv", folder / f"{name}.md"
    table.to_csv(csv_path, index=False)
    md_path.write_text(table.to_markdown(index=False, floatfmt=floatfmt) + "\n")
    return [csv_path, md_path]


def loss_accuracy_panel(ax: plt.Axes, metrics: pd.DataFrame, loss: str, accuracy: str, loss_label: str,
                        accuracy_label: str, first_epoch: int = 2, title: str | None = None) -> plt.Axes:
    """Fig. 2 panel: the loss (left axis) and the accuracy (right axis) against the epoch. Returns the right axis.

    ``metrics`` may hold several seeds (a ``seed`` column): each is drawn as a thin line and their mean bold.
    """
    frame = metrics[metrics["epoch"] >= first_epoch]
    groups = list(frame.groupby("seed")) if "seed" in frame.columns else [(None, frame)]
    right = ax.twinx()
    for _, run in groups:
        ax.plot(run["epoch"], run[loss], color="#1f77b4", alpha=0.25, lw=0.8)
        right.plot(run["epoch"], run[accuracy], color="#d62728", alpha=0.25, lw=0.8)
    mean = frame.groupby("epoch")[[loss, accuracy]].mean()
    ax.plot(mean.index, mean[loss], color="#1f77b4", marker="o", ms=3, label=loss_label)
    right.plot(mean.index, mean[accuracy], color="#d62728", marker="s", ms=3, label=accuracy_label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_label, color="#1f77b4")
    right.set_ylabel(accuracy_label, color="#d62728")
    if title:
        ax.set_title(title)
    return right


def heatmap_overlay(ax: plt.Axes, crop: np.ndarray, heatmap: np.ndarray, points: dict[str, np.ndarray] | None = None,
                    title: str | None = None, alpha: float = 0.55) -> None:
    """Draw a heatmap (h, w) stretched over its RGB input crop (H, W, 3) in [0, 1], with labelled points.

    Args:
        crop: (H, W, 3) image in [0, 1]. heatmap: (h, w); drawn with pixel centres aligned to the crop (stride
            H / h; heatmap pixel centre i sits at crop px i * stride). points: label -> (2,) crop px (x, y);
            labels "baseline", "ours", "gt" get fixed styles.
    """
    height, width = crop.shape[:2]
    stride_y, stride_x = height / heatmap.shape[0], width / heatmap.shape[1]
    ax.imshow(crop, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    extent = (-0.5 * stride_x, (heatmap.shape[1] - 0.5) * stride_x, (heatmap.shape[0] - 0.5) * stride_y, -0.5 * stride_y)
    ax.imshow(np.clip(heatmap, 0, None), cmap="magma", alpha=alpha, extent=extent, interpolation="nearest")
    for label, xy in (points or {}).items():
        style = PRED_STYLE.get(label, dict(color="white", marker="*"))
        ax.plot(xy[0], xy[1], ls="none", ms=9, mew=1.6, label=label, **style)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def qualitative_grid(picks: list[tuple[int, int]], models: dict, title_fmt: str = "{label}: {joint}\n({x:.1f}, {y:.1f})"):
    """Fig. 1 / Fig. 3 layout: one column per pick, one row per model: heatmap over the crop, prediction and GT.

    Args:
        picks: (row in the models' predictions, joint index) pairs. models: label -> ``hdm.inference.SamplePredictions``
            on the same samples. title_fmt: panel title with fields joint, label, x, y (prediction, image px).
    Returns:
        the figure and a table (one row per pick) of predicted and GT original-image coordinates and errors (px).
    """
    fig, axes = plt.subplots(len(models), len(picks), figsize=(2.4 * len(picks), 2.9 * len(models)),
                             squeeze=False, constrained_layout=True)
    rows = []
    for col, (i, k) in enumerate(picks):
        first = next(iter(models.values()))
        gt = first.image_joints[i, k]
        entry = {"sample index": int(first.indices[i]), "joint": first.joint_names[k],
                 "GT (x, y)": f"({gt[0]:.1f}, {gt[1]:.1f})"}
        for row, (label, pred) in enumerate(models.items()):
            xy = pred.image_coords[i, k]
            heatmap_overlay(axes[row, col], pred.crops[i], pred.heatmaps[i, k],
                            {label: pred.coords[i, k] * pred.stride, "gt": pred.joints[i, k] * pred.stride},
                            title=title_fmt.format(joint=pred.joint_names[k], label=label, x=xy[0], y=xy[1]))
            entry[f"{label} (x, y)"] = f"({xy[0]:.1f}, {xy[1]:.1f})"
            entry[f"{label} error px"] = float(np.linalg.norm(xy - gt))
        rows.append(entry)
    for ax in axes[:, 0]:
        ax.legend(loc="lower left", fontsize=7)
    return fig, pd.DataFrame(rows)
