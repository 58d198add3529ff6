"""The README's headline tables, generated from the tables the notebooks write, and the README blocks that embed them.

A README block is ``<!-- begin: PATH -->`` … ``<!-- end: PATH -->`` around a copy of the file PATH (relative to the
repository root): :func:`embed` refreshes the copies, ``tests/test_readme.py`` fails when one differs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hdm import paper
from hdm.analysis import readings
from hdm.analysis.readings import SHORT_LABELS
from hdm.analysis.stats import rank_order
from hdm.analysis.tables import Tables, interval, md_table, num, pm
from hdm.experiments import our_setting, sweep_accuracy

#: Where the generated README tables go, under the results folder.
README_TABLES = "readme"

BLOCK = re.compile(r"<!-- begin: (?P<path>\S+) -->\n(?P<body>.*?)<!-- end: (?P=path) -->", re.S)


def _ours(t: Tables, scale: str) -> str | None:
    """Our method's setting at ``scale``, as the notebooks resolve ``ours="auto"`` from the dynamics sweep; None
    when the Table 1 tables predate the sweep table (a summary without the ``label`` column issue 19 added, beside
    a sweep rerun since): the sweep's pick then need not be the setting those tables trained."""
    summary = t.get(f"table1_summary_{scale}")
    if summary is not None and "label" not in summary and (t.folder / f"hdm_dynamics_shift_{scale}.csv").is_file():
        return None
    return our_setting("auto", t.folder / f"hdm_dynamics_sweep_{scale}.csv")


def _label(t: Tables, scale: str, method: str) -> str:
    if method != "hdm":
        return paper.label(method)
    ours = _ours(t, scale)
    return paper.label(ours) if ours is not None else f"{paper.label('hdm')} (the earlier sweep's pick)"


def _method_label(t: Tables, scale: str, method: str) -> str:
    """A Table 1 method's name: the summary's ``label`` for the models beside the paper's three (softplus, a repair),
    :func:`_label` for those three (and for every method of tables without labels)."""
    summary = t.get(f"table1_summary_{scale}")
    if method in ("gaussian", "dot", "hdm") or summary is None or "label" not in summary:
        return _label(t, scale, method)
    labels = dict(zip(summary["method"], summary["label"]))
    return labels.get(method, _label(t, scale, method))


def _target_label(t: Tables, scale: str, method: str) -> str:
    """:func:`_method_label` with the loss for the two MSE-trained targets ("… + MSE")."""
    return _method_label(t, scale, method) + (" + MSE" if method in ("gaussian", "dot") else "")


def table1_summary(t: Tables, scale: str) -> str | None:
    """Table 1 at ``scale``: mean ± std over seeds of AP, AP50, AP75 (%), PCK@0.1 (%), the error (heatmap px) and,
    where measured, the joints missed and those nearer their left/right twin; the paper's row below."""
    summary = t.get(f"table1_summary_{scale}")
    if summary is None:
        return None
    misses = t.get(f"table1_misses_{scale}")
    misses = misses.set_index("method") if misses is not None else None
    chosen = "decoder" in summary  # decoders chosen on validation, Table 1 on a held-out split (issue 19)
    header = ["method", *(["decoder (chosen on val)"] if chosen else []), "seeds", "AP", "AP50", "AP75", "PCK@0.1",
              "error (heatmap px)"]  # fmt: skip
    if misses is not None:
        header += ["joints missed (> 0.1 × size)", "of which nearer the twin"]
    rows = []
    for r in summary.to_dict("records"):
        row = [_target_label(t, scale, r["method"]), *([r["decoder"]] if chosen else []), int(r["n"])]
        row += [pm(100 * r[f"{m}_mean"], 100 * r[f"{m}_std"]) for m in ("AP", "AP50", "AP75", "PCK")]
        row.append(pm(r["err_hm_mean"], r["err_hm_std"], 2))
        if misses is not None:
            m = misses.loc[r["method"]] if r["method"] in misses.index else None
            row += ["" if m is None else f"{pm(100 * m[f'{c}_mean'], 100 * m[f'{c}_std'])} %"
                    for c in ("missed", "missed_as_twin")]
        rows.append(row)
    methods = [m for m in paper.TABLE1.index if m in set(summary["method"])]
    paper_row = [f"the paper (COCO, HRNet-W48): {' / '.join(SHORT_LABELS.get(m, m) for m in methods)}", "",
                 *([""] if chosen else [])]
    paper_row += [" / ".join(f"{paper.TABLE1.loc[m, c]:.1f}" for m in methods) for c in ("AP", "AP50", "AP75")]
    rows.append(paper_row + [""] * (len(header) - len(paper_row)))
    return md_table(header, rows, ("ll" if chosen else "l") + "r" * (len(header) - 1 - chosen))


