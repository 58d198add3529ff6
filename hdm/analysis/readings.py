"""The "Reading" paragraph under each figure and Table 1 beside the paper: functions of the numbers that return
Markdown, whose verdict ("holds" / "does not hold") is computed, never typed (:func:`fig2_reading`,
:func:`table1_reading`, :func:`theorem1_reading`, :func:`fig1_reading`, :func:`fig3_reading`,
:func:`dynamics_reading`), and the claim tests they rest on (:func:`fig2_claim_holds`, ``CONCENTRATION``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdm import paper
from hdm.analysis.stats import mean_std_strings, rank_order, strictly_ordered
from hdm.experiments import REPAIRS, STRICT_SCREEN, best_relu_variant, best_repair


#: Short method names in the readings and the verdict table.
SHORT_LABELS = {"gaussian": "Gaussian", "dot": "dot", "hdm": "ours"}


def _verdict(ok: bool | None, yes: str = "holds", no: str = "does not hold", unknown: str = "cannot be judged") -> str:
    return f"**{unknown if ok is None else yes if ok else no}**"


def _pm(mean: float, std: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} (± {std:.{digits}f})"


def table1_beside_paper(summary: pd.DataFrame, reported: pd.DataFrame | None = None,
                        methods: tuple[str, ...] = ("gaussian", "dot", "hdm"), source: str = "ours",
                        paper_source: str = "paper (COCO, W48)", scale: float = 100.0, digits: int = 1,
                        labels: dict[str, str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Our rows ("mean ± std" of the paper's metrics × ``scale``, from :func:`summarise_over_seeds` by ``method``)
    and the paper's rows (``reported``, default ``paper.TABLE1``, indexed by method), as strings.

    Rows follow ``methods`` (the paper's order), ours before the paper's for each; a method that one side lacks has
    only the other side's row. Columns: method (readable label), source, then the paper's metric columns.
    """
    reported = paper.TABLE1 if reported is None else reported
    labels = paper.METHOD_LABELS if labels is None else labels
    metrics = list(reported.columns)
    ours = pd.concat([summary[["method"]], mean_std_strings(summary, metrics, scale=scale, digits=digits)], axis=1)
    ours = ours.set_index("method")
    rows = []
    for method in methods:
        label = labels.get(method, method)
        if method in ours.index:
            rows.append({"method": label, "source": source, **ours.loc[method, metrics].to_dict()})
        if method in reported.index:
            rows.append({"method": label, "source": paper_source,
                         **{m: f"{reported.loc[method, m]:.{digits}f}" for m in metrics}})
    return pd.DataFrame(rows, columns=["method", "source", *metrics])


def fig2_claim_holds(reference: pd.Series, ours: pd.Series) -> bool | None:
    """Fig. 2's claim on two rows of the seed summary: our loss tracks accuracy better than MSE does, i.e. a mean
    Spearman ρ closer to −1 *and* fewer inconsistent epochs on average. None when a ρ is undefined (NaN)."""
    if np.isnan(reference["spearman_mean"]) or np.isnan(ours["spearman_mean"]):
        return None
    return bool(ours["spearman_mean"] < reference["spearman_mean"]
                and ours["inconsistent_epochs_mean"] < reference["inconsistent_epochs_mean"])


