"""Finding vs placing and the shift test (hdm.analysis.mechanism) on hand-made predictions and maps."""

import numpy as np
import pytest
import torch

from hdm.analysis.mechanism import finding_placing, found_mask, no_positive_share, shift_test
from hdm.loss import HDMLoss


def _predictions(coords_hm: np.ndarray, joints_hm: np.ndarray, flags: np.ndarray) -> dict:
    """Heatmap px = image px / 4 (crop stride), persons of size 200 * 1.25 / 1.25 = 200 image px."""
    n = len(coords_hm)
    return {"coords": coords_hm, "joints": joints_hm, "image_coords": 4 * coords_hm, "image_joints": 4 * joints_hm,
            "keypoint_flags": flags, "visibility": (flags > 0).astype(float), "scale": np.full((n, 2), 1.25),
            "index": np.arange(n)}  # fmt: skip


def test_finding_vs_placing_judges_placing_on_the_joints_every_model_found():
    joints = np.zeros((2, 3, 2)) + 10.0
    flags = np.array([[2, 2, 1], [2, 0, 2]])
    # person size 200 image px: found when the image error <= 20 px, i.e. heatmap error <= 5 px
    a = joints + np.array([[[1, 0], [0, 0.5], [0, 4]], [[3, 0], [9, 9], [0, 6]]])  # finds 4 of 5 labelled
    b = joints + np.array([[[0, 2], [8, 0], [0, 1]], [[0, 0.5], [0, 0], [0, 0]]])  # finds 4 of 5: not (0, 1)
    runs = {("a", 0): _predictions(a, joints, flags), ("b", 0): _predictions(b, joints, flags)}
    np.testing.assert_array_equal(found_mask(runs[("a", 0)]), [[True, True, True], [True, False, False]])
    table = finding_placing(runs).set_index("method")
    assert table.loc["a", "joints"] == 5 and table.loc["a", "found_share"] == pytest.approx(4 / 5)
    assert table.loc["b", "found_share"] == pytest.approx(4 / 5)
    # common: (0, 0), (0, 2), (1, 0)
    assert table.loc["a", "common_joints"] == 3
    assert table.loc["a", "common_mean_err_hm"] == pytest.approx((1 + 4 + 3) / 3)
    assert table.loc["b", "common_mean_err_hm"] == pytest.approx((2 + 1 + 0.5) / 3)
    assert table.loc["b", "common_median_err_hm"] == pytest.approx(1.0)
    assert table.loc["a", "found_mean_err_hm"] == pytest.approx((1 + 0.5 + 4 + 3) / 4)
    other = _predictions(a[::-1].copy(), joints, flags)
    other["index"] = other["index"][::-1].copy()
    with pytest.raises(ValueError, match="other persons"):
        finding_placing({("a", 0): runs[("a", 0)], ("c", 0): other})


def test_shift_test_on_known_geometry():
    h, w = 12, 10
    yy, xx = np.mgrid[0:h, 0:w]
    joint = torch.tensor([[[4.0, 5.0]]], dtype=torch.float64)
    peak_on_floor = 0.1 + np.where((xx == 4) & (yy == 5), 0.9, 0.0)  # spread floor: lowering removes it
    single_far = np.where((xx == 7) & (yy == 1), 1.0, -0.2)  # one positive pixel: its shape never changes
    maps = torch.from_numpy(np.stack([peak_on_floor, single_far]))[:, None]  # (2, 1, H, W)
    joints, weight = joint.expand(2, 1, 2), torch.ones(2, 1, dtype=torch.float64)
    strict = HDMLoss(reduction="none", supply_guard="strict")  # no ε guard: the geometry is exact
    table = shift_test(maps, joints, weight, shifts=(0.0, 0.25, 0.5), loss=strict).set_index("shift")
    assert table.loc[0.0, "lowered_share"] == 0.0
    assert table.loc[0.25, "lowered_share"] == pytest.approx(0.5)  # the floored map only
    far = np.hypot(7 - 4, 1 - 5)
    assert table.loc[0.5, "mean_emd"] == pytest.approx(far / 2, rel=1e-4)  # floor gone: 0 + far, over 2 joints
    assert table.loc[0.5, "no_positive_share"] == 0.0
    assert no_positive_share(maps - 1.0) == 1.0 and no_positive_share(maps, weight) == 0.0
    guarded = shift_test(maps, joints, weight, shifts=(0.0, 0.25)).set_index("shift")  # the training loss
    assert guarded.loc[0.25, "lowered_share"] == pytest.approx(0.5)  # the guard's ε effect stays below tol
    assert guarded.loc[0.25, "mean_relative_change"] < 0


