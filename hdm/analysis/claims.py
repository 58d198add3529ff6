"""The supplementary's claims, one function each, judged from the tables the notebooks write
(``results/tables/*_<scale>.csv``).

Each claim gets, per scale whose tables exist, a verdict word (``VERDICTS``), a detail, the key numbers (mean ± std
over seeds, paired 95 % intervals) and links to its tables. The rules are those of the notebooks' readings
(:mod:`hdm.analysis.readings`): strict orders after rounding to the printed 0.1, Fig. 2's :func:`fig2_claim_holds`,
Fig. 3's ``CONCENTRATION``. Nothing here reads a run, so the rows are rebuilt from committed results in seconds, and
a rerun's verdicts compared with them (:mod:`hdm.analysis.check`). The table and its command:
:mod:`hdm.analysis.verdicts`.
"""

from __future__ import annotations

import pandas as pd

from hdm import paper
from hdm.analysis import headlines
from hdm.analysis.readings import CONCENTRATION, SHORT_LABELS, fig2_claim_holds, paper_qualitative_rows
from hdm.analysis.stats import paired_difference, rank_order, strictly_ordered
from hdm.analysis.tables import Tables, interval, link, num, pm
from hdm.experiments import best_relu_variant, sweep_accuracy

#: Relative residual of eq. 4 under which it holds numerically (as ``theorem1_reading``).
TOL = 1e-9
#: The verdict words a claim can get; the check fails when a rerun changes one.
VERDICTS = ("reproduces", "does not reproduce", "cannot be judged", "not measured", "yes", "no")
COLUMNS = ["claim", "scale", "verdict", "detail", "numbers", "evidence"]


def _row(claim, scale, verdict, detail, numbers, evidence) -> dict:
    assert verdict in VERDICTS, verdict
    return dict(zip(COLUMNS, (claim, scale, verdict, detail, numbers, ", ".join(evidence))))


def _seeds(t: Tables, scale: str) -> int:
    summary = t.get(f"table1_summary_{scale}")
    return int(summary["n"].max()) if summary is not None and "n" in summary else 0


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"


# ---------------------------------------------------------------------------------------------------------
# One function per claim: (tables, scale) -> a row, or None when its tables are missing at that scale


def theorem1_algebra(t: Tables, scale: str) -> dict | None:
    steps, numeric = t.get(f"theorem1_eq6_steps_{scale}"), t.get(f"theorem1_numeric_{scale}")
    if steps is None:
        steps = t.get("theorem1_eq6_steps")  # tables committed before it was written per scale
    if steps is None or numeric is None:
        return None
    algebra = bool(steps["holds_under_eq5"].astype(bool).all() and steps["gram_holds_under_eq5"].astype(bool).all())
    needing = steps.loc[~steps["identity"].astype(bool), "step"].tolist()
    holds = numeric.loc[numeric["eq5_gap"].idxmin()]
    relative = float(holds["relative_residual"])
    ok = algebra and relative < TOL
    return _row("Theorem 1 (eq. 4) follows from eq. 5", scale, "reproduces" if ok else "does not reproduce",
                "exactly (it is algebra)" if ok else "",
                f"sympy: every step of eq. 6 holds under eq. 5, only {', '.join(needing) or 'none'} needs it; "
                f"relative residual of eq. 4 on a seed-0 Gaussian model's predictions with HRNet targets {relative:.1e}",
                [link(f"theorem1_eq6_steps_{scale}", "eq. 6 steps"), link(f"theorem1_numeric_{scale}")])


def theorem1_converse(t: Tables, scale: str) -> dict | None:
    numeric = t.get(f"theorem1_numeric_{scale}")
    if numeric is None:
        return None
    fails = numeric.loc[numeric["eq5_gap"].idxmax()]
    gap, residual = float(fails["eq5_gap"]), float(fails["residual"])
    ratio = residual / (2 * gap) if gap else float("nan")
    ok = bool(gap > 0 and float(fails["relative_residual"]) >= TOL and abs(ratio - 1) < 1e-6)
    return _row("eq. 4 fails when eq. 5 fails", scale, "reproduces" if ok else "does not reproduce",
                f"residual = {ratio:.3f} × 2 × eq. 5 gap" if gap else "",
                f"sub-pixel-centred Gaussians: eq. 5 gap {gap:.3f}, eq. 4 residual {residual:.3f} per image "
                f"(the targets decide it, not the model)", [link(f"theorem1_numeric_{scale}")])


