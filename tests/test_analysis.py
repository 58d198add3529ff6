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


# ---------------------------------------------------------------------------------------------------------
# What the notebooks decide: picks, worst joints, Table 1 assembly, readings

from types import SimpleNamespace

from hdm import analysis, paper


def _predictions(seed=0, n=12, k=17):
    rng = np.random.default_rng(seed)
    return {"index": np.arange(100, 100 + n), "keypoint_flags": rng.integers(0, 3, size=(n, k)),
            "image_joints": rng.normal(size=(n, k, 2)) * 40, "image_coords": rng.normal(size=(n, k, 2)) * 40,
            "scale": np.full((n, 2), 1.25)}


def test_pick_joints_draws_distinct_visible_joints_deterministically_per_seed():
    p = _predictions()
    flag_of = {(int(i), k): p["keypoint_flags"][row, k] for row, i in enumerate(p["index"]) for k in range(17)}
    for seed in range(20):
        picks = analysis.pick_joints(p, 6, seed)
        assert len(picks) == 6 and len(set(picks)) == 6
        assert all(flag_of[pick] == analysis.VISIBLE for pick in picks)
        assert all(isinstance(i, int) and isinstance(k, int) for i, k in picks)
        assert analysis.pick_joints(p, 6, seed) == picks
    assert len({tuple(analysis.pick_joints(p, 6, s)) for s in range(20)}) > 1  # the seed matters
    occluded = analysis.pick_joints(p, 3, 0, flag=1)
    assert all(flag_of[pick] == 1 for pick in occluded)
    # every visible joint can be picked, and asking for all of them returns each once
    visible = int((p["keypoint_flags"] == 2).sum())
    assert sorted(analysis.pick_joints(p, visible, 1)) == sorted(k for k, f in flag_of.items() if f == 2)
    with pytest.raises(ValueError, match="cannot pick"):
        analysis.pick_joints(p, visible + 1, 0)


def test_worst_joints_are_the_largest_errors_with_deterministic_ties():
    errors = pd.DataFrame({"sample": [0, 0, 1, 1, 2], "index": [7, 7, 8, 8, 9], "joint": [0, 3, 1, 2, 0],
                           "error_rel": [0.1, 0.5, 0.5, 0.2, 0.9]})
    worst = analysis.worst_joints(errors.sample(frac=1, random_state=3), 3)
    assert worst["error_rel"].tolist() == [0.9, 0.5, 0.5]
    assert list(zip(worst["index"], worst["joint"])) == [(9, 0), (7, 3), (8, 1)]  # tie: earlier sample first
    assert len(analysis.worst_joints(errors, 10)) == 5
    with pytest.raises(ValueError):
        analysis.worst_joints(errors.iloc[:0], 2)
    # on real-shaped errors: nothing outside the selection is worse than what it holds
    e = analysis.joint_errors(_predictions(1))
    w = analysis.worst_joints(e, 5)
    assert e["error_rel"].nlargest(5).tolist() == w["error_rel"].tolist()


def test_split_picks_maps_dataset_indices_to_grid_rows():
    indices, panels = analysis.split_picks([(105, 3), (101, 0), (105, 7)])
    assert indices == [105, 101, 105] and panels == [(0, 3), (1, 0), (2, 7)]
    frame = pd.DataFrame({"index": np.array([4, 2]), "joint": np.array([16, 1]), "error_rel": [0.3, 0.2]})
    assert analysis.split_picks(frame) == ([4, 2], [(0, 16), (1, 1)])
    with pytest.raises(ValueError):
        analysis.split_picks([])