def fig2_reading(summary: pd.DataFrame, accuracy: str, scale: str, n_seeds: int, epochs: tuple[int, int],
                 reference: tuple[str, str] = ("gaussian", "pixel-wise MSE"),
                 ours: tuple[str, str] = ("hdm", "ours (EMD)")) -> str:  # fmt: skip
    """Fig. 2's reading from :func:`summarise_over_seeds` of :func:`consistency_table` (by method and loss).

    ``reference`` and ``ours``: the (method, loss label) rows of panels (a) and (b). ``epochs``: the (first, last)
    epochs compared; fewer than three cannot judge the claim.
    """
    def row(method, loss):
        found = summary[(summary["method"] == method) & (summary["loss"] == loss)]
        if found.empty:
            raise KeyError(f"no summary row for method {method!r} and loss {loss!r}")
        return found.iloc[0]

    a, b = row(*reference), row(*ours)
    holds = fig2_claim_holds(a, b)
    why = " (a correlation is undefined: the loss or the accuracy is constant)" if holds is None else ""
    if epochs[1] - epochs[0] < 2:  # two epochs: ρ is ±1 and at most one step can be inconsistent, whatever the loss
        holds, why = None, f" with only {epochs[1] - epochs[0] + 1} epochs (ρ over two points is ±1)"
    return (
        f"**Reading ({scale} scale, {n_seeds} seed{'s' * (n_seeds != 1)}, epochs {epochs[0]}–{epochs[1]}).** "
        f"Panel (a), {reference[1]} of the {SHORT_LABELS.get(reference[0], reference[0])}-trained model: Spearman "
        f"ρ(loss, {accuracy}) = {_pm(a.spearman_mean, a.spearman_std)}; the loss fell while {accuracy} did "
        f"not rise in {a.inconsistent_epochs_mean:.1f} epochs on average. Panel (b), {ours[1]} for our model: "
        f"ρ = {_pm(b.spearman_mean, b.spearman_std)}, {b.inconsistent_epochs_mean:.1f} such epochs. The "
        f"paper's claim ((b) tracks accuracy better than (a): ρ closer to −1 and fewer inconsistent epochs) "
        f"{_verdict(holds)} here{why}."
    )


def table1_reading(summary: pd.DataFrame, scale: str, n_seeds: int, reported: pd.DataFrame | None = None,
                   metric: str = "AP", secondary: str | None = "PCK", solver: pd.DataFrame | None = None) -> str:
    """Table 1's reading: our ``metric`` per method (× 100, one decimal, as the paper prints it) and whether the
    paper's order of the methods (strict, from ``reported``, default ``paper.TABLE1``) is reproduced; differences
    below the printed 0.1 count as ties. ``secondary``: a metric whose order is compared with the paper's too (box
    PCK, informative where AP is near 0). ``solver``: :func:`solver_agreement` rows with a ``model`` column."""
    reported = paper.TABLE1 if reported is None else reported
    means = summary.set_index("method")
    methods = [m for m in reported.index if m in means.index]
    if len(methods) < 2:
        raise ValueError(f"need at least two of the paper's methods {list(reported.index)}, got {list(means.index)}")
    theirs = reported.loc[methods, metric].astype(float).to_dict()
    paper_order = sorted(methods, key=lambda m: -theirs[m])
    ours = {m: 100 * float(means.loc[m, f"{metric}_mean"]) for m in methods}
    reproduced = strictly_ordered(ours, paper_order, digits=1)
    text = (
        f"**Reading ({scale} scale, {n_seeds} seed{'s' * (n_seeds != 1)}).** {metric}: "
        + ", ".join(f"{SHORT_LABELS.get(m, m)} {ours[m]:.1f}" for m in methods)
        + f" (order {rank_order(ours, SHORT_LABELS, digits=1)}). The paper reports "
        + " / ".join(f"{theirs[m]:.1f}" for m in methods)
        + f" ({rank_order(theirs, SHORT_LABELS)}) on COCO with HRNet-W48; its ordering "
        + _verdict(reproduced, "is reproduced", "is not reproduced") + " here."
    )
    if secondary and f"{secondary}_mean" in means.columns:
        second = {m: 100 * float(means.loc[m, f"{secondary}_mean"]) for m in methods}
        agrees = strictly_ordered(second, paper_order, digits=1)
        text += (f" By {secondary} (%): " + ", ".join(f"{SHORT_LABELS.get(m, m)} {second[m]:.1f}" for m in methods)
                 + f", order {rank_order(second, SHORT_LABELS, digits=1)}, which "
                 + _verdict(agrees, "agrees", "does not agree") + f" with the paper's {metric} order.")
    if solver is not None and not solver.empty:
        finest = solver[solver["eps"] == solver["eps"].min()]
        parts = [f"{r.model}: Sinkhorn exceeds the exact loss by {r.relative_excess:.1%}, gradient cosine "
                 f"{r.gradient_cosine:.3f}" for r in finest.itertuples()]
        text += f" Exact vs. entropic solver at ε = {finest['eps'].iloc[0]:g} px: " + "; ".join(parts) + "."
    return text