def _table1_means(t: Tables, scale: str, metric: str) -> dict[str, float] | None:
    summary = t.get(f"table1_summary_{scale}")
    if summary is None or f"{metric}_mean" not in summary:
        return None
    means = summary.set_index("method")
    return {m: 100 * float(means.loc[m, f"{metric}_mean"]) for m in paper.TABLE1.index if m in means.index}


def _table1_values(t: Tables, scale: str, metric: str, methods) -> str:
    """"m ± s / m ± s / ..." of ``metric`` (%) for ``methods``."""
    means = t.get(f"table1_summary_{scale}").set_index("method")
    return " / ".join(pm(100 * means.loc[m, f"{metric}_mean"], 100 * means.loc[m, f"{metric}_std"]) for m in methods)


def table1_order(t: Tables, scale: str) -> dict | None:
    ap = _table1_means(t, scale, "AP")
    if ap is None or len(ap) < 3:
        return None
    paper_order = sorted(ap, key=lambda m: -paper.TABLE1.loc[m, "AP"])
    ok = strictly_ordered(ap, paper_order, digits=1)
    detail = f"{rank_order(ap, SHORT_LABELS, digits=1)} (AP)"
    pck = _table1_means(t, scale, "PCK")
    methods = list(ap)
    numbers = f"AP {_table1_values(t, scale, 'AP', methods)}"
    if pck is not None:
        detail += f", {rank_order(pck, SHORT_LABELS, digits=1)} (PCK)"
        numbers += f", PCK@0.1 {_table1_values(t, scale, 'PCK', methods)}"
    numbers += f" ({' / '.join(SHORT_LABELS.get(m, m) for m in methods)}, %, {_seeds(t, scale)} seeds{_split(t, scale)})"
    paired = t.get(f"table1_paired_difference_{scale}")
    if paired is not None:
        rows = paired.set_index("metric")
        parts = [f"{m} {interval(rows.loc[m])}" for m in ("AP", "PCK") if m in rows.index]
        numbers += f"; ours − Gaussian, paired by seed (95 %): {', '.join(parts)}"
    ours = headlines._ours(t, scale)
    if ours not in (None, "hdm"):
        numbers += f"; ours = `{ours}`"
    return _row("Table 1: ours > Gaussian > dot", scale, "reproduces" if ok else "does not reproduce", detail,
                numbers, [link(f"table1_{scale}"), link(f"table1_paired_difference_{scale}", "paired")])


def dot_below_gaussian(t: Tables, scale: str) -> dict | None:
    ap = _table1_means(t, scale, "AP")
    if ap is None or not {"gaussian", "dot"} <= set(ap):
        return None
    ok = strictly_ordered(ap, ["gaussian", "dot"], digits=1)
    numbers = (f"AP {num(ap['gaussian'])} vs {num(ap['dot'])} (the paper: {paper.TABLE1.loc['gaussian', 'AP']:.1f} "
               f"vs {paper.TABLE1.loc['dot', 'AP']:.1f})")
    runs = t.get(f"table1_runs_{scale}")
    if runs is not None and {"gaussian", "dot"} <= set(runs["method"]):
        diff = paired_difference(runs, [m for m in ("AP", "AP75") if m in runs], "dot", "gaussian").set_index("metric")
        if diff["n"].min() > 1:
            numbers += "; dot − Gaussian, paired by seed (95 %): " + ", ".join(
                f"{m} {interval(diff.loc[m])}" for m in diff.index)
    return _row("dot targets lose to Gaussian ones under MSE", scale, "reproduces" if ok else "does not reproduce",
                "", numbers, [link(f"table1_summary_{scale}"), link(f"table1_runs_{scale}")])