def test_joint_errors_names_visibility_and_stacking():
    p = _predictions()
    e = analysis.joint_errors(p)
    assert set(e["name"]) <= set(analysis.default_joint_names(17)) and "nose" in analysis.default_joint_names(17)
    assert (e["visibility"] == e["flag"].map({1: "occluded", 2: "visible"})).all()
    with pytest.raises(ValueError, match="joint names"):
        analysis.joint_errors(p, ["a"])
    stacked = analysis.stack_joint_errors({("hdm", 0): p, ("dot", 1): _predictions(2)})
    assert set(zip(stacked["method"], stacked["seed"])) == {("hdm", 0), ("dot", 1)}
    assert (stacked[stacked["method"] == "hdm"]["error_px"].to_numpy() == e["error_px"].to_numpy()).all()
    split = analysis.error_by_visibility(stacked, 0.2, by="method")
    alone = analysis.error_by_visibility(stacked[stacked["method"] == "dot"], 0.2)
    pd.testing.assert_frame_equal(split[split["method"] == "dot"].drop(columns="method").reset_index(drop=True), alone)


def test_error_summary_shares_within_thresholds():
    errors = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "error_rel": [0.01, 0.06, 0.1, 0.4, 0.2, 0.3]})
    s = analysis.error_summary(errors, ["method"]).set_index("method")
    assert s.loc["a", "joints"] == 4 and s.loc["a", "within_0.05"] == 0.25 and s.loc["a", "within_0.1"] == 0.75
    assert s.loc["b", "within_0.1"] == 0 and s.loc["b", "median"] == pytest.approx(0.25)


def test_final_epoch_table_takes_each_runs_last_epoch():
    metrics = {("hdm", 0): pd.DataFrame({"epoch": [2, 1, 3], "AP": [0.2, 0.1, 0.3], "PCK": [1, 2, 3]}),
               ("dot", 1): pd.DataFrame({"epoch": [1, 2], "AP": [0.5, 0.4], "PCK": [4, 5]})}
    table = analysis.final_epoch_table(metrics, ["AP"])
    assert table.to_dict("records") == [{"method": "hdm", "seed": 0, "AP": 0.3}, {"method": "dot", "seed": 1, "AP": 0.4}]
    with pytest.raises(KeyError):
        analysis.final_epoch_table(metrics, ["AR"])


def test_decoder_ablation_crosses_decoders_only_for_the_given_runs():
    def run(decoder, ap):
        return SimpleNamespace(metrics=pd.DataFrame({"epoch": [1, 2], "AP": [0.0, ap]}),
                               config=SimpleNamespace(decoder=decoder))

    runs = {("hdm", 0): run("local_com", 0.5), ("gaussian", 0): run("argmax_shift", 0.4),
            ("hdm_naive", 0): run("local_com", 0.3)}
    calls = []

    def evaluate(r, decoder):
        calls.append((r.config.decoder, decoder))
        return {"AP": {"argmax_shift": 0.45, "local_com": 0.41}[decoder]}

    rows = analysis.decoder_ablation(runs, ["AP"], evaluate, cross=[("hdm", 0), ("gaussian", 0)])
    assert sorted(calls) == [("argmax_shift", "local_com"), ("local_com", "argmax_shift")]
    assert len(rows) == 5 and not rows.duplicated(["model", "seed", "decoder"]).any()
    got = rows.set_index(["model", "decoder"])["AP"]
    assert got[("hdm", "local_com")] == 0.5 and got[("hdm", "argmax_shift")] == 0.45
    assert got[("gaussian", "local_com")] == 0.41 and ("hdm_naive", "argmax_shift") not in got.index


def _table1_summary(ap, pck=None):
    final = pd.DataFrame([{"method": m, "seed": s, **{c: ap[m] + 0.002 * s for c in paper.TABLE1.columns},
                           "PCK": (pck or ap)[m]} for m in ap for s in (0, 1)])
    return analysis.summarise_over_seeds(final, ["method"], list(paper.TABLE1.columns) + ["PCK"])