def table1_ablations(t: Tables, scale: str) -> str | None:
    """Table 1's ablations at ``scale``: every (model, decoder) with its seeds, AP, AP75, PCK@0.1 (%) and error."""
    ablations = t.get(f"table1_ablations_{scale}")
    if ablations is None:
        return None
    rows = [[r["model"], r["decoder"], int(r["n"]), r["AP"], r["AP75"], r["PCK"], r["err_hm"]]
            for r in ablations.to_dict("records")]
    header = ["model", "decoder", "seeds", "AP", "AP75", "PCK@0.1", "error (heatmap px)"]
    return md_table(header, rows, "llrrrrr")


def table1_finding_placing(t: Tables, scale: str) -> str | None:
    """Finding vs placing at ``scale``: per model, the share of labelled joints found and the error (heatmap px) on
    the joints every model found (mean ± std over seeds), beside its target's oracle floor."""
    table = t.get(f"table1_finding_placing_{scale}")
    if table is None:
        return None
    rows = []
    for method, group in table.groupby("method", sort=False):
        rows.append([_target_label(t, scale, method), group["decoder"].iloc[0], len(group),
                     f"{pm(100 * group['found_share'].mean(), 100 * group['found_share'].std())} %",
                     pm(group["common_mean_err_hm"].mean(), group["common_mean_err_hm"].std(), 2),
                     pm(group["common_median_err_hm"].mean(), group["common_median_err_hm"].std(), 2),
                     num(group["oracle_mean_err_hm"].iloc[0], 2)])  # fmt: skip
    joints = int(table["common_joints"].iloc[0])
    header = ["model", "decoder", "seeds", "joints found (≤ 0.1 × size)", f"mean error, {joints} common joints",
              "median error, common joints", "oracle floor (mean)"]
    return md_table(header, rows, "llrrrrr")


def _shorten(label: str) -> str:
    """A model label for a comparison or an order: "Gaussian", "dot", "ours (supplier softplus)" for "Our method
    (supplier softplus)", "ours, repaired: head bias 0.1 at the start" for a repair's label without its parenthesis."""
    if label.startswith("ours, repaired:"):
        return label.split(" (")[0]
    for method in ("gaussian", "dot"):
        if label == paper.METHOD_LABELS[method]:
            return SHORT_LABELS[method]
    return "ours" + label[len("Our method"):] if label.startswith("Our method") else label


def _short_label(t: Tables, scale: str, method: str) -> str:
    """A Table 1 method's short name in a comparison: Gaussian, dot, ours (with the earlier-pick caveat of
    :func:`_label` where it applies), else the summary's label, shortened."""
    if method in ("gaussian", "dot") or (method == "hdm" and _ours(t, scale) is not None):
        return SHORT_LABELS[method]
    return _shorten(_method_label(t, scale, method))