def _summary(rows: dict[str, float]):
    """A sweep summary of one seed per variant with the given final PCK."""
    import pandas as pd

    from hdm.analysis import sweep_summary

    final = pd.DataFrame([{"variant": v, "seed": 0, "PCK": acc, "err_hm": 1 - acc} for v, acc in rows.items()])
    return sweep_summary(final, "PCK")


def test_our_method_is_never_a_mechanism_screen_nor_the_gaussian_reference():
    from hdm.experiments import REPAIRS, STRICT_SCREEN, best_relu_variant, dynamics_reference, mechanism_screens

    # every screen and the Gaussian reference beat every relu setting: none of them may be picked
    screens = mechanism_screens("smoke")
    assert set(screens) == {STRICT_SCREEN, *REPAIRS}
    summary = _summary({"hdm": 0.2, "hdm+lr:3e-4": 0.3, **{s: 0.9 for s in screens}, "gaussian": 0.95})
    assert summary.set_index("variant").loc["gaussian", "supplier"] == "-"
    assert (summary.set_index("variant").loc[screens, "supplier"] == "relu").all()  # relu, yet not candidates
    assert best_relu_variant(summary, "PCK") == "hdm+lr:3e-4"
    # screened (epoch-limited) screens are left out too, also when epoch-limited runs count
    screened = _summary({"hdm+epochs:5": 0.2, **{f"{s}+epochs:5": 0.9 for s in screens}})
    assert best_relu_variant(screened, "PCK", exact_only=False) == "hdm+epochs:5"
    with pytest.raises(ValueError, match="no relu-supplier variant"):
        best_relu_variant(_summary({s: 0.9 for s in screens}), "PCK")
    # the setting a screen deviates from still counts once it is the best plain relu setting
    assert best_relu_variant(_summary({"hdm": 0.2, "hdm+head_bias:0.05": 0.5, "hdm+head_bias:0.1": 0.9}),
                             "PCK") == "hdm+head_bias:0.05"  # fmt: skip


def test_the_dynamics_reference_is_the_gaussian_model_at_every_scale():
    from hdm.config import SCALES, variant_preset
    from hdm.experiments import dynamics_reference, screened

    for scale in SCALES:
        assert dynamics_reference(scale) == ["gaussian"]
        cfg = variant_preset(scale, screened(dynamics_reference(scale)[0], 5))
        assert cfg.method == "gaussian" and cfg.epochs == 5  # trained on the same screen schedule as the others


def test_the_shift_test_leaves_an_all_nonpositive_map_where_it_is():
    maps = torch.stack([torch.full((8, 8), -0.5, dtype=torch.float64), torch.rand(8, 8, dtype=torch.float64)])
    joints, weight = torch.full((1, 2, 2), 3.0, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    table = shift_test(maps[None], joints, weight, shifts=(0.0, 0.5)).set_index("shift")
    assert table.loc[0.0, "no_positive_share"] == table.loc[0.5, "no_positive_share"] == 0.5
    alone = shift_test(maps[None, :1], joints[:, :1], weight[:, :1], shifts=(0.0, 0.5)).set_index("shift")
    assert alone.loc[0.5, "mean_relative_change"] == 0.0 and alone.loc[0.5, "lowered_share"] == 0.0