def test_table1_rows_follow_the_paper_order_ours_then_paper():
    summary = _table1_summary({"hdm": 0.5, "dot": 0.2, "gaussian": 0.4})  # deliberately not in the paper's order
    table = analysis.table1_beside_paper(summary, paper.TABLE1, ("gaussian", "dot", "hdm"), source="ours (smoke)")
    labels = [paper.METHOD_LABELS[m] for m in ("gaussian", "dot", "hdm")]
    assert table["method"].tolist() == [label for label in labels for _ in range(2)]
    assert table["source"].tolist() == ["ours (smoke)", "paper (COCO, W48)"] * 3
    assert list(table.columns) == ["method", "source", *paper.TABLE1.columns]
    ours = table[table["source"] == "ours (smoke)"].set_index("method")
    assert ours.loc["Our method", "AP"] == "50.1 ± 0.1"  # mean ± std of the seeds, in %
    reported = table[table["source"].str.startswith("paper")].set_index("method")
    for method, label in zip(("gaussian", "dot", "hdm"), labels):  # the paper's numbers unchanged
        assert reported.loc[label].drop("source").astype(float).tolist() == paper.TABLE1.loc[method].tolist()
    # a method we did not train keeps the paper's row only
    partial = analysis.table1_beside_paper(summary[summary["method"] != "dot"], paper.TABLE1)
    assert partial.groupby("source").size().to_dict() == {"ours": 2, "paper (COCO, W48)": 3}


def test_rank_order_and_strict_order():
    assert analysis.rank_order({"a": 1.0, "b": 3.0, "c": 2.0}) == "b > c > a"
    assert analysis.rank_order({"a": 1.04, "b": 1.01, "c": 0.5}, {"a": "A"}, digits=1) == "A = b > c"
    assert analysis.strictly_ordered({"a": 3, "b": 2, "c": 1}, ["a", "b", "c"])
    assert not analysis.strictly_ordered({"a": 3, "b": 3, "c": 1}, ["a", "b", "c"])
    assert not analysis.strictly_ordered({"a": 1.04, "b": 1.01}, ["a", "b"], digits=1)


def test_table1_reading_says_reproduced_exactly_when_ours_beats_gaussian_beats_dot():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        ap = dict(zip(("gaussian", "dot", "hdm"), rng.choice([0.1, 0.2, 0.3, 0.31], 3)))
        text = analysis.table1_reading(_table1_summary(ap), "smoke", 2)
        means = {m: round(100 * (ap[m] + 0.001), 1) for m in ap}
        holds = means["hdm"] > means["gaussian"] > means["dot"]
        assert ("**is reproduced**" in text) == holds and ("**is not reproduced**" in text) == (not holds)
        assert f"ours {means['hdm']:.1f}" in text and "77.1 / 46.6 / 78.8" in text
        seen.add(holds)
    assert seen == {True, False}
    agree = analysis.table1_reading(_table1_summary({"gaussian": 0, "dot": 0, "hdm": 0},
                                                    {"gaussian": 0.5, "dot": 0.2, "hdm": 0.7}), "smoke", 2)
    assert "**is not reproduced**" in agree and "**agrees**" in agree and "order Gaussian = dot = ours" in agree
    solver = pd.DataFrame({"eps": [0.5, 0.05], "model": ["Our method"] * 2, "relative_excess": [0.2, 0.01],
                           "gradient_cosine": [0.9, 0.99]})
    assert "ε = 0.05 px" in analysis.table1_reading(_table1_summary({"gaussian": 0, "dot": 0, "hdm": 0}), "s", 1,
                                                     solver=solver)


def _fig2_summary(rho_a, inc_a, rho_b, inc_b):
    per_run = pd.DataFrame([
        {"method": "gaussian", "loss": "pixel-wise MSE", "seed": s, "spearman": rho_a + d, "inconsistent_epochs": inc_a + d}
        for s, d in enumerate((-0.1, 0.1))] + [
        {"method": "hdm", "loss": "ours (EMD)", "seed": s, "spearman": rho_b + d, "inconsistent_epochs": inc_b + d}
        for s, d in enumerate((-0.1, 0.1))])  # fmt: skip
    return analysis.summarise_over_seeds(per_run, ["method", "loss"], ["spearman", "inconsistent_epochs"])