def theorem1_reading(symbolic: dict, eq5_holds: dict, eq5_fails: dict, dataset: dict, tol: float = 1e-9) -> str:
    """Theorem 1's reading.

    Args:
        symbolic: ``theory.symbolic_check()``. eq5_holds, eq5_fails: ``theory.theorem1_terms`` with HRNet targets
            (Gaussian peak 1 at the dot: eq. 5 holds) and with sub-pixel-centred Gaussians (eq. 5 fails).
        dataset: ``theory.dataset_eq5_violation``. tol: relative residual below which eq. 4 holds numerically.
    """
    factor = symbolic["factor"]
    algebra = bool(symbolic["residual_is_factor_times_gap"] and symbolic["zero_under_eq5"])
    holds = eq5_holds["relative_residual"] < tol
    fails = eq5_fails["relative_residual"] >= tol
    gap = eq5_fails["eq5_gap"]
    ratio = eq5_fails["residual"] / (float(factor) * gap) if gap else float("nan")
    return (
        f"**Reading.** sympy finds lhs − rhs = {factor} × (‖H_dot‖² − ⟨H_Gau, H_dot⟩), so eq. 4 holds exactly "
        f"when eq. 5 does: this {_verdict(algebra, 'is confirmed', 'is not confirmed')} symbolically. On real "
        f"predictions with HRNet targets (eq. 5 holds) eq. 4 {_verdict(holds)} numerically (relative residual "
        f"{eq5_holds['relative_residual']:.1e}). With sub-pixel-centred Gaussians eq. 5 fails (mean gap per joint "
        f"{dataset['mean_gap_per_joint']:.4f}, max {dataset['max_gap']:.4f}; {dataset['uniform_reference']:.4f} for a "
        f"joint uniform over its pixel) and eq. 4 {_verdict(not fails, 'still holds', 'fails')}: relative residual "
        f"{eq5_fails['relative_residual']:.1e}, {ratio:.3f} × the predicted {factor} × gap, an eq. 4 residual of "
        f"{dataset['eq4_residual_per_image']:.3f} per image over the dataset."
    )


def paper_qualitative_rows(rows: dict | None = None) -> pd.DataFrame:
    """The supplementary's Fig. 1 (default) or Fig. 3 rows (``paper.FIG1_ROWS`` / ``FIG3_ROWS``: joint -> (baseline,
    ours, GT) image px) with each prediction's error in px, as the columns ``plots.qualitative_grid`` returns."""
    rows = paper.FIG1_ROWS if rows is None else rows
    return pd.DataFrame([{"joint": joint, "baseline (x, y)": f"({b[0]:.1f}, {b[1]:.1f})",
                          "ours (x, y)": f"({o[0]:.1f}, {o[1]:.1f})", "GT (x, y)": f"({g[0]:.1f}, {g[1]:.1f})",
                          "baseline error px": float(np.hypot(*np.subtract(b, g))),
                          "ours error px": float(np.hypot(*np.subtract(o, g)))}
                         for joint, (b, o, g) in rows.items()])  # fmt: skip


def fig1_reading(coords: pd.DataFrame, reported: pd.DataFrame | None = None) -> str:
    """Fig. 1's reading: mean error of the baseline and ours over the picks (``plots.qualitative_grid``'s table),
    how many picks ours gets closer, and whether the direction agrees with the paper's rows
    (:func:`paper_qualitative_rows`)."""
    reported = paper_qualitative_rows() if reported is None else reported
    base, ours = coords["baseline error px"], coords["ours error px"]
    paper_base, paper_ours = reported["baseline error px"].mean(), reported["ours error px"].mean()
    ours_better, paper_better = ours.mean() < base.mean(), paper_ours < paper_base
    return (
        f"**Reading.** Mean error over these {len(coords)} picks: baseline {base.mean():.2f} px, ours "
        f"{ours.mean():.2f} px; ours is closer on {int((ours < base).sum())} of {len(coords)}. The paper's rows: "
        f"{paper_base:.1f} vs {paper_ours:.1f} px (ours {'closer' if paper_better else 'not closer'}, "
        f"{int((reported['ours error px'] < reported['baseline error px']).sum())} of {len(reported)}). The direction "
        f"{_verdict(ours_better == paper_better, 'agrees', 'does not agree')} with the paper's "
        f"(a few picks illustrate, they do not measure: Table 1 does)."
    )


