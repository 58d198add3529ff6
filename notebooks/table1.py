# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 1 — Gaussian-smoothed heatmap vs. dot-annotated heatmap vs. ours
#
# The supplementary's Table 1 (COCO val2017, HRNet-W48) compares the same backbone trained with MSE to
# Gaussian-smoothed targets, MSE to dot-annotated targets, and our distribution matching loss. We train each
# method with several seeds (beside them, where the scale allows, the distribution-matching models that do train:
# softplus suppliers and the best repair of `hdm_dynamics`, each a labelled deviation), choose every model's
# decoder on the validation set, and report mean ± std of pycocotools' AP, AP50, AP75, APM, APL and AR on the
# held-out test split (synthetic data; coco and mpii report val), beside the paper's numbers. Then: finding vs
# placing a joint (the share of joints found, and the error on the joints every model found, beside each target's
# oracle floor), the distribution of every joint's error, the ablations (naive vs. sub-pixel demanders, exact vs.
# entropic solver, each decoder on each model), the longer schedule and the paper's heatmap size.

# %% tags=["parameters"]
scale = "default"      # smoke | default | long | paper
seeds = [0, 1, 2]
dataset = None         # None: synthetic (smoke, default, long) or coco (paper)
ablation_seeds = [0]   # seeds for the ablation runs
# methods or variants method+key:value; add "hdm_sinkhorn" for the entropic solver (slow on CPUs: see README), or
# e.g. "hdm+init_from:gaussian+epochs:5+lr:1e-4" to fine-tune the Gaussian run with our loss.
# An ablation with our method's exact configuration is left out (it is the same run): "hdm+lr:1e-3", the paper's
# plain setting, is the reference the other two differ from by one factor where ours is another sweep pick.
ablations = ["hdm_naive", "hdm+supplier:softplus", "hdm+lr:1e-3"]
solver_eps = [0.5, 0.1, 0.05]  # Sinkhorn regularisations (heatmap px) compared with the exact loss, no training
n_solver_samples = 32
ours = "auto"          # our method's setting: a relu variant, or "auto": the best relu setting of hdm_dynamics
extra_models = "auto"  # distribution-matching models trained on `seeds` beside the three: variant specs, or "auto":
                       # analysis.table1_extra_models (softplus suppliers and the best repair; none at default)
decoders = "auto"      # decoders each model tries on validation (the best is its Table 1 decoder): a list, or
                       # "auto": analysis.decoder_candidates (2 at default; 4-5 elsewhere)
report_split = "auto"  # the split reported: "val", "test", or "auto": test for synthetic data, val for coco/mpii
longer_baseline = "auto"  # the Gaussian run on a longer schedule (seed seeds[0]), to see where its curve flattens:
                          # a variant spec, None, or "auto": twice the schedule at the long scale, else None
longer_models = "auto"    # distribution-matching models on the longer schedule beside it: variant specs, or "auto":
                          # ours and the best extra model by validation AP at the long scale, else none
resolution_screen = "auto"  # variant suffix of the heatmap-size screen (seed seeds[0]): None, or "auto": 256x192
                            # crops / 64x48 heatmaps at the smoke and long scales (analysis.resolution_screen)

# %%
# The parameters, checked before anything is computed (a bad one stops here with a clear message).
from hdm.config import check_parameters

check_parameters(scale=scale, seeds=seeds, dataset=dataset, ablation_seeds=ablation_seeds, ablations=ablations,
                 n_solver_samples=n_solver_samples)
if ours != "auto":
    check_parameters(ours_model=ours)
from hdm import analysis

longer_baseline = analysis.longer_baseline(scale, longer_baseline)
report_split = analysis.report_split(dataset, report_split)
resolution_screen = analysis.resolution_screen(scale, resolution_screen)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from hdm import oracle, paper, plots
from hdm.config import variant_preset
from hdm.engine import evaluate, evaluation_arrays, predict_samples, train
from hdm.engine.data import build_eval_data
from hdm.paths import TABLES