def table1_paired(t: Tables, scale: str) -> str | None:
    """Every paired comparison of Table 1 at ``scale`` (``table1_paired_all``): the mean difference of AP, AP75,
    PCK@0.1 (points) and the error (heatmap px) over seeds, with its 95 % Student-t interval."""
    paired = t.get(f"table1_paired_all_{scale}")
    if paired is None:
        return None
    rows = []
    for comparison, group in paired.groupby("comparison", sort=False):
        a, b = comparison.split(" − ")
        at = group.set_index("metric")
        cells = [interval(at.loc[m]) for m in ("AP", "AP75", "PCK")] + [interval(at.loc["err_hm"], 1.0, 2)]
        rows.append([f"{_short_label(t, scale, a)} − {_short_label(t, scale, b)}", int(at["n"].iloc[0]), *cells])
    header = ["comparison (paired by seed)", "seeds", "AP", "AP75", "PCK@0.1", "error (heatmap px)"]
    return md_table(header, rows, "lrrrrr")


def table1_resolution(t: Tables, scale: str) -> str | None:
    """The heatmap-size screen at ``scale`` (``table1_resolution_64x48``): per model, PCK@0.1 and AP (%) and the
    mean error in original-image px (comparable across sizes) at this scale's size and at the paper's, then the
    order of the models by PCK@0.1 at each size."""
    table = t.get(f"table1_resolution_64x48_{scale}")
    if table is None:
        return None
    sizes = {size: table[table["size"] == size].iloc[0] for size in table["size"].unique()}
    names = {size: f"{r['heatmap'].replace('x', '×')}" for size, r in sizes.items()}
    header, rows, orders = ["model", "epochs"], [], {}
    for column, title in (("PCK", "PCK@0.1"), ("AP", "AP"), ("err_px", "error (image px)")):
        header += [f"{title}, {names[size]}" for size in sizes]
    for model, group in table.groupby("model", sort=False):
        at = group.set_index("size")
        row = [model, int(group["epochs"].iloc[0])]
        for column, scale_by, digits in (("PCK", 100, 1), ("AP", 100, 1), ("err_px", 1, 1)):
            row += [num(scale_by * at.loc[size, column], digits) if size in at.index else "" for size in sizes]
        rows.append(row)
        for size in sizes:
            if size in at.index:
                orders.setdefault(size, {})[model] = 100 * float(at.loc[size, "PCK"])
    text = md_table(header, rows, "lr" + "r" * (len(header) - 2))
    ranked = {size: rank_order({_shorten(model): pck for model, pck in values.items()}, digits=1)
              for size, values in orders.items()}
    same = len(set(ranked.values())) == 1
    text += ("\nOrder by PCK@0.1: " + "; ".join(f"{names[size]} heatmaps: {order}" for size, order in ranked.items())
             + (" (the same order at both sizes).\n" if same else " (the order changes with the heatmap size).\n"))
    return text


def table1_longer(t: Tables, scale: str) -> str | None:
    """The longer schedule at ``scale`` (``table1_longer_baseline``, seed 0): each model's validation AP (%) at the
    first epoch and every 5 epochs to the last; None for a table from before it had a ``model`` column."""
    table = t.get(f"table1_longer_baseline_{scale}")
    if table is None or "model" not in table:
        return None
    epochs = sorted({int(e) for e in table["from_epoch"]} | {int(e) for e in table["to_epoch"]})
    rows = []
    for model, group in table.groupby("model", sort=False):
        ap = dict(zip(group["from_epoch"].astype(int), group["start"])) | dict(zip(group["to_epoch"].astype(int),
                                                                                 group["end"]))
        rows.append([model, *[num(100 * ap[e]) if e in ap else "" for e in epochs]])
    return md_table(["model (seed 0)", *[f"AP, epoch {e}" for e in epochs]], rows, "l" + "r" * len(epochs))