#: Fig. 3: occluded joints "concentrate" among the worst when their share there is at least this many times their
#: share among all labelled joints (a ratio near 1 is what chance gives).
CONCENTRATION = 1.25


def fig3_reading(split: pd.DataFrame, worst_share: float, model: str = "ours", baseline: str = "baseline") -> str:
    """Fig. 3's reading from :func:`error_by_visibility` of both models (a ``model`` column): do our model's worst
    ``worst_share`` of joints concentrate on occluded joints (a share at least ``CONCENTRATION`` times their share
    among all labelled joints)?"""
    def occluded(label):
        row = split[(split["model"] == label) & (split["visibility"] == "occluded")]
        return None if row.empty else row.iloc[0]

    ours = occluded(model)
    if ours is None:
        return ("**Reading.** No joint is labelled occluded (visibility 1) here, so whether failures concentrate on "
                f"occluded joints {_verdict(None, unknown='cannot be tested')} (the supplementary's Fig. 3 shows "
                "failures under severe occlusion).")
    ratio = ours["share_of_worst"] / ours["share_of_joints"] if ours["share_of_joints"] > 0 else float("nan")
    concentrate = None if np.isnan(ratio) else bool(ratio >= CONCENTRATION)
    text = (f"**Reading.** Occluded joints are {ours['share_of_joints']:.0%} of the labelled joints and "
            f"{ours['share_of_worst']:.0%} of our model's worst {worst_share:.0%} ({ratio:.2f}× their share; we call "
            f"≥ {CONCENTRATION:g}× a concentration): here failures {_verdict(concentrate, 'do', 'do not')} "
            "concentrate on occluded joints")
    base = occluded(baseline)
    if base is not None:
        text += f" (baseline: {base['share_of_worst']:.0%} of its worst)"
    return text + " — the supplementary's Fig. 3 shows failures under severe occlusion."