# %%
metric_names = list(paper.TABLE1.columns)
extra_names = ["PCK", "err_hm"]  # box PCK@0.1 and mean joint error (heatmap px): informative where AP is small
names = metric_names + extra_names
sweep_table = TABLES / f"hdm_dynamics_sweep_{scale}.csv"
ours = analysis.our_setting(ours, sweep_table)
extra_models = analysis.table1_extra_models(scale, extra_models, sweep_table)
specs = {"gaussian": "gaussian", "dot": "dot", "hdm": ours, **{spec: spec for spec in extra_models}}
methods = list(specs)
labels = {m: paper.METHOD_LABELS[m] if m in ("gaussian", "dot") else analysis.model_label(spec)
          for m, spec in specs.items()}
ablations = analysis.distinct_from_ours(scale, [a for a in ablations if a not in specs], ours, dataset)
print(f"our method: {ours}; beside it: {extra_models}; ablations: {ablations}; reported on {report_split}")
runs = {(m, s): train(variant_preset(scale, specs[m], dataset=dataset, seed=s)) for m in methods for s in seeds}

# %% [markdown]
# Every model's decoder is chosen on the validation set (the highest mean AP over seeds among its candidates; a tie
# keeps the method's own decoder), then Table 1 is computed on the reported split with that decoder.

# %%
candidates = {m: analysis.decoder_candidates(specs[m], scale, decoders) for m in methods}
on_val = analysis.evaluation_rows(runs, candidates, evaluate, names, split="val")
own = {m: runs[(m, seeds[0])].config.resolved().decoder for m in methods}
chosen = analysis.choose_decoders(on_val, "AP", own)
decoder_choice = analysis.summarise_over_seeds(on_val, ["model", "decoder"], names)
decoder_choice.insert(2, "chosen", [chosen[m] == d for m, d in zip(decoder_choice["model"], decoder_choice["decoder"])])
plots.save_table(decoder_choice, f"table1_decoders_{scale}", floatfmt=".4f")
display(decoder_choice)

final = analysis.evaluation_rows(runs, {m: [chosen[m]] for m in methods}, evaluate, names, split=report_split)
final = final.rename(columns={"model": "method"})
summary = analysis.summarise_over_seeds(final, ["method"], names)
summary.insert(1, "label", [labels[m] for m in summary["method"]])
summary.insert(2, "split", report_split)
summary.insert(3, "decoder", [chosen[m] for m in summary["method"]])
plots.save_table(final, f"table1_runs_{scale}")
plots.save_table(summary, f"table1_summary_{scale}")

# %%
table = analysis.table1_beside_paper(summary, paper.TABLE1, tuple(methods), source=f"ours ({scale}, {report_split})",
                                     labels=labels)
plots.save_table(table, f"table1_{scale}")
display(table)
difference = analysis.paired_difference(final, names, "hdm", "gaussian")
plots.save_table(difference, f"table1_paired_difference_{scale}", floatfmt=".4f")
display(Markdown(f"Ours (`{ours}`) − Gaussian on {report_split}, paired by seed, with a 95 % Student-t interval "
                 "(fractions; err_hm in heatmap px):"))
display(difference)
pairs = analysis.table1_pairs(methods)
paired = pd.concat([analysis.paired_difference(final, names, a, b).assign(comparison=f"{a} − {b}")
                    for a, b in pairs], ignore_index=True)
paired = paired[["comparison", *paired.columns[:-1]]]
plots.save_table(paired, f"table1_paired_all_{scale}", floatfmt=".4f")
display(paired)

# %% [markdown]
# Finding vs placing. A joint is *found* when its error is at most 0.1 × the person size (`miss_breakdown`'s rule);
# placing is judged on the joints that every model (every method and seed) found, so no model is judged on easier
# joints; the oracle floor is the error of each model's perfect target decoded with its decoder.

# %%
predictions = {(m, s): evaluation_arrays(run, chosen[m], split=report_split) for (m, s), run in runs.items()}
floors = {m: oracle.oracle_errors(build_eval_data(runs[(m, seeds[0])].config, report_split).val,
                                  oracle.target_kind(specs[m]), chosen[m]) for m in methods}