def table1_stability(t: Tables, scale: str) -> str | None:
    """Whether each Table 1 model's optimisation settled (``table1_stability``), mean ± std over seeds: the training
    loss's rise from its minimum to the last epoch, the epoch of that minimum, the accuracy at its best epoch and at
    the last, and the head's gradient spread across epochs (max / median)."""
    table = t.get(f"table1_stability_{scale}")
    if table is None:
        return None
    rows = []
    for method, group in table.groupby("method", sort=False):
        rows.append([_target_label(t, scale, method), len(group),
                     f"{pm(100 * group['loss_rise'].mean(), 100 * group['loss_rise'].std())} %",
                     pm(group["min_epoch"].mean(), group["min_epoch"].std()),
                     f"{pm(100 * group['best'].mean(), 100 * group['best'].std())} (epoch "
                     f"{pm(group['best_epoch'].mean(), group['best_epoch'].std())})",
                     pm(100 * group["last"].mean(), 100 * group["last"].std()),
                     pm(group["head_grad_spread"].mean(), group["head_grad_spread"].std())])  # fmt: skip
    epochs = int(table["epochs"].max())
    header = ["model", "seeds", "training loss at the end, above its minimum", "epoch of the minimum",
              "PCK@0.1 at its best epoch", f"PCK@0.1 at epoch {epochs}", "head gradient, max / median over epochs"]
    return md_table(header, rows, "lrrrrrr")


def fig2_consistency(t: Tables, scale: str) -> str | None:
    """Fig. 2's consistency at ``scale``: per model and validation loss, Spearman ρ(loss, accuracy) and the
    inconsistent steps (the loss fell, the accuracy did not rise), mean ± std over seeds."""
    summary, runs = t.get(f"fig2_consistency_{scale}"), t.get(f"fig2_consistency_runs_{scale}")
    if summary is None:
        return None
    steps = f" (of {int(runs['epochs'].max()) - 1})" if runs is not None else ""
    rows = [[paper.label(r["setting"]) if "setting" in r else _label(t, scale, r["method"]), r["loss"],
             pm(r["spearman_mean"], r["spearman_std"], 3), pm(r["inconsistent_epochs_mean"], r["inconsistent_epochs_std"]),
             int(r["n"])]
            for r in summary.to_dict("records")]
    header = ["model", "validation loss", "Spearman ρ", f"inconsistent steps{steps}", "seeds"]
    return md_table(header, rows, "llrrr")


def dynamics_reading(t: Tables, scale: str) -> str | None:
    """The dynamics notebook's mechanism paragraph at ``scale`` (``readings.dynamics_reading``), from its per-epoch
    and sweep tables."""
    per_epoch, summary = t.get(f"hdm_dynamics_epochs_{scale}"), t.get(f"hdm_dynamics_sweep_{scale}")
    if per_epoch is None or summary is None:
        return None
    accuracy = sweep_accuracy(summary)
    return readings.dynamics_reading(per_epoch, summary, accuracy, scale) + "\n"


def dynamics_shift(t: Tables, scale: str) -> str | None:
    """The shift test at ``scale``: per model, the share of joints whose EMD falls when the map is lowered by 0.1 and
    0.5 × its peak, and the mean relative change of the EMD there and at the all-≤ 0 state (lowered by its peak)."""
    table = t.get(f"hdm_dynamics_shift_{scale}")
    if table is None:
        return None
    rows = []
    for variant, group in table.groupby("variant", sort=False):
        at = group.set_index("shift")
        cells = [f"{100 * at.loc[s, 'lowered_share']:.0f} %" if s in at.index else "" for s in (0.1, 0.5)]
        cells += [num(100 * at.loc[s, "mean_relative_change"], 1, signed=True) + " %" if s in at.index else ""
                  for s in (0.1, 0.5, 1.0)]  # fmt: skip
        no_positive = f"{100 * at.loc[0.0, 'no_positive_share']:.0f} %" if 0.0 in at.index else ""
        rows.append([f"`{variant}`", no_positive, *cells])
    header = ["model (seed 0)", "maps with no pixel > 0", "EMD lowered, 0.1 × peak", "EMD lowered, 0.5 × peak",
              "EMD change, 0.1", "EMD change, 0.5", "EMD change, all ≤ 0 (1 × peak)"]
    return md_table(header, rows, "lrrrrrr")