def fig2_tracking(t: Tables, scale: str) -> dict | None:
    summary, runs = t.get(f"fig2_consistency_{scale}"), t.get(f"fig2_consistency_runs_{scale}")
    if summary is None:
        return None

    def row(method, loss):
        found = summary[(summary["method"] == method) & (summary["loss"] == loss)]
        return None if found.empty else found.iloc[0]

    a, b = row("gaussian", "pixel-wise MSE"), row("hdm", "ours (EMD)")
    if a is None or b is None:
        return None
    holds = fig2_claim_holds(a, b)
    epochs = int(runs["epochs"].max()) if runs is not None else None
    if epochs is not None and epochs < 3:
        holds = None
    verdict = "cannot be judged" if holds is None else "reproduces" if holds else "does not reproduce"
    steps = f" of {epochs - 1}" if epochs else ""
    ours = b["setting"] if "setting" in b else headlines._ours(t, scale)  # the table's own record, where it has one
    ours = f"`{ours}`" if ours is not None else "the earlier sweep's pick"
    numbers = (f"Spearman ρ(validation loss, accuracy): MSE of the Gaussian model {pm(a.spearman_mean, a.spearman_std, 3)}"
               f", our loss of our model ({ours}) {pm(b.spearman_mean, b.spearman_std, 3)}; inconsistent steps "
               f"{pm(a.inconsistent_epochs_mean, a.inconsistent_epochs_std)} vs "
               f"{pm(b.inconsistent_epochs_mean, b.inconsistent_epochs_std)}{steps} ({int(b.n)} seeds)")
    others = summary[~summary["method"].isin(["gaussian", "hdm"]) & (summary["loss"] == "ours (EMD)")]
    for r in others.itertuples():
        numbers += (f"; `{r.method}` ({int(r.n)} seed{'s' * (int(r.n) != 1)}): ρ "
                    f"{pm(r.spearman_mean, r.spearman_std, 3)}, {pm(r.inconsistent_epochs_mean, r.inconsistent_epochs_std)} steps")
    detail = ("our loss does not track accuracy better than MSE (ρ closer to −1 and fewer inconsistent steps)" if holds is False
              else f"only {epochs} epochs" if holds is None and epochs is not None and epochs < 3 else "")
    return _row("Fig. 2: our loss tracks accuracy, MSE does not", scale, verdict, detail, numbers,
                [link(f"fig2_consistency_{scale}"), link(f"fig2_consistency_runs_{scale}", "per run")])


def fig1_picks(t: Tables, scale: str) -> dict | None:
    coords = t.get(f"fig1_coordinates_{scale}")
    if coords is None:
        return None
    base, ours = coords["baseline error px"], coords["ours error px"]
    reported = paper_qualitative_rows()
    paper_closer = reported["ours error px"].mean() < reported["baseline error px"].mean()
    agrees = (ours.mean() < base.mean()) == paper_closer
    n = len(coords)
    return _row("Fig. 1: ours localises better than the baseline", scale, "not measured",
                f"by {n} picks (Table 1 measures it)",
                f"seed-0 models, {n} random picks, mean error (original-image px): baseline {base.mean():.1f}, ours {ours.mean():.1f}; "
                f"ours closer on {int((ours < base).sum())} of {n}; the direction "
                f"{'agrees' if agrees else 'does not agree'} with the paper's rows",
                [link(f"fig1_coordinates_{scale}")])


def fig3_occlusion(t: Tables, scale: str) -> dict | None:
    split = t.get(f"fig3_error_by_visibility_{scale}")
    if split is None:
        return None

    def occluded(model):
        rows = split[(split["model"] == model) & (split["visibility"] == "occluded")]
        if rows.empty:
            return None
        r = rows.iloc[0]
        return r, r["share_of_worst"] / r["share_of_joints"]

    ours, base = occluded("ours"), occluded("baseline")
    if ours is None:
        return _row("Fig. 3: failures are occluded joints", scale, "cannot be judged", "no occluded joint", "",
                    [link(f"fig3_error_by_visibility_{scale}")])
    row, ratio = ours
    concentrate = bool(ratio >= CONCENTRATION)
    numbers = (f"seed-0 models; occluded joints: {_percent(row['share_of_joints'])} of the labelled joints, "
               f"{_percent(row['share_of_worst'])} of our model's worst ({ratio:.2f}×; ≥ {CONCENTRATION:g}× counts as "
               "a concentration)")
    detail = ""
    if base is not None:
        numbers += f"; the baseline's worst: {_percent(base[0]['share_of_worst'])} ({base[1]:.2f}×)"
        if bool(base[1] >= CONCENTRATION) != concentrate:
            detail = f"for ours; the baseline's failures {'do' if base[1] >= CONCENTRATION else 'do not'} concentrate"
    return _row("Fig. 3: failures are occluded joints", scale, "reproduces" if concentrate else "does not reproduce",
                detail, numbers, [link(f"fig3_error_by_visibility_{scale}")])