def test_fig2_reading_says_holds_exactly_when_ours_tracks_accuracy_better():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(80):
        rho_a, rho_b = rng.uniform(-1, 1, 2).round(2)
        inc_a, inc_b = rng.integers(0, 4, 2)
        text = analysis.fig2_reading(_fig2_summary(rho_a, inc_a, rho_b, inc_b), "PCK", "smoke", 2, (2, 15))
        holds = rho_b < rho_a and inc_b < inc_a
        assert ("**holds**" in text) == holds and ("**does not hold**" in text) == (not holds)
        assert f"ρ = {rho_b:.2f} (± 0.14)" in text
        seen.add(holds)
    assert seen == {True, False}
    undefined = _fig2_summary(float("nan"), 1, -1, 0)
    assert "**cannot be judged**" in analysis.fig2_reading(undefined, "PCK", "smoke", 2, (2, 15))
    # smoke runs: two epochs cannot tell the losses apart, however the numbers fall
    assert "**cannot be judged** here with only 2 epochs" in analysis.fig2_reading(
        _fig2_summary(0.5, 1, -1, 0), "PCK", "smoke", 2, (1, 2))
    with pytest.raises(KeyError, match="no summary row"):
        analysis.fig2_reading(undefined, "PCK", "smoke", 2, (1, 2), ours=("dot", "ours (EMD)"))


def test_epoch_window_and_accuracy_choice():
    assert analysis.epoch_window(pd.DataFrame({"epoch": [1, 2]}), 2) == (1, 2)  # smoke: 2 epochs
    assert analysis.epoch_window(pd.DataFrame({"epoch": range(1, 16)}), 2) == (2, 15)
    with pytest.raises(ValueError):
        analysis.epoch_window(pd.DataFrame({"epoch": [1]}))
    assert analysis.tracking_accuracy("PCKh") == "PCKh" and analysis.tracking_accuracy("AP") == "PCK"
    assert analysis.tracking_accuracy("AP", "AP") == "AP"
    stacked = analysis.stack_metrics({("hdm", 0): pd.DataFrame({"epoch": [1]}), ("dot", 2): pd.DataFrame({"epoch": [1]})})
    assert stacked[["method", "seed"]].values.tolist() == [["hdm", 0], ["dot", 2]]


def test_theorem1_reading_follows_the_numbers():
    symbolic = {"factor": 2, "residual_is_factor_times_gap": True, "zero_under_eq5": True}
    dataset = {"mean_gap_per_joint": 0.05, "max_gap": 0.1, "eq4_residual_per_image": 1.5, "uniform_reference": 0.04}
    exact = {"relative_residual": 1e-16, "residual": 1e-14, "eq5_gap": 0.0}
    broken = {"relative_residual": 0.02, "residual": 0.8, "eq5_gap": 0.4}
    text = analysis.theorem1_reading(symbolic, exact, broken, dataset)
    assert "**is confirmed**" in text and "**holds**" in text and "**fails**" in text and "1.000 ×" in text
    text = analysis.theorem1_reading({**symbolic, "zero_under_eq5": False}, broken, exact, dataset)
    assert "**is not confirmed**" in text and "**does not hold**" in text and "**still holds**" in text


def test_fig1_and_fig3_readings_follow_the_numbers():
    coords = pd.DataFrame({"baseline error px": [3.0, 1.0, 2.0], "ours error px": [1.0, 2.0, 0.5]})
    reported = analysis.paper_qualitative_rows()
    assert len(reported) == len(paper.FIG1_ROWS)
    assert reported["ours error px"].mean() < reported["baseline error px"].mean()  # the paper's rows favour ours
    text = analysis.fig1_reading(coords, reported)
    assert "closer on 2 of 3" in text and "**agrees**" in text
    assert "**does not agree**" in analysis.fig1_reading(coords.rename(columns={
        "baseline error px": "ours error px", "ours error px": "baseline error px"}), reported)

    def split(share_joints, share_worst):
        return pd.DataFrame([{"model": m, "visibility": v, "share_of_joints": j, "share_of_worst": w}
                             for m in ("baseline", "ours")
                             for v, j, w in (("occluded", share_joints, share_worst),
                                             ("visible", 1 - share_joints, 1 - share_worst))])

    assert "**do** concentrate" in analysis.fig3_reading(split(0.2, 0.5), 0.05)
    assert "**do not** concentrate" in analysis.fig3_reading(split(0.2, 0.2), 0.05)
    assert "**do not** concentrate" in analysis.fig3_reading(split(0.2, 0.22), 0.05)  # 1.1x: what chance gives
    assert "**do** concentrate" in analysis.fig3_reading(split(0.2, 0.25), 0.05)  # 1.25x
    assert "**cannot be tested**" in analysis.fig3_reading(split(0.2, 0.5).query("visibility == 'visible'"), 0.05)


