"""Figure and table writers put PNG+PDF and CSV+Markdown where hdm.paths says."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hdm import plots


def test_save_figure_and_table_write_both_formats(tmp_path):
    fig, ax = plt.subplots()
    metrics = pd.DataFrame({"epoch": [1, 2, 3, 1, 2, 3], "seed": [0, 0, 0, 1, 1, 1],
                            "val_mse": [3, 2, 1, 3, 2.5, 1], "AP": [0.1, 0.2, 0.3, 0.1, 0.3, 0.2]})
    right = plots.loss_accuracy_panel(ax, metrics, "val_mse", "AP", "MSE", "AP", first_epoch=1)
    assert len(ax.lines) == 3 and len(right.lines) == 3  # 2 seeds + mean on each axis
    png, pdf = plots.save_figure(fig, "panel", tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    csv, md = plots.save_table(pd.DataFrame({"method": ["a"], "AP": [0.5]}), "t", tmp_path)
    assert pd.read_csv(csv).loc[0, "AP"] == 0.5
    assert "| method" in md.read_text() and "0.500" in md.read_text()


def test_heatmap_overlay_aligns_pixel_centres():
    fig, ax = plt.subplots()
    crop = np.zeros((16, 12, 3))
    heat = np.zeros((4, 3))
    plots.heatmap_overlay(ax, crop, heat, {"gt": np.array([4.0, 8.0])})
    # the heatmap image spans pixel centres i * stride: extent from -0.5*stride to (w - 0.5)*stride
    assert ax.images[1].get_extent() == [-2.0, 10.0, 14.0, -2.0]
    assert ax.lines[0].get_xdata()[0] == 4.0
    plt.close(fig)