def relu_trains(t: Tables, scale: str) -> dict | None:
    sweep, epochs = t.get(f"hdm_dynamics_sweep_{scale}"), t.get(f"hdm_dynamics_epochs_{scale}")
    if sweep is None:
        return None
    accuracy = sweep_accuracy(sweep)
    rows = sweep.set_index("variant")
    soft = "hdm+supplier:softplus"
    if "hdm" not in rows.index or soft not in rows.index:
        return None
    best = best_relu_variant(sweep, accuracy)
    value = {v: 100 * float(rows.loc[v, f"{accuracy}_mean"]) for v in ("hdm", soft, best)}
    trains = value[best] >= value[soft]
    last = f" after {int(epochs['epoch'].max())} epochs" if epochs is not None else ""
    numbers = f"dynamics screen{last} (seed 0): {accuracy} relu {num(value['hdm'])}, softplus {num(value[soft])}"
    if best != "hdm":
        numbers += f", best relu setting `{best}` {num(value[best])}"
    summary = t.get(f"table1_summary_{scale}")
    if summary is not None and f"{accuracy}_mean" in summary and "hdm" in set(summary["method"]):
        r = summary.set_index("method").loc["hdm"]
        numbers += (f"; Table 1's schedule: ours {pm(100 * r[f'{accuracy}_mean'], 100 * r[f'{accuracy}_std'])} "
                    f"({int(r['n'])} seeds)")
        ablations = t.get(f"table1_ablations_{scale}")
        label = paper.label(soft)
        if soft in set(summary["method"]):
            r = summary.set_index("method").loc[soft]
            numbers += f", softplus {pm(100 * r[f'{accuracy}_mean'], 100 * r[f'{accuracy}_std'])} ({int(r['n'])} seeds)"
        elif ablations is not None and accuracy in ablations and label in set(ablations["model"]):
            a = ablations[ablations["model"] == label].iloc[0]
            numbers += f", softplus {a[accuracy]} ({int(a['n'])} seed{'s' * (int(a['n']) != 1)})"
    return _row("(ours, diagnosed) relu suppliers train as well as softplus ones", scale, "yes" if trains else "no",
                "", numbers, [link(f"hdm_dynamics_sweep_{scale}"), link(f"hdm_dynamics_epochs_{scale}", "per epoch")])


def _split(t: Tables, scale: str) -> str:
    """" on the test split" when Table 1 at ``scale`` reports a split, else ""."""
    summary = t.get(f"table1_summary_{scale}")
    return f" on the {summary['split'].iloc[0]} split" if summary is not None and "split" in summary else ""


def _labels(t: Tables, scale: str) -> dict[str, str]:
    """Table 1's method keys -> their labels (the summary's ``label`` column; SHORT_LABELS for older tables)."""
    summary = t.get(f"table1_summary_{scale}")
    labels = dict(SHORT_LABELS)
    if summary is not None and "label" in summary:
        labels.update({m: l for m, l in zip(summary["method"], summary["label"]) if m not in SHORT_LABELS})
    return labels