def test_solver_agreement_accepts_arrays():
    g = torch.Generator().manual_seed(1)
    joints = torch.rand(1, 2, 2, generator=g, dtype=torch.float64) * 8
    vis = torch.ones(1, 2, dtype=torch.float64)
    maps, _ = gaussian_heatmaps(joints, vis, (10, 9), 1.5)
    from_tensors = solver_agreement(maps, joints, vis, (0.5,))
    from_arrays = solver_agreement(maps.float().numpy(), joints.numpy(), vis.numpy(), (0.5,))
    assert from_arrays["exact_loss"].iloc[0] == pytest.approx(from_tensors["exact_loss"].iloc[0], rel=1e-5)


# ------------------------------------------------------------------------------------------------ issue 10


def test_paired_difference_pairs_by_seed_with_a_student_t_interval():
    from scipy import stats

    final = pd.DataFrame({"method": ["hdm"] * 3 + ["gaussian"] * 4, "seed": [0, 1, 2, 0, 1, 2, 3],
                          "AP": [0.50, 0.60, 0.55, 0.40, 0.58, 0.50, 0.9]})  # fmt: skip
    row = analysis.paired_difference(final, ["AP"]).iloc[0]
    diffs = np.array([0.10, 0.02, 0.05])  # seed 3 has no pair: left out
    assert row["n"] == 3 and row["mean"] == pytest.approx(diffs.mean())
    assert row["std"] == pytest.approx(diffs.std(ddof=1))
    low, high = stats.t.interval(0.95, 2, loc=diffs.mean(), scale=stats.sem(diffs))
    assert (row["low"], row["high"]) == pytest.approx((low, high))
    single = analysis.paired_difference(final[final["seed"] == 0], ["AP"]).iloc[0]
    assert single["n"] == 1 and np.isnan(single["std"]) and np.isnan(single["low"])
    with pytest.raises(ValueError, match="no seed"):
        analysis.paired_difference(final[final["method"] == "hdm"], ["AP"])