finding = analysis.finding_placing(predictions)
finding.insert(1, "decoder", [chosen[m] for m in finding["method"]])
finding["oracle_mean_err_hm"] = [floors[m]["mean"] for m in finding["method"]]
finding["oracle_median_err_hm"] = [floors[m]["median"] for m in finding["method"]]
plots.save_table(finding, f"table1_finding_placing_{scale}", floatfmt=".4f")
display(finding)
measures = ["found_share", "found_mean_err_hm", "common_mean_err_hm", "common_median_err_hm", "common_p90_err_hm"]
finding_paired = pd.concat([analysis.paired_difference(finding, measures, a, b).assign(comparison=f"{a} − {b}")
                            for a, b in pairs], ignore_index=True)
finding_paired = finding_paired[["comparison", *finding_paired.columns[:-1]]]
plots.save_table(finding_paired, f"table1_finding_placing_paired_{scale}", floatfmt=".4f")
display(finding_paired)
fig = plots.finding_placing_figure(finding, labels, {m: f["mean"] for m, f in floors.items()})
plots.save_figure(fig, f"table1_finding_placing_{scale}")
plt.show()

# %% [markdown]
# Behind the means: every labelled joint's error relative to the person size, over all seeds' predictions on the
# reported split. The ECDF at 0.1 is a PCK@0.1 over labelled joints; on the right, each joint's median and
# interquartile range per method.

# %%
errors = analysis.stack_joint_errors(predictions)
plots.save_table(analysis.error_summary(errors, ["method"]), f"table1_joint_errors_{scale}", floatfmt=".4f")
fig = plots.joint_error_figure(errors, "method", hue_order=methods, labels=labels)
plots.save_figure(fig, f"table1_joint_errors_{scale}")
plt.show()

# %% [markdown]
# Where each method stands when the schedule ends (validation learning curves: mean over seeds, band ± sd), and why
# joints miss on the reported split: of the labelled joints farther than 0.1 × the person size from the truth, those
# nearer their left/right twin's truth (identity errors: the wrong side found) and the rest (localisation errors).

# %%
per_epoch = analysis.stack_metrics({key: run.metrics for key, run in runs.items()})
curves = {"AP": "validation AP", "PCK": "box PCK@0.1", "err_hm": "mean error (heatmap px)"}
fig = plots.dynamics_figure(per_epoch, {c: label for c, label in curves.items() if c in per_epoch}, hue="method",
                            hue_order=methods)
plots.save_figure(fig, f"table1_learning_curves_{scale}")
plt.show()
misses = pd.DataFrame([{"method": m, "seed": s, **analysis.miss_breakdown(p)} for (m, s), p in predictions.items()])
shares = ["missed", "missed_as_twin", "missed_localisation"]
miss_summary = analysis.summarise_over_seeds(misses, ["method"], shares)
plots.save_table(miss_summary, f"table1_misses_{scale}", floatfmt=".4f")
display(miss_summary)

# %% [markdown]
# Did each model's optimisation settle? Per run, from its per-epoch record: how far the training loss ends above
# its minimum, how far the validation accuracy ends below its best epoch, and how erratic the head's gradient is
# from epoch to epoch (the largest epoch-mean gradient norm over the median one; 1 = steady).

# %%
accuracy = analysis.tracking_accuracy(runs[(methods[0], seeds[0])].accuracy_column)
stability = analysis.training_stability(per_epoch, accuracy)
plots.save_table(stability, f"table1_stability_{scale}", floatfmt=".4g")
display(stability)

# %% [markdown]
# Where the learning curves flatten (the long scale only, by default): the Gaussian run on a longer schedule beside
# Table 1's, with our method and the best other distribution-matching model (by validation AP) on the same longer
# schedule, and each one's AP gain from one 5-epoch checkpoint to the next.

