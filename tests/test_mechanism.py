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
