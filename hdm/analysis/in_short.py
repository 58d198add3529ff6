"""The README's opening summary ("In short"): Theorem 1, Table 1 at the largest scale with results, finding vs
placing, the mechanism, the training stability, the repair and Fig. 2, each a sentence of numbers taken from the
claims' rows (:mod:`hdm.analysis.claims`) and the tables; written to ``results/readme/in_short.md`` by
:mod:`hdm.analysis.verdicts`."""

from __future__ import annotations

import numpy as np

from hdm.analysis import headlines
from hdm.analysis.claims import (_percent, _seeds, _split, _table1_means, finding_placing, fig2_tracking,
                                 repair_trains, table1_order, theorem1_algebra, theorem1_converse)
from hdm.analysis.readings import SHORT_LABELS
from hdm.analysis.stats import rank_order
from hdm.analysis.tables import Tables, interval, num, pm
from hdm.experiments import REPAIRS, STRICT_SCREEN, best_relu_variant, best_repair, sweep_accuracy

def headline_scale(t: Tables) -> str | None:
    """The scale the summary speaks for: the largest with a Table 1 summary (paper, then long, then default)."""
    scales = t.scales()
    return scales[-1] if scales else None


def _table1_sentence(t: Tables, scale: str) -> str | None:
    summary, order = t.get(f"table1_summary_{scale}"), table1_order(t, scale)
    if summary is None or order is None:
        return None
    ours = headlines._ours(t, scale)
    named = {m: headlines._short_label(t, scale, m) for m in summary["method"]}
    if ours is None:
        named["hdm"] = f"{SHORT_LABELS['hdm']} (the earlier sweep's pick, runs from before the current code)"
    elif ours != "hdm":
        named["hdm"] += f" (`{ours}`)"
    values = ", ".join(f"{named[r['method']]} {pm(100 * r['AP_mean'], 100 * r['AP_std'])}"
                       for r in summary.to_dict("records"))
    ap = _table1_means(t, scale, "AP")
    return (f"At the {scale} scale ({_seeds(t, scale)} seeds{_split(t, scale)}), AP: {values}; Table 1's ranking "
            f"(ours > Gaussian > dot) **{order['verdict']}** (here, by AP: {rank_order(ap, SHORT_LABELS, digits=1)}).")


def _finding_sentence(t: Tables, scale: str) -> str | None:
    table, row = t.get(f"table1_finding_placing_{scale}"), finding_placing(t, scale)
    if table is None or row is None:
        return None
    found = table.groupby("method", sort=False)["found_share"].mean()
    paired = t.get(f"table1_finding_placing_paired_{scale}").set_index(["comparison", "metric"])
    placing = [f"{headlines._short_label(t, scale, m)} {interval(paired.loc[(f'{m} − gaussian', 'common_mean_err_hm')], 1.0, 2)} px"
               for m in found.index if m.startswith("hdm") and (f"{m} − gaussian", "common_mean_err_hm") in paired.index]
    shares = ", ".join(f"{headlines._short_label(t, scale, m)} {_percent(v)}" for m, v in found.items())
    joints = int(table["common_joints"].iloc[0])
    return (f"Finding vs placing ({scale} scale{_split(t, scale)}): the share of labelled joints found (within 0.1 × "
            f"the person size) is {shares}; on the {joints} joints every model found, the mean error minus the "
            f"Gaussian model's, paired by seed (95 %), is {', '.join(placing)}: distribution matching "
            f"**{row['detail'] or row['verdict']}**.")


