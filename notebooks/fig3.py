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
# # Fig. 3 — failure cases
#
# The supplementary's Fig. 3 shows joints under severe occlusion where both the baseline and ours fail. We find
# the worst-localised joints of our model automatically (error relative to the person size), test whether they
# concentrate on occluded joints (COCO visibility 1) by splitting the errors by visibility, show both models'
# error distributions for visible and occluded joints, and draw the worst joints like Fig. 1.

# %% tags=["parameters"]
scale = "default"   # smoke | default | long | paper
seed = 0
ours_model = "auto"  # a method or a variant, e.g. "hdm+supplier:softplus", or "auto": Table 1's our method
                    # (the best relu setting of hdm_dynamics, analysis.our_setting)
n_worst = 4
worst_share = 0.05  # the worst 5 % of joints are compared with the whole population

# %%
# The parameters, checked before anything is computed (a bad one stops here with a clear message).
from hdm.config import check_parameters

check_parameters(scale=scale, seed=seed, n_worst=n_worst)
if ours_model != "auto":
    check_parameters(ours_model=ours_model)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from hdm import analysis, paper, plots
from hdm.config import variant_preset
from hdm.engine import predict_samples, train
from hdm.paths import TABLES

# %%
ours_model = analysis.our_setting(ours_model, TABLES / f"hdm_dynamics_sweep_{scale}.csv")
models = {"baseline": train(variant_preset(scale, "gaussian", seed=seed)),
          "ours": train(variant_preset(scale, ours_model, seed=seed))}
errors = analysis.stack_joint_errors({label: run.predictions() for label, run in models.items()}, ("model",))
split = analysis.error_by_visibility(errors, worst_share, by="model")
plots.save_table(split, f"fig3_error_by_visibility_{scale}")
display(split)

# %%
fig = plots.joint_error_figure(errors, "model", by="visibility")
plots.save_figure(fig, f"fig3_joint_errors_{scale}")
plt.show()

# %%
worst = analysis.worst_joints(errors[errors["model"] == "ours"], n_worst)
indices, panels = analysis.split_picks(worst)
samples = {label: predict_samples(run, indices) for label, run in models.items()}
fig, coords = plots.qualitative_grid(panels, samples)
plots.save_figure(fig, f"fig3_{scale}")
plots.save_table(coords, f"fig3_coordinates_{scale}")
plt.show()
display(coords)

# %%
display(Markdown("The supplementary's Fig. 3 rows (MPII, HRNet-W48, severe occlusion), for reference:"))
display(analysis.paper_qualitative_rows(paper.FIG3_ROWS))
display(Markdown(analysis.fig3_reading(split, worst_share)))