# %%
if longer_baseline:
    validation_ap = {specs[m]: float(on_val[(on_val["model"] == m) & (on_val["decoder"] == chosen[m])]["AP"].mean())
                     for m in extra_models}
    longer_specs = [longer_baseline, *analysis.longer_models(scale, longer_models, validation_ap, ours)]
    longer_runs = {spec: train(variant_preset(scale, spec, dataset=dataset, seed=seeds[0])) for spec in longer_specs}
    both = {(analysis.model_label(spec), seeds[0]): run.metrics for spec, run in longer_runs.items()}
    both[(f"{paper.label('gaussian')} (Table 1)", seeds[0])] = runs[("gaussian", seeds[0])].metrics
    fig = plots.dynamics_figure(analysis.stack_metrics(both), curves, hue="method")
    plots.save_figure(fig, f"table1_longer_baseline_{scale}")
    plt.show()
    gains = pd.concat([analysis.window_gains(run.metrics, "AP", 5).assign(model=analysis.model_label(spec))
                       for spec, run in longer_runs.items()], ignore_index=True)
    gains = gains[["model", *gains.columns[:-1]]]
    plots.save_table(gains, f"table1_longer_baseline_{scale}", floatfmt=".4f")
    display(gains)

# %% [markdown]
# Does the ranking depend on the heatmap's resolution? The same models from the same start on the screening schedule
# (`analysis.dynamics_screen_epochs`: 5 epochs at the long scale), at this scale's size and at the paper's
# operating point (256 × 192 crops, 64 × 48 heatmaps; seed `seeds[0]`; validation, each method's own decoder).

# %%
if resolution_screen:
    screen_epochs = analysis.dynamics_screen_epochs(scale)
    sized = {(m, size): train(variant_preset(scale, analysis.screened(specs[m] + suffix, screen_epochs),
                                             dataset=dataset, seed=seeds[0]))
             for m in methods if m != "dot" for size, suffix in (("base", ""), ("paper", resolution_screen))}
    resolution = analysis.resolution_table(sized, labels, names + ["err_px"])
    plots.save_table(resolution, f"table1_resolution_64x48_{scale}", floatfmt=".4f")
    display(resolution)

# %%
ablation_runs = {(m, s): train(variant_preset(scale, m, dataset=dataset, seed=s))
                 for m in ablations for s in ablation_seeds}
ablation_decoders = {m: [ablation_runs[(m, ablation_seeds[0])].config.resolved().decoder] for m in ablations}
rows = pd.concat([analysis.evaluation_rows(runs, candidates, evaluate, names, split=report_split),
                  analysis.evaluation_rows(ablation_runs, ablation_decoders, evaluate, names, split=report_split)])
ablation = analysis.summarise_over_seeds(rows, ["model", "decoder"], names)
ablation_text = pd.concat([ablation[["model", "decoder", "n"]].assign(model=[labels.get(m, paper.label(m))
                                                                             for m in ablation["model"]]),
                           analysis.mean_std_strings(ablation, metric_names + ["PCK"], 100.0),
                           analysis.mean_std_strings(ablation, ["err_hm"], digits=2)], axis=1)
ablation_text.insert(3, "chosen on val", [chosen.get(m) == d for m, d in zip(ablation["model"], ablation["decoder"])])
plots.save_table(ablation_text, f"table1_ablations_{scale}")
display(Markdown(f"Every model with every decoder it tried, on {report_split} (the ablations with their own decoder):"))
display(ablation_text)

# %% [markdown]
# Exact vs. entropic solver without training (training with Sinkhorn is opt-in: ~16× slower on CPUs): on the
# predicted heatmaps of the first seed's models, the Sinkhorn loss's excess over the exact EMD and the cosine
# between the two losses' gradients w.r.t. each joint's map.

# %%
first_runs = {m: runs[(m, seeds[0])] for m in ("hdm", "gaussian")}
samples = {m: predict_samples(run, analysis.first_indices(run.predictions(), n_solver_samples))
           for m, run in first_runs.items()}
solver = pd.concat([analysis.solver_agreement(p.heatmaps, p.joints, p.visibility, tuple(solver_eps))
                    .assign(model=paper.label(m)) for m, p in samples.items()], ignore_index=True)
plots.save_table(solver, f"table1_solver_agreement_{scale}", floatfmt=".4g")
display(solver)

# %%
display(Markdown(analysis.table1_reading(summary, scale, len(seeds), paper.TABLE1, solver=solver)
                 + f" (Reported on the {report_split} split; decoders chosen on validation: "
                 + ", ".join(f"{labels[m]} {chosen[m]}" for m in methods) + ".)"))