def _mechanism_sentence(t: Tables, scale: str) -> str | None:
    sweep, shift = t.get(f"hdm_dynamics_sweep_{scale}"), t.get(f"hdm_dynamics_shift_{scale}")
    if sweep is None or STRICT_SCREEN not in set(sweep["variant"]) or "hdm" not in set(sweep["variant"]):
        return None
    accuracy = sweep_accuracy(sweep)
    value = sweep.set_index("variant")[f"{accuracy}_mean"].mul(100)
    best = best_relu_variant(sweep, accuracy)
    text = f"Why ({scale} dynamics screens, seed 0): "
    lowered = shift[np.isclose(shift["shift"], 0.1)].set_index("variant")["lowered_share"] if shift is not None else {}
    if best in lowered and "gaussian" in lowered:
        text += (f"the relu-normalised EMD rewards lowering a map (by a tenth of its peak, it falls for "
                 f"{_percent(lowered[best])} of the joints of relu-trained maps, `{best}`, and for "
                 f"{_percent(lowered['gaussian'])} on Gaussian-trained ones, the neutral case), so its gradient pulls "
                 "maps toward the all-≤ 0 state, where relu gives no gradient; ")
    text += f"without the supply guard (the literal relu + normalisation) {accuracy} ends at {num(value[STRICT_SCREEN])}"
    no_positive = shift[shift["shift"] == 0.0].set_index("variant")["no_positive_share"] if shift is not None else {}
    if STRICT_SCREEN in no_positive and "hdm" in no_positive:
        text += (f" with {_percent(no_positive[STRICT_SCREEN])} of validation maps all ≤ 0 (guarded relu: "
                 f"{num(value['hdm'])}, {_percent(no_positive['hdm'])})")
    else:
        text += f" (guarded relu: {num(value['hdm'])})"
    parts = []
    if best != "hdm":
        parts.append(f"the best relu setting `{best}` {num(value[best])}")
    repair = best_repair(sweep, accuracy)
    if repair is not None:
        parts.append(f"the best repair, {REPAIRS[repair].split(' (')[0]}, {num(value[repair])}")
    if "hdm+supplier:softplus" in value.index:
        parts.append(f"softplus suppliers {num(value['hdm+supplier:softplus'])}")
    if "gaussian" in value.index:
        parts.append(f"Gaussian targets {num(value['gaussian'])}")
    return text + ("; " + ", ".join(parts) if parts else "") + "."


def _stability_sentence(t: Tables, scale: str) -> str | None:
    table = t.get(f"table1_stability_{scale}")
    if table is None or "hdm" not in set(table["method"]):
        return None
    means = table.groupby("method", sort=False).mean(numeric_only=True)
    ours = means.loc["hdm"]
    spreads = ", ".join(f"{headlines._short_label(t, scale, m)} {num(r['head_grad_spread'])}×" for m, r in means.iterrows()
                        if m != "hdm" and np.isfinite(r["head_grad_spread"]))
    seeds = int(table.groupby("method").size().max())
    return (f"Over Table 1's schedule ({scale} scale, mean over {seeds} seeds) ours' training loss ends "
            f"{num(100 * ours['loss_rise'])} % above its minimum (epoch {num(ours['min_epoch'])}) and its PCK@0.1 "
            f"{num(100 * ours['drop'])} points below its best epoch's (epoch {num(ours['best_epoch'])}); the head's "
            f"gradient norm varies {num(ours['head_grad_spread'])}× from epoch to epoch"
            + (f" ({spreads})." if spreads else "."))


def in_short(tables_dir) -> str | None:
    """The README's opening summary: Theorem 1, Table 1 at the headline scale, finding vs placing, the mechanism,
    the repair and Fig. 2, each a sentence of numbers from the verdict rows and tables (None without Table 1)."""
    t = tables_dir if isinstance(tables_dir, Tables) else Tables(tables_dir)
    scale = headline_scale(t)
    if scale is None:
        return None
    sentences = []
    algebra, converse = theorem1_algebra(t, scale), theorem1_converse(t, scale)
    if algebra is not None and converse is not None:
        sentences.append(f"Theorem 1 **{algebra['verdict']}** {algebra['detail']}".rstrip() + ", and eq. 4 fails "
                         f"exactly where eq. 5 does ({converse['detail']}).")
    sentences.append(_table1_sentence(t, scale))
    sentences.append(_finding_sentence(t, scale) or _finding_sentence(t, "default"))
    sentences.append(_mechanism_sentence(t, scale) or _mechanism_sentence(t, "long"))
    sentences.append(_stability_sentence(t, scale))
    repair = repair_trains(t, scale)
    if repair is not None:
        sentences.append(f"A repair that keeps relu + normalisation trains better than ours: **{repair['verdict']}** "
                         f"({repair['numbers']}).")
    fig2 = fig2_tracking(t, scale)
    if fig2 is not None:
        sentences.append(f"Fig. 2's claim (our loss tracks accuracy, MSE does not) **{fig2['verdict']}**"
                         + (f": {fig2['detail']}" if fig2["detail"] else "") + ".")
    return "**In short**, as measured here: " + " ".join(s for s in sentences if s) + "\n"