def dynamics_reading(per_epoch: pd.DataFrame, summary: pd.DataFrame, accuracy: str, scale: str,
                     key: str = "variant") -> str:  # fmt: skip
    """The mechanism paragraph, from the numbers: after the first epoch and at the end, relu vs softplus (and
    softmax where run): dead share near the joints, supplier mass, head gradient, accuracy; then the best relu
    setting of the sweep against the default; where the mechanism screens ran, the strict mode's and the best
    repair's final accuracy beside guarded relu's (and the strict mode's share of validation maps with no pixel > 0).
    Each comparison is stated as the numbers have it."""
    def at(variant, epoch, column):
        rows = per_epoch[(per_epoch[key] == variant) & (per_epoch["epoch"] == epoch)]
        return float(rows[column].mean()) if len(rows) else float("nan")

    last = int(per_epoch["epoch"].max())
    relu, soft = "hdm", "hdm+supplier:softplus"
    if not {relu, soft} <= set(per_epoch[key]):
        raise ValueError(f"the reading compares {relu!r} with {soft!r}: run both")
    dead = {v: (at(v, 1, "dead_share"), at(v, last, "dead_share")) for v in (relu, soft)}
    mass = {v: (at(v, 1, "supplier_mass"), at(v, last, "supplier_mass")) for v in (relu, soft)}
    grad = {v: at(v, 1, "head_grad") for v in (relu, soft)}
    acc = {v: at(v, last, accuracy) for v in (relu, soft)}
    deader = dead[relu][0] > dead[soft][0]
    weaker = acc[relu] < acc[soft]
    best = best_relu_variant(summary, accuracy, key)
    by_variant = summary.set_index(key)
    best_acc, base_acc = float(by_variant.loc[best, f"{accuracy}_mean"]), float(by_variant.loc[relu, f"{accuracy}_mean"])
    text = (
        f"**Mechanism ({scale} scale).** After epoch 1, {100 * dead[relu][0]:.0f} % of the pixels within 2 px of a "
        f"joint are ≤ 0 in the relu-trained model's maps (softplus-trained: {100 * dead[soft][0]:.0f} %); relu gives "
        f"those pixels no gradient, so the loss can raise the map around a joint only through pixels already "
        f"positive. The relu suppliers' mass Σ relu(h) per joint is {mass[relu][0]:.3g} after epoch 1 and "
        f"{mass[relu][1]:.3g} at epoch {last} (softplus-trained maps: {mass[soft][0]:.3g} → {mass[soft][1]:.3g}); "
        f"the head's gradient norm in epoch 1 is {grad[relu]:.3g} with relu and {grad[soft]:.3g} with softplus. "
        f"At epoch {last}, {accuracy} is {100 * acc[relu]:.1f} with relu and {100 * acc[soft]:.1f} with softplus: "
        f"relu's maps {'are' if deader else 'are not'} deader near the joints and relu "
        f"{'trains worse' if weaker else 'does not train worse'} here. "
    )
    if best == relu:
        text += f"No swept setting beats relu's defaults ({accuracy} {100 * base_acc:.1f})."
    else:
        text += (f"The best relu setting of the sweep is `{best}` ({accuracy} {100 * best_acc:.1f} against "
                 f"{100 * base_acc:.1f} with the defaults); Table 1 uses it as our method.")
    return text + _screens_reading(per_epoch, summary, accuracy, relu, key)


def _screens_reading(per_epoch: pd.DataFrame, summary: pd.DataFrame, accuracy: str, relu: str, key: str) -> str:
    """The mechanism screens' sentences of :func:`dynamics_reading` (empty when none ran): the strict mode's final
    accuracy and share of validation maps with no pixel > 0 beside guarded relu's, and the best repair's accuracy."""
    base = summary[key].str.split("+epochs:", regex=False).str[0]

    def named(spec):  # the summary's variant whose base is ``spec`` (screened or not), or None
        names = summary.loc[base == spec, key]
        return str(names.iloc[0]) if len(names) else None

    def mean(variant):
        return float(summary.loc[summary[key] == variant, f"{accuracy}_mean"].iloc[0])

    def final(variant, column):  # mean over seeds at the variant's own last epoch; NaN when not recorded
        rows = per_epoch[per_epoch[key] == variant]
        if rows.empty or column not in rows.columns:
            return float("nan")
        return float(rows.loc[rows["epoch"] == rows["epoch"].max(), column].mean())

    def than(value, other):  # compared as printed (one decimal of a percentage)
        a, b = round(100 * value, 1), round(100 * other, 1)
        return "higher than" if a > b else "lower than" if a < b else "the same as"

    text, ours, strict = "", mean(relu), named(STRICT_SCREEN)
    if strict is not None:
        acc = mean(strict)
        text += (f" In the strict supply mode (`{STRICT_SCREEN}`: no guard, an all-≤ 0 map gets no loss and no "
                 f"gradient) {accuracy} ends at {100 * acc:.1f}, {than(acc, ours)} guarded relu's {100 * ours:.1f}")
        shares = [final(v, "val_no_positive_share") for v in (strict, relu)]
        if not np.isnan(shares).any():
            text += (f"; {100 * shares[0]:.0f} % of its validation maps have no pixel > 0 at the end (guarded relu: "
                     f"{100 * shares[1]:.0f} %)")
        text += "."
    repair = best_repair(summary, accuracy, key)
    if repair is not None:
        acc = mean(named(repair))
        text += (f" The best repair is `{repair}`, {REPAIRS[repair]}: {accuracy} ends at {100 * acc:.1f}, "
                 f"{than(acc, ours)} guarded relu's.")
    return text