def table1_reading(t: Tables, scale: str) -> str | None:
    """Table 1's reading at ``scale`` (``readings.table1_reading``: the order of the methods, and the exact vs.
    entropic solver on the same maps), from its summary and solver tables."""
    summary = t.get(f"table1_summary_{scale}")
    if summary is None:
        return None
    text = readings.table1_reading(summary, scale, int(summary["n"].max()), paper.TABLE1,
                                   solver=t.get(f"table1_solver_agreement_{scale}"))
    if "split" in summary:
        text += (f" Reported on the {summary['split'].iloc[0]} split, each model's decoder chosen on validation ("
                 + ", ".join(f"{_method_label(t, scale, m)}: {d}" for m, d in zip(summary["method"], summary["decoder"]))
                 + ").")
    return text + "\n"


#: The oracle's columns: (heatmap kind, decoder, window or None) -> header.
ORACLE_COLUMNS = {("gaussian", "argmax_shift", None): "Gaussian target, argmax + shift",
                  ("dot", "argmax_shift", None): "dot target, argmax + shift",
                  ("subpixel_gaussian", "argmax_shift", None): "sub-pixel Gaussian, argmax + shift",
                  ("subpixel_dot", "local_com", 5.0): "sub-pixel dot, local centre of mass"}


def oracle(t: Tables, scale: str | None = None) -> str | None:
    """The oracle's AP per data set and heatmap size: what the evaluation path costs with ground-truth maps."""
    table = t.get("oracle")
    if table is None:
        return None
    rows = []
    for (data, heatmap), group in table.groupby(["dataset", "heatmap"], sort=False):
        row = [f"{data} ({int(group['persons'].iloc[0])} persons)", heatmap]
        for kind, decoder, window in ORACLE_COLUMNS:
            pick = group[(group["kind"] == kind) & (group["decoder"] == decoder)]
            if window is not None:
                pick = pick[np.isclose(pick["window"], window)]
            row.append(num(pick["AP"].iloc[0]) if len(pick) else "")
        rows.append(row)
    return md_table(["data", "heatmap (w×h)", *ORACLE_COLUMNS.values()], rows, "llrrrr")


#: Generated README tables: file stem -> (builder, per scale?).
HEADLINES = {"table1_summary": (table1_summary, True), "table1_ablations": (table1_ablations, True),
             "table1_finding_placing": (table1_finding_placing, True), "table1_paired": (table1_paired, True),
             "table1_resolution": (table1_resolution, True), "table1_longer": (table1_longer, True),
             "table1_stability": (table1_stability, True),
             "fig2_consistency": (fig2_consistency, True),
             "hdm_dynamics_reading": (dynamics_reading, True),
             "hdm_dynamics_shift": (dynamics_shift, True), "table1_reading": (table1_reading, True), "oracle": (oracle, False)}


def headline_tables(tables_dir, scales=None) -> dict[str, str]:
    """File name -> Markdown of every headline table whose source tables exist in ``tables_dir``."""
    t = Tables(tables_dir)
    scales = t.scales() if scales is None else list(scales)
    out = {}
    for stem, (build, per_scale) in HEADLINES.items():
        for scale in scales if per_scale else [None]:
            text = build(t, scale)
            if text is not None:
                out[f"{stem}_{scale}.md" if per_scale else f"{stem}.md"] = text
    return out


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(path, body) of every marked block of a README text."""
    return [(m["path"], m["body"]) for m in BLOCK.finditer(text)]


def embed(text: str, root) -> str:
    """``text`` with every marked block's body replaced by the current content of its file (under ``root``)."""
    root = Path(root)
    return BLOCK.sub(lambda m: (f"<!-- begin: {m['path']} -->\n{(root / m['path']).read_text()}"
                                f"<!-- end: {m['path']} -->"), text)