def _sweep_final():
    rows = []
    for variant, acc in (("hdm", 0.30), ("hdm+supplier:softplus", 0.60), ("hdm+lr:3e-4", 0.45), ("hdm+lr:1e-4", 0.2),
                         ("hdm_sinkhorn+epochs:2", 0.9), ("hdm+epochs:2", 0.95)):  # fmt: skip
        rows.append({"variant": variant, "seed": 0, "PCK": acc, "err_hm": 1 - acc, "supplier_mass": 1.0,
                     "dead_share": 0.5, "head_grad": 0.1, "train_loss": 1.0, "val_hdm": 2.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_best_relu_setting_is_chosen_among_faithful_full_runs_only(tmp_path):
    summary = analysis.sweep_summary(_sweep_final(), "PCK")
    assert summary["variant"].iloc[0] == "hdm+epochs:2" and summary.set_index("variant").loc[
        "hdm+supplier:softplus", "supplier"] == "softplus"  # fmt: skip
    # softplus is best among full runs, but not the paper's suppliers; short runs do not count
    assert analysis.best_relu_variant(summary, "PCK") == "hdm+lr:3e-4"
    path = tmp_path / "sweep.csv"
    summary.to_csv(path, index=False)
    assert analysis.our_setting("auto", path) == "hdm+lr:3e-4"
    assert analysis.our_setting("auto", tmp_path / "missing.csv") == "hdm"
    assert analysis.our_setting("hdm+lr:1e-4", path) == "hdm+lr:1e-4"


def test_the_long_scale_screens_its_dynamics_runs_and_table1_trains_the_pick_in_full():
    from hdm.config import variant_preset

    assert analysis.dynamics_screen_epochs("long") == 5
    assert analysis.dynamics_screen_epochs("default") is None and analysis.dynamics_screen_epochs("smoke") is None
    assert analysis.dynamics_screen_epochs("long", None) is None and analysis.dynamics_screen_epochs("smoke", 3) == 3
    for bad in (0, -1, True, 2.5, "five"):
        with pytest.raises(ValueError, match="screen_epochs"):
            analysis.dynamics_screen_epochs("long", bad)
    screen = variant_preset("long", analysis.screened("hdm+lr:3e-4", 5))
    full = variant_preset("long", analysis.screened("hdm+lr:3e-4", None))
    assert (screen.epochs, screen.lr) == (5, 3e-4) and (full.epochs, full.lr) == (20, 3e-4)
    assert screen.replace(epochs=20) == full  # a screen differs from the full run in its length only


def test_dynamics_reading_states_what_the_numbers_say():
    epochs = []
    for variant, dead, acc in (("hdm", 0.8, 0.2), ("hdm+supplier:softplus", 0.3, 0.5)):
        for epoch in (1, 2, 3):
            epochs.append({"variant": variant, "seed": 0, "epoch": epoch, "dead_share": dead, "supplier_mass": 2.0,
                           "head_grad": 0.01, "PCK": acc})  # fmt: skip
    per_epoch = pd.DataFrame(epochs)
    summary = analysis.sweep_summary(per_epoch[per_epoch["epoch"] == 3].drop(columns="epoch"), "PCK")
    text = analysis.dynamics_reading(per_epoch, summary, "PCK", "smoke")
    assert "80 %" in text and "30 %" in text and "are deader" in text and "trains worse" in text
    assert "No swept setting beats" in text
    flipped = per_epoch.assign(PCK=per_epoch["PCK"][::-1].to_numpy())
    text = analysis.dynamics_reading(flipped, analysis.sweep_summary(flipped[flipped["epoch"] == 3].drop(
        columns="epoch"), "PCK"), "PCK", "smoke")  # fmt: skip
    assert "does not train worse" in text


def test_a_miss_is_an_identity_error_when_the_prediction_sits_on_the_twins_truth():
    # two persons of size 100 px (scale 0.625 -> 200 * 0.625 / 1.25), joints 1 and 2 are twins (COCO eyes)
    truth = np.zeros((2, 17, 2))
    truth[:, 1], truth[:, 2] = (10.0, 0.0), (40.0, 0.0)
    coords = truth.copy()
    coords[0, 1] = truth[0, 2]            # person 0: left eye found on the right eye: a miss, as twin
    coords[1, 5] = truth[1, 5] + (0, 30)  # person 1: left shoulder 30 px off, no twin nearer: a localisation miss
    coords[1, 7] = truth[1, 7] + (0, 5)   # within 0.1 x size: not a miss
    flags = np.full((2, 17), 2)
    predictions = {"keypoint_flags": flags, "image_coords": coords, "image_joints": truth,
                   "scale": np.full((2, 2), 0.625)}
    shares = analysis.miss_breakdown(predictions)
    assert shares["joints"] == 34
    assert shares["missed"] == pytest.approx(2 / 34)
    assert shares["missed_as_twin"] == pytest.approx(1 / 34)
    assert shares["missed_localisation"] == pytest.approx(1 / 34)
    # an unlabelled twin cannot explain a miss; an unlabelled joint is not counted
    flags[0, 2] = 0
    shares = analysis.miss_breakdown(predictions)
    assert shares["joints"] == 33 and shares["missed_as_twin"] == 0 and shares["missed"] == pytest.approx(2 / 33)
    # without twins every miss is a localisation miss
    assert analysis.miss_breakdown(predictions, flip_pairs=())["missed_as_twin"] == 0


def test_window_gains_measure_a_known_curve_between_checkpoints_and_flag_learning_rate_changes():
    epochs = np.arange(1, 13)
    lr = np.where(epochs <= 8, 1e-3, 1e-4)  # dropped after epoch 8, as lr_steps=(8,) does
    ap = 0.02 * epochs  # rises 0.02 an epoch
    gains = analysis.window_gains(pd.DataFrame({"epoch": epochs[::-1], "lr": lr[::-1], "AP": ap[::-1]}), "AP", 5)
    assert gains[["from_epoch", "to_epoch"]].values.tolist() == [[1, 5], [5, 10], [10, 12]]
    assert np.allclose(gains["gain"], [0.08, 0.10, 0.04])
    assert np.allclose(gains["end"] - gains["start"], gains["gain"])
    assert gains["lr"].tolist() == [1e-3, "mixed", 1e-4]
    with pytest.raises(ValueError, match="at least 2 epochs"):
        analysis.window_gains(pd.DataFrame({"epoch": [1], "lr": [1e-3], "AP": [0.1]}), "AP")
    with pytest.raises(ValueError, match="window"):
        analysis.window_gains(pd.DataFrame({"epoch": epochs, "lr": lr, "AP": ap}), "AP", 0)


def test_longer_baseline_only_at_the_long_scale_and_it_only_lengthens_the_gaussian_schedule():
    from hdm.config import variant_preset

    assert analysis.longer_baseline("smoke") is None and analysis.longer_baseline("default") is None
    assert analysis.longer_baseline("long", None) is None
    assert analysis.longer_baseline("long", "gaussian+epochs:30") == "gaussian+epochs:30"
    base = variant_preset("long", "gaussian", seed=0)
    longer = variant_preset("long", analysis.longer_baseline("long"), seed=0)
    assert longer.epochs == 2 * base.epochs and longer.lr_steps[0] > base.epochs
    assert longer.replace(epochs=base.epochs, lr_steps=base.lr_steps) == base
    with pytest.raises(ValueError, match="longer_baseline='gaussian\\+epochz:40'"):
        analysis.longer_baseline("long", "gaussian+epochz:40")


def test_distinct_from_ours_drops_only_variants_with_our_exact_configuration():
    # the long preset's lr is 1e-3, so "hdm+lr:1e-3" is plain "hdm"; "hdm+lr:1e-4" is another run
    variants = ["hdm+lr:1e-3", "hdm+supplier:softplus", "hdm+lr:1e-4"]
    assert analysis.distinct_from_ours("long", variants, "hdm") == ["hdm+supplier:softplus", "hdm+lr:1e-4"]
    assert analysis.distinct_from_ours("long", variants, "hdm+lr:1e-4") == ["hdm+lr:1e-3", "hdm+supplier:softplus"]


# ---------------------------------------------------------------------------------------------------------
# The package's shape: one module per job, every public name still reachable as analysis.<name>

import ast
from pathlib import Path

import hdm.analysis
import hdm.experiments

ANALYSIS = Path(hdm.analysis.__file__).parent


def _public_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
            [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        names |= {n for n in targets if not n.startswith("_")}
    return names


def test_every_public_name_of_the_notebook_modules_is_reexported():
    for path in [ANALYSIS / "stats.py", ANALYSIS / "errors.py", ANALYSIS / "readings.py", ANALYSIS / "mechanism.py",
                 Path(hdm.experiments.__file__)]:
        missing = _public_names(path) - set(hdm.analysis.__all__)
        assert not missing, f"{path.name}: {sorted(missing)} not re-exported by hdm.analysis"
    assert all(hasattr(hdm.analysis, name) for name in hdm.analysis.__all__)


def test_no_analysis_module_is_over_400_lines():
    for path in [*ANALYSIS.glob("*.py"), Path(hdm.experiments.__file__)]:
        assert len(path.read_text().splitlines()) < 400, path.name


def test_the_mechanism_screens_and_the_best_repair():
    from hdm import experiments
    from hdm.config import variant_preset

    assert experiments.mechanism_screens("default") == []
    screens = experiments.mechanism_screens("long")
    assert screens[0] == "hdm+supply_guard:strict" and len(screens) >= 4
    for spec in screens:  # every screen is a valid variant that differs from plain hdm
        assert variant_preset("long", spec) != variant_preset("long", "hdm")
    summary = pd.DataFrame({"variant": ["hdm+epochs:5", "hdm+head_bias:0.1+epochs:5", "hdm+level_weight:1+epochs:5"],
                            "PCK_mean": [0.3, 0.5, 0.4]})  # fmt: skip
    assert experiments.best_repair(summary, "PCK") == "hdm+head_bias:0.1"
    assert experiments.best_repair(summary.iloc[:1], "PCK") is None
    assert experiments.repair_label("hdm+head_bias:0.1+epochs:5").startswith("ours, repaired: head bias")
    with pytest.raises(ValueError, match="not one of the repairs"):
        experiments.repair_label("hdm+lr:1e-4")


def _dynamics_frames(final: dict[str, tuple[float, float]], shares: bool = True):
    """(per_epoch, summary) of one seed over 2 epochs: ``{variant: (final PCK, final val_no_positive_share)}``."""
    rows = []
    for variant, (acc, share) in final.items():
        for epoch in (1, 2):
            rows.append({"variant": variant, "seed": 0, "epoch": epoch, "dead_share": 0.5, "supplier_mass": 1.0,
                         "head_grad": 0.1, "PCK": acc * epoch / 2, "val_no_positive_share": share * epoch / 2})
    per_epoch = pd.DataFrame(rows)
    if not shares:
        per_epoch = per_epoch.drop(columns="val_no_positive_share")
    return per_epoch, analysis.sweep_summary(per_epoch[per_epoch["epoch"] == 2].drop(columns="epoch"), "PCK")


def test_dynamics_reading_states_the_mechanism_screens_as_the_numbers_have_them():
    base = {"hdm": (0.30, 0.10), "hdm+supplier:softplus": (0.40, 0.0), "gaussian": (0.99, 0.0)}
    screens = {"hdm+supply_guard:strict": (0.05, 0.80), "hdm+head_bias:0.1": (0.35, 0.0),
               "hdm+level_weight:1": (0.20, 0.05)}  # fmt: skip
    text = analysis.dynamics_reading(*_dynamics_frames({**base, **screens}), "PCK", "smoke")
    assert "PCK ends at 5.0, lower than guarded relu's 30.0" in text
    assert "80 % of its validation maps have no pixel > 0 at the end (guarded relu: 10 %)" in text
    assert "The best repair is `hdm+head_bias:0.1`" in text and "PCK ends at 35.0, higher than guarded relu's" in text
    assert "No swept setting beats" in text  # neither the screens nor the Gaussian reference count as settings
    # the other way round, and without the per-epoch shares (older runs): the accuracies only
    flipped = {**screens, "hdm+supply_guard:strict": (0.45, 0.80), "hdm+head_bias:0.1": (0.10, 0.0)}
    text = analysis.dynamics_reading(*_dynamics_frames({**base, **flipped}, shares=False), "PCK", "smoke")
    assert "PCK ends at 45.0, higher than guarded relu's 30.0." in text and "validation maps" not in text
    assert "The best repair is `hdm+level_weight:1`" in text and "PCK ends at 20.0, lower than guarded relu's" in text
    # screened names (long scale) read the same
    screened = {analysis.screened(v, 5): value for v, value in {**base, **screens}.items()}
    screened["hdm"] = screened.pop("hdm+epochs:5")
    screened["hdm+supplier:softplus"] = screened.pop("hdm+supplier:softplus+epochs:5")
    per_epoch, summary = _dynamics_frames(screened)
    assert "80 % of its validation maps" in analysis.dynamics_reading(per_epoch, summary, "PCK", "long")


def test_dynamics_reading_without_the_mechanism_screens_says_nothing_of_them():
    text = analysis.dynamics_reading(*_dynamics_frames({"hdm": (0.3, 0.1), "hdm+supplier:softplus": (0.4, 0.0)}),
                                     "PCK", "default")  # fmt: skip
    assert text.endswith("No swept setting beats relu's defaults (PCK 30.0).")
    assert "strict" not in text and "repair" not in text
