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
from hdm.analysis.tables import Tables, md_table, num, pm
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
        mse = " + MSE" if r["method"] in ("gaussian", "dot") else ""
        row = [_method_label(t, scale, r["method"]) + mse, *([r["decoder"]] if chosen else []), int(r["n"])]
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
        mse = " + MSE" if method in ("gaussian", "dot") else ""
        rows.append([_method_label(t, scale, method) + mse, group["decoder"].iloc[0], len(group),
                     f"{pm(100 * group['found_share'].mean(), 100 * group['found_share'].std())} %",
                     pm(group["common_mean_err_hm"].mean(), group["common_mean_err_hm"].std(), 2),
                     pm(group["common_median_err_hm"].mean(), group["common_median_err_hm"].std(), 2),
                     num(group["oracle_mean_err_hm"].iloc[0], 2)])  # fmt: skip
    joints = int(table["common_joints"].iloc[0])
    header = ["model", "decoder", "seeds", "joints found (≤ 0.1 × size)", f"mean error, {joints} common joints",
              "median error, common joints", "oracle floor (mean)"]
    return md_table(header, rows, "llrrrrr")


def fig2_consistency(t: Tables, scale: str) -> str | None:
    """Fig. 2's consistency at ``scale``: per model and validation loss, Spearman ρ(loss, accuracy) and the
    inconsistent steps (the loss fell, the accuracy did not rise), mean ± std over seeds."""
    summary, runs = t.get(f"fig2_consistency_{scale}"), t.get(f"fig2_consistency_runs_{scale}")
    if summary is None:
        return None
    steps = f" (of {int(runs['epochs'].max()) - 1})" if runs is not None else ""
    rows = [[_label(t, scale, r["method"]), r["loss"], pm(r["spearman_mean"], r["spearman_std"], 3),
             pm(r["inconsistent_epochs_mean"], r["inconsistent_epochs_std"]), int(r["n"])]
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
             "table1_finding_placing": (table1_finding_placing, True),
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