def finding_placing(t: Tables, scale: str) -> dict | None:
    table, paired = t.get(f"table1_finding_placing_{scale}"), t.get(f"table1_finding_placing_paired_{scale}")
    if table is None or paired is None:
        return None
    labels = _labels(t, scale)
    models = [m for m in dict.fromkeys(table["method"]) if m.startswith("hdm")]
    rows = paired.set_index(["comparison", "metric"])
    placed = {m: rows.loc[(f"{m} − gaussian", "common_mean_err_hm")] for m in models
              if (f"{m} − gaussian", "common_mean_err_hm") in rows.index}
    if not placed or int(table["common_joints"].iloc[0]) == 0:
        return None
    better = [m for m, r in placed.items() if r["high"] < 0]
    worse = [m for m, r in placed.items() if r["low"] > 0]
    verdict = "yes" if better else "no" if len(worse) == len(placed) else "cannot be judged"
    means = table.groupby("method", sort=False)
    found = means["found_share"].agg(["mean", "std"])
    error = means["common_mean_err_hm"].agg(["mean", "std"])
    order = list(dict.fromkeys(table["method"]))
    numbers = ("found " + " / ".join(pm(100 * found.loc[m, "mean"], 100 * found.loc[m, "std"]) for m in order)
               + " %; mean error on the " + f"{int(table['common_joints'].iloc[0])} joints every model found "
               + " / ".join(pm(error.loc[m, "mean"], error.loc[m, "std"], 2) for m in order)
               + f" heatmap px ({' / '.join(labels.get(m, m) for m in order)}{_split(t, scale)}); − Gaussian, "
               + "paired (95 %): " + ", ".join(f"{labels.get(m, m)} {interval(r, 1.0, 2)} px" for m, r in placed.items()))
    detail = ("placed more precisely by " + ", ".join(labels.get(m, m) for m in better) if better
              else "placed less precisely" if verdict == "no" else "no difference beyond the seed spread")
    return _row("(ours, diagnosed) distribution matching places the joints it finds more precisely than Gaussian "
                "targets", scale, verdict, detail, numbers,
                [link(f"table1_finding_placing_{scale}"), link(f"table1_finding_placing_paired_{scale}", "paired")])


def repair_trains(t: Tables, scale: str) -> dict | None:
    summary, paired = t.get(f"table1_summary_{scale}"), t.get(f"table1_paired_all_{scale}")
    if summary is None or paired is None or "label" not in summary:
        return None
    repaired = summary[summary["label"].str.contains("repaired")]
    if repaired.empty:
        return None
    repair = str(repaired["method"].iloc[0])
    rows = paired.set_index(["comparison", "metric"])
    against = [(ref, rows.loc[(f"{repair} − {ref}", "AP")]) for ref in ("hdm", "gaussian", "hdm+supplier:softplus")
               if (f"{repair} − {ref}", "AP") in rows.index]
    if not against:
        return None
    versus_ours = dict(against).get("hdm")
    verdict = "cannot be judged" if versus_ours is None else "yes" if versus_ours["low"] > 0 else "no"
    labels = _labels(t, scale)
    r = repaired.iloc[0]
    numbers = (f"{r['label']}: AP {pm(100 * r['AP_mean'], 100 * r['AP_std'])}, PCK@0.1 "
               f"{pm(100 * r['PCK_mean'], 100 * r['PCK_std'])} ({int(r['n'])} seeds{_split(t, scale)}); AP paired "
               "(95 %): " + ", ".join(f"− {SHORT_LABELS.get(ref, labels.get(ref, ref))} {interval(row)}"
                                      for ref, row in against))
    return _row("(ours, repaired) a repair keeping relu + normalisation trains better than ours", scale, verdict, "",
                numbers, [link(f"table1_summary_{scale}"), link(f"table1_paired_all_{scale}", "paired")])


#: The claims every result scale measures, in the order of the table.
CORE_CLAIMS = (theorem1_algebra, theorem1_converse, table1_order, dot_below_gaussian, fig2_tracking, fig1_picks,
               fig3_occlusion, relu_trains)
#: Issue 19's diagnoses, judged where their tables exist (the repairs are screened at the smoke and long scales only).
DIAGNOSES = (finding_placing, repair_trains)
CLAIMS = CORE_CLAIMS + DIAGNOSES


def verdict_rows(scale: str, tables_dir) -> pd.DataFrame:
    """One row per claim whose tables exist at ``scale`` in ``tables_dir``: claim, scale, verdict (one of
    ``VERDICTS``), detail, numbers, evidence (Markdown links)."""
    t = tables_dir if isinstance(tables_dir, Tables) else Tables(tables_dir)
    rows = [row for claim in CLAIMS if (row := claim(t, scale)) is not None]
    return pd.DataFrame(rows, columns=COLUMNS)
