"""Figure and table helpers the notebooks share: one place that decides where outputs go and how they look.

Every figure is written as PNG and PDF under ``results/figures/``, every table as CSV and Markdown under
``results/tables/`` (paths from :mod:`hdm.paths`, so notebooks run from any directory). One seaborn theme
(:func:`set_theme`, applied when this module is imported) and one colour per method (:data:`COLORS`) hold for
every figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd
import seaborn as sns

from hdm import paths

_PALETTE = sns.color_palette("colorblind")
#: One colour per method, and per role in Fig. 1 / Fig. 3 (baseline = the Gaussian-trained model, ours = ours).
COLORS = {"gaussian": _PALETTE[0], "dot": _PALETTE[1], "hdm": _PALETTE[3], "baseline": _PALETTE[0],
          "ours": _PALETTE[3], "gt": _PALETTE[2], "loss": _PALETTE[0], "accuracy": _PALETTE[3]}
PRED_STYLE = {"baseline": dict(color=COLORS["baseline"], marker="x"), "ours": dict(color=COLORS["ours"], marker="+"),
              "gt": dict(color=COLORS["gt"], marker="o", markerfacecolor="none")}


def set_theme() -> None:
    """The one look of every figure: seaborn's ``whitegrid`` style, colour-blind palette, small print-sized fonts."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind",
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
                      "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8})


set_theme()


