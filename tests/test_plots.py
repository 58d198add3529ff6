"""Figure and table writers put PNG+PDF and CSV+Markdown where hdm.paths says; the seaborn figures draw what they
claim (bands of ± one sd over seeds, one mark per model and joint) in the one theme."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from hdm import analysis, plots, theory


def _metrics():
    return pd.DataFrame({"epoch": [1, 2, 3, 1, 2, 3], "seed": [0, 0, 0, 1, 1, 1],
                         "val_mse": [3, 2, 1, 3, 2.5, 1], "AP": [0.1, 0.2, 0.3, 0.1, 0.3, 0.2]})


def test_save_figure_and_table_write_both_formats(tmp_path):
    fig, ax = plt.subplots()
    plots.loss_accuracy_panel(ax, _metrics(), "val_mse", "AP", "MSE", "AP", first_epoch=1)
    png, pdf = plots.save_figure(fig, "panel", tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    csv, md = plots.save_table(pd.DataFrame({"method": ["a"], "AP": [0.5]}), "t", tmp_path)
    assert pd.read_csv(csv).loc[0, "AP"] == 0.5
    assert "| method" in md.read_text() and "0.500" in md.read_text()
    plt.close(fig)


def test_loss_accuracy_panel_draws_the_seed_mean_with_a_one_sd_band():
    fig, ax = plt.subplots()
    metrics = _metrics()
    right = plots.loss_accuracy_panel(ax, metrics, "val_mse", "AP", "MSE", "AP", first_epoch=2)
    stats = metrics[metrics["epoch"] >= 2].groupby("epoch")
    for axis, column in ((ax, "val_mse"), (right, "AP")):
        (line,), (band,) = axis.lines, axis.collections  # one mean curve, one band
        assert line.get_xdata().tolist() == [2, 3]
        assert np.allclose(line.get_ydata(), stats[column].mean())
        vertices = band.get_paths()[0].vertices
        at_2 = vertices[np.isclose(vertices[:, 0], 2), 1]
        mean, sd = stats[column].mean()[2], stats[column].std()[2]  # sd over seeds, ddof = 1
        assert np.isclose(at_2.min(), mean - sd) and np.isclose(at_2.max(), mean + sd)
    assert not right.xaxis.get_gridlines()[0].get_visible()  # the twin axis draws no second grid
    plt.close(fig)


def test_loss_accuracy_figure_lays_out_one_panel_per_entry():
    metrics = pd.concat([_metrics().assign(method="hdm"), _metrics().assign(method="gaussian", val_mse=1.0)])
    panels = [("hdm", "val_mse", "MSE", "a"), ("gaussian", "val_mse", "MSE", "b"), ("hdm", "val_mse", "MSE", "c")]
    fig = plots.loss_accuracy_figure(metrics, panels, "AP", first_epoch=1)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"]
    assert np.allclose(shown[1].lines[0].get_ydata(), 1.0)  # the panel reads its own method's rows
    assert sum(not ax.get_visible() for ax in fig.axes) == 1  # 2 x 2 grid, the fourth cell hidden
    plt.close(fig)


def test_joint_error_figure_one_mark_per_model_and_joint_in_method_colours():
    rng = np.random.default_rng(0)
    predictions = {(m, 0): {"index": np.arange(30), "keypoint_flags": rng.integers(1, 3, size=(30, 17)),
                            "image_joints": rng.normal(size=(30, 17, 2)) * 30,
                            "image_coords": rng.normal(size=(30, 17, 2)) * 30, "scale": np.full((30, 2), 1.25)}
                   for m in ("gaussian", "hdm")}
    errors = analysis.stack_joint_errors(predictions)
    fig = plots.joint_error_figure(errors, "method", hue_order=["gaussian", "hdm"], labels={"hdm": "ours"})
    ecdf, points = fig.axes[:2]
    colours = {"gaussian": plots.color("gaussian"), "hdm": plots.color("hdm")}
    assert {tuple(line.get_color()) for line in ecdf.lines[:2]} == set(colours.values())
    assert [t.get_text() for t in points.get_yticklabels()] == list(analysis.default_joint_names(17))  # joint order
    assert ecdf.get_xscale() == "log" and points.get_xscale() == "log"
    marks = {tuple(line.get_color()): line.get_xdata() for line in points.lines if line.get_marker() == "o" and len(line.get_xdata())}
    for method, colour in colours.items():  # the median per joint (taken on the log axis), in joint order
        log_median = errors[errors["method"] == method].groupby("joint")["error_rel"].apply(
            lambda v: np.exp(np.median(np.log(v))))
        assert np.allclose(marks[colour], log_median.to_numpy())
    plt.close(fig)
    by_visibility = plots.joint_error_figure(errors.assign(model=errors["method"]), "model", by="visibility")
    assert [t.get_text() for t in by_visibility.axes[1].get_yticklabels()] == ["occluded", "visible"]
    plt.close(by_visibility)


def test_eq5_violation_figure_one_panel_per_sigma_without_grid():
    table = theory.eq5_violation_table(theory.offset_grid(5, 0.5), sigmas=(1.0, 2.0))
    fig = plots.eq5_violation_figure(table)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["sigma = 1 px", "sigma = 2 px"]
    grid = table[table["sigma"] == 2.0].pivot(index="offset_y", columns="offset_x", values="eq4_residual")
    assert np.allclose(panels[1].images[0].get_array(), grid.to_numpy())
    assert not any(line.get_visible() for line in panels[0].xaxis.get_gridlines())
    plt.close(fig)


def test_one_theme_and_one_colour_per_method():
    plots.set_theme()
    assert matplotlib.rcParams["axes.grid"] and matplotlib.rcParams["savefig.dpi"] == 150
    assert plots.color("hdm") == plots.color("ours") == plots.color("hdm+supplier:softplus")
    assert plots.color("gaussian") == plots.color("baseline") != plots.color("hdm")
    assert plots.color("dot") in sns.color_palette("colorblind")


def test_heatmap_overlay_aligns_pixel_centres():
    fig, ax = plt.subplots()
    crop = np.zeros((16, 12, 3))
    heat = np.zeros((4, 3))
    plots.heatmap_overlay(ax, crop, heat, {"gt": np.array([4.0, 8.0])})
    # the heatmap image spans pixel centres i * stride: extent from -0.5*stride to (w - 0.5)*stride
    assert ax.images[1].get_extent() == [-2.0, 10.0, 14.0, -2.0]
    assert ax.lines[0].get_xdata()[0] == 4.0
    plt.close(fig)
