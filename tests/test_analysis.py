"""Fig. 2 consistency numbers and seed summaries on hand-made metric tables; exact vs. entropic loss agreement."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from hdm.analysis import (consistency_table, loss_accuracy_consistency, mean_std_strings, solver_agreement,
                          summarise_over_seeds)
from hdm.targets import gaussian_heatmaps


def _metrics(loss, acc):
    return pd.DataFrame({"epoch": np.arange(1, len(loss) + 1), "loss": loss, "acc": acc})


def test_perfectly_tracking_loss_has_rho_minus_one_and_no_inconsistent_epochs():
    result = loss_accuracy_consistency(_metrics([9, 5, 4, 3, 2, 1], [0, 1, 2, 3, 4, 5]), "loss", "acc")
    assert result["spearman"] == pytest.approx(-1.0)
    assert result["epochs"] == 5 and result["loss_fell"] == 4 and result["inconsistent_epochs"] == 0


def test_counts_epochs_where_loss_fell_but_accuracy_did_not_rise():
    # epochs 2..7: loss always falls; accuracy 1, 3, 2, 2, 5, 4 -> not up at 3 of 5 steps
    m = _metrics([10, 6, 5, 4, 3, 2, 1], [0, 1, 3, 2, 2, 5, 4])
    result = loss_accuracy_consistency(m, "loss", "acc")
    assert result["loss_fell"] == 5 and result["inconsistent_epochs"] == 3
    assert result["inconsistent_share"] == pytest.approx(3 / 5)
    # by hand: ranks of loss (6,5,4,3,2,1)->(6..1); acc (1,3,2,2,5,4)
    from scipy.stats import spearmanr

    assert result["spearman"] == pytest.approx(spearmanr([6, 5, 4, 3, 2, 1], [1, 3, 2, 2, 5, 4]).statistic)
    assert loss_accuracy_consistency(m, "loss", "acc", first_epoch=1, last_epoch=3)["epochs"] == 3


def test_constant_series_gives_nan_and_short_windows_error():
    assert math.isnan(loss_accuracy_consistency(_metrics([1, 1, 1], [0, 1, 2]), "loss", "acc")["spearman"])
    with pytest.raises(ValueError, match="at least 2 epochs"):
        loss_accuracy_consistency(_metrics([1, 2], [0, 1]), "loss", "acc")
    with pytest.raises(KeyError, match="lacks columns"):
        loss_accuracy_consistency(_metrics([1, 2, 3], [0, 1, 2]), "val_mse", "acc")


def test_tables_and_seed_summaries():
    runs = {("hdm", s): _metrics([5, 4, 3, 2], [1, 2, 3, 4 + s]) for s in range(3)}
    table = consistency_table(runs, {"ours": "loss"}, "acc")
    assert len(table) == 3 and set(table["method"]) == {"hdm"}
    summary = summarise_over_seeds(table, ["method", "loss"], ["spearman", "inconsistent_epochs"])
    assert summary.loc[0, "n"] == 3 and summary.loc[0, "spearman_mean"] == pytest.approx(-1.0)
    assert summary.loc[0, "spearman_std"] == pytest.approx(0.0)
    text = mean_std_strings(summary, ["spearman"], digits=2)
    assert text.loc[0, "spearman"] == "-1.00 ± 0.00"


def test_joint_errors_and_visibility_split_on_a_hand_made_case():
    from hdm.analysis import error_by_visibility, joint_errors

    # 2 persons x 3 joints; box size 200 * 1.25 / 1.25 = 200 px; errors 0, 2, 40 / 4, 100, unlabelled
    predictions = {
        "index": np.array([5, 9]),
        "image_joints": np.zeros((2, 3, 2)),
        "image_coords": np.array([[[0, 0], [2, 0], [0, 40]], [[4, 0], [0, 100], [7, 7]]], float),
        "keypoint_flags": np.array([[2, 2, 1], [2, 1, 0]]),
        "scale": np.full((2, 2), 1.25),
    }
    errors = joint_errors(predictions, ["a", "b", "c"])
    assert len(errors) == 5 and errors["error_px"].tolist() == [0, 2, 40, 4, 100]
    assert errors["error_rel"].tolist() == pytest.approx([0, 0.01, 0.2, 0.02, 0.5])
    assert errors["index"].tolist() == [5, 5, 5, 9, 9]
    table = error_by_visibility(errors, worst_share=0.4).set_index("visibility")
    assert table.loc["occluded", "joints"] == 2 and table.loc["visible", "joints"] == 3
    assert table.loc["occluded", "mean_error_px"] == pytest.approx(70)
    # the worst 40 % (2 joints: errors 40 and 100) are both occluded
    assert table.loc["occluded", "share_of_worst"] == 1.0
    assert table.loc["occluded", "over_representation"] == pytest.approx(1 / 0.4)


def test_entropic_loss_approaches_the_exact_one_as_eps_shrinks():
    g = torch.Generator().manual_seed(0)
    joints = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * torch.tensor([9.0, 11.0])
    vis = torch.ones(2, 3, dtype=torch.float64)
    vis[1, 2] = 0  # an invisible joint is left out
    maps, _ = gaussian_heatmaps(joints + torch.randn(2, 3, 2, generator=g, dtype=torch.float64), vis, (12, 10), 1.5)
    maps = maps + 0.05 * torch.randn(maps.shape, generator=g, dtype=torch.float64)
    table = solver_agreement(maps, joints, vis, (1.0, 0.3, 0.1, 0.03))
    assert (table["joints"] == 5).all() and table["exact_loss"].nunique() == 1
    # Sinkhorn's plan is feasible, so its transport cost is above the exact minimum, and closes in on it
    assert (table["relative_excess"] > -1e-3).all() and table["relative_excess"].is_monotonic_decreasing
    assert table["relative_excess"].iloc[-1] < 0.01 and table["gradient_cosine"].is_monotonic_increasing
    assert table["gradient_cosine_min"].iloc[-1] > 0.99
    with pytest.raises(ValueError, match="no joint counts"):
        solver_agreement(maps, joints, torch.zeros_like(vis))