def color(key: str):
    """The colour of a method (or of a variant spec "method+key:value", by its method) or of a role in :data:`COLORS`."""
    return COLORS.get(key, COLORS.get(key.partition("+")[0], "0.4"))


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

    Each curve is the mean over seeds (the ``seed`` column, if any) per epoch, with a band of ± one standard
    deviation across seeds (seaborn ``errorbar="sd"``; no band for a single seed).
    """
    frame = metrics[metrics["epoch"] >= first_epoch]
    right = ax.twinx()
    right.grid(False)
    for axis, column, label, key, marker in ((ax, loss, loss_label, "loss", "o"), (right, accuracy, accuracy_label,
                                                                                   "accuracy", "s")):
        sns.lineplot(data=frame, x="epoch", y=column, ax=axis, color=COLORS[key], marker=marker, markersize=4,
                     markeredgewidth=0, errorbar="sd", estimator="mean", legend=False)
        axis.set_ylabel(label, color=COLORS[key])
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(title)
    return right


def loss_accuracy_figure(metrics: pd.DataFrame, panels: list[tuple[str, str, str, str]], accuracy: str,
                         first_epoch: int = 2, ncols: int = 2) -> plt.Figure:
    """Fig. 2 grid: one :func:`loss_accuracy_panel` per ``(method, loss column, loss label, title)`` in ``panels``,
    from the stacked metrics of every run (``method`` and ``seed`` columns), ``ncols`` per row."""
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.1 * nrows), constrained_layout=True, squeeze=False)
    for ax, (method, column, label, title) in zip(axes.flat, panels):
        loss_accuracy_panel(ax, metrics[metrics["method"] == method], column, accuracy, f"val {label}", accuracy,
                            first_epoch=first_epoch, title=title)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    return fig


def joint_error_figure(errors: pd.DataFrame, hue: str, by: str = "name", value: str = "error_rel",
                       hue_order: list[str] | None = None, labels: dict[str, str] | None = None,
                       threshold: float | None = 0.1) -> plt.Figure:
    """Per-joint error distributions of several models (``analysis.joint_errors`` rows, a ``hue`` column naming the
    model): left, the ECDF of ``value`` per model (at ``threshold`` it reads as PCK over labelled joints); right,
    the median and interquartile range of ``value`` per ``by`` (joint name, or visibility), one mark per model.
    Log error axes (errors below 1e-4 are drawn at 1e-4)."""
    frame = errors.assign(**{value: errors[value].clip(lower=1e-4)})
    if labels:
        frame[hue] = frame[hue].map(lambda v: labels.get(v, v))
    order = hue_order or list(dict.fromkeys(errors[hue]))
    palette = {(labels or {}).get(k, k): color(k) for k in order}
    order = [(labels or {}).get(k, k) for k in order]
    categories = list(frame.drop_duplicates(by).sort_values("joint" if by == "name" else by)[by])
    axis_label = {"error_rel": "error / person size", "error_px": "error (image px)"}.get(value, value)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, max(3.2, 0.28 * len(categories) * max(1, len(order) / 2))),
                                      constrained_layout=True, gridspec_kw={"width_ratios": [1, 1.3]})
    sns.ecdfplot(data=frame, x=value, hue=hue, hue_order=order, palette=palette, ax=left, log_scale=True)
    if threshold is not None:
        left.axvline(threshold, color="0.3", ls=":", lw=1)
        left.annotate(f"{threshold:g}", (threshold, 0.02), xytext=(3, 0), textcoords="offset points", fontsize=7)
    left.set(xlabel=f"{axis_label} (log)", ylabel="share of labelled joints with this error or less",
             title="error distribution (ECDF)")
    sns.pointplot(data=frame, x=value, y=by, hue=hue, hue_order=order, order=categories, palette=palette, ax=right,
                  orient="h", estimator="median", errorbar=("pi", 50), dodge=0.5, linestyle="none", markersize=3,
                  err_kws={"linewidth": 1.2}, log_scale=True)
    right.set(xlabel=f"{axis_label} (log): median and interquartile range", ylabel="",
              title=f"per {by.replace('name', 'joint')}")
    if right.get_legend() is not None:
        right.get_legend().remove()
    return fig


def eq5_violation_figure(table: pd.DataFrame, value: str = "eq4_residual") -> plt.Figure:
    """Theorem 1: ``value`` over the sub-pixel offset grid, one panel per sigma (``theory.eq5_violation_table``)."""
    sigmas = list(dict.fromkeys(table["sigma"]))
    fig, axes = plt.subplots(1, len(sigmas), figsize=(3.4 * len(sigmas), 3), constrained_layout=True, squeeze=False)
    for ax, sigma in zip(axes[0], sigmas):
        grid = table[table["sigma"] == sigma].pivot(index="offset_y", columns="offset_x", values=value)
        extent = (grid.columns.min(), grid.columns.max(), grid.index.min(), grid.index.max())
        image = ax.imshow(grid.to_numpy(), origin="lower", extent=extent, cmap="viridis", aspect="auto")
        ax.grid(False)
        ax.set(title=f"sigma = {sigma:g} px", xlabel="sub-pixel offset x (px)", ylabel="offset y (px)")
        fig.colorbar(image, ax=ax, label="eq. 4 residual per joint")
    return fig


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
    ax.grid(False)
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


def dynamics_figure(per_epoch: pd.DataFrame, columns: dict[str, str], hue: str = "variant",
                    hue_order: list[str] | None = None, ncols: int = 3, log_columns: tuple[str, ...] = ()) -> plt.Figure:
    """Our loss's training dynamics: one panel per ``{column: label}`` against the epoch, one line per ``hue``
    value (mean over seeds, ± sd band). ``log_columns`` get a logarithmic y axis."""
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), constrained_layout=True, squeeze=False)
    for n, (ax, (column, label)) in enumerate(zip(axes.flat, columns.items())):
        sns.lineplot(data=per_epoch, x="epoch", y=column, hue=hue, hue_order=hue_order, ax=ax, errorbar="sd",
                     marker="o", markersize=3, markeredgewidth=0, legend=n == 0)  # fmt: skip
        ax.set(ylabel=label, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if column in log_columns:
            ax.set_yscale("log")
    if axes.flat[0].get_legend() is not None:
        sns.move_legend(axes.flat[0], "upper left", bbox_to_anchor=(0, -0.25), ncol=1, fontsize="small", title=None)
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    return fig


def finding_placing_figure(table: pd.DataFrame, labels: dict[str, str] | None = None,
                           floors: dict[str, float] | None = None) -> plt.Figure:  # fmt: skip
    """Finding vs placing (``hdm.analysis.finding_placing``'s table, one row per method and seed): left, the share
    of labelled joints found; right, the mean and median error on the joints every model found (heatmap px), each
    seed a dot, the mean a bar; ``floors`` (method -> heatmap px) marks each target's oracle floor."""
    labels = labels or {}
    order = list(dict.fromkeys(table["method"]))
    shown = table.assign(model=[labels.get(m, m) for m in table["method"]])
    names = [labels.get(m, m) for m in order]
    palette = {labels.get(m, m): color(m) for m in order}
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.45 * len(order) + 1.6), constrained_layout=True, sharey=True)
    panels = [("found_share", "share of labelled joints found (≤ 0.1 × size)"),
              ("common_mean_err_hm", "mean error on the common joints (heatmap px)"),
              ("common_median_err_hm", "median error on the common joints (heatmap px)")]
    for ax, (column, label) in zip(axes, panels):
        sns.barplot(data=shown, y="model", x=column, order=names, hue="model", palette=palette, errorbar=None,
                    alpha=0.45, ax=ax, legend=False)  # fmt: skip
        sns.stripplot(data=shown, y="model", x=column, order=names, hue="model", palette=palette, ax=ax, size=4,
                      jitter=False, legend=False)  # fmt: skip  (no random jitter: a rerun draws the same figure)
        ax.set(xlabel=label, ylabel="")
        if floors and column == "common_mean_err_hm":
            for row, method in enumerate(order):
                if method in floors:
                    ax.plot([floors[method]] * 2, [row - 0.4, row + 0.4], color="k", lw=1.2, ls="--")
    if floors:
        axes[1].plot([], [], color="k", lw=1.2, ls="--", label="oracle floor (mean)")
        axes[1].legend(loc="lower right")
    return fig
