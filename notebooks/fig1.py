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
# # Fig. 1 — qualitative results: baseline vs. ours vs. ground truth
#
# For chosen validation joints: the predicted heatmap of the baseline (HRNet decoding: argmax + quarter shift) and
# of ours (local centre of mass) over the input crop, with the predicted and ground-truth coordinates in
# original-image pixels, laid out like the supplementary's Fig. 1 (whose MPII rows are shown below for
# reference). Picks are drawn at random (seeded) among visible joints unless given.

# %% tags=["parameters"]
scale = "default"   # smoke | default | long | paper
seed = 0            # training seed of both models
ours_model = "auto"  # a method or a variant, e.g. "hdm+supplier:softplus", or "auto": Table 1's our method
                    # (the best relu setting of hdm_dynamics, analysis.our_setting)
picks = None        # list of [dataset index, joint index]; None: random visible joints
n_picks = 4
pick_seed = 0

# %%
# The parameters, checked before anything is computed (a bad one stops here with a clear message).
from hdm.config import check_parameters

check_parameters(scale=scale, seed=seed, n_picks=n_picks)
if ours_model != "auto":
    check_parameters(ours_model=ours_model)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from hdm import analysis, plots
from hdm.config import variant_preset
from hdm.engine import predict_samples, train
from hdm.paths import TABLES

# %%
ours_model = analysis.our_setting(ours_model, TABLES / f"hdm_dynamics_sweep_{scale}.csv")
baseline, ours = (train(variant_preset(scale, m, seed=seed)) for m in ("gaussian", ours_model))
picks = picks or analysis.pick_joints(ours.predictions(), n_picks, pick_seed)
indices, panels = analysis.split_picks(picks)
models = {"baseline": predict_samples(baseline, indices), "ours": predict_samples(ours, indices)}
fig, coords = plots.qualitative_grid(panels, models)
plots.save_figure(fig, f"fig1_{scale}")
plots.save_table(coords, f"fig1_coordinates_{scale}")
plt.show()
display(coords)

# %%
reported = analysis.paper_qualitative_rows()
display(Markdown("The supplementary's Fig. 1 rows (MPII, HRNet-W48), for reference:"))
display(reported)
display(Markdown(analysis.fig1_reading(coords, reported)))
