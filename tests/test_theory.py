"""Theorem 1 (supplementary D): sympy results, the numeric identity on real targets, and where eq. 5 breaks."""

import math

import pytest
import sympy as sp
import torch

from hdm.targets import dot_heatmaps, gaussian_heatmaps
from hdm.theory import (
    EQ4_RESIDUAL_FACTOR,
    dataset_eq5_violation,
    eq5_violation,
    eq5_violation_closed_form,
    eq5_violation_table,
    offset_grid,
    subpixel_gaussian_heatmaps,
    symbolic_check,
    theorem1_terms,
    uniform_offset_eq5_violation,
)

HEATMAP = (16, 12)  # (H, W)


@pytest.fixture(scope="module")
def sym():
    return symbolic_check(n_pixels=3, n_samples=2)


def _random_joints(batch, joints, seed, margin=2.0):
    """Joints in and slightly outside a HEATMAP-sized map, with ~20 % unlabelled: (B, K, 2), (B, K) float64."""
    g = torch.Generator().manual_seed(seed)
    height, width = HEATMAP
    xy = torch.rand(batch, joints, 2, generator=g, dtype=torch.float64)
    xy = xy * torch.tensor([width + 2 * margin, height + 2 * margin], dtype=torch.float64) - margin
    vis = (torch.rand(batch, joints, generator=g) > 0.2).double()
    return xy, vis


def _random_pred(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ---- symbolic -------------------------------------------------------------------------------------------------


def test_residual_is_twice_the_eq5_gap(sym):
    assert sym["factor"] == 2 and sym["gram_factor"] == 2 and EQ4_RESIDUAL_FACTOR == 2
    assert sym["residual_is_factor_times_gap"] and sym["gram_residual_is_factor_times_gap"]
    # Independent statement in the abstract inner-product model: lhs - rhs = 2 (<d,d> - <g,d>).
    g_dd, g_dg = sp.Symbol("G_{dd}", real=True), sp.Symbol("G_{dg}", real=True)
    assert sp.expand(sym["gram_residual"] - 2 * (g_dd - g_dg)) == 0
    # In coordinates (2 images, 3 pixels, E = mean): lhs - rhs = (2/2) Σ_s Σ_i (d_si^2 - g_si d_si).
    d = {(s, i): sp.Symbol(f"d_{s}_{i}", real=True) for s in range(2) for i in range(3)}
    g = {(s, i): sp.Symbol(f"g_{s}_{i}", real=True) for s in range(2) for i in range(3)}
    expected = sum(d[k] ** 2 - g[k] * d[k] for k in d)
    assert sp.expand(sym["residual"] - expected) == 0


def test_other_sizes_give_the_same_factor():
    out = symbolic_check(n_pixels=4, n_samples=1)
    assert out["factor"] == 2 and out["zero_under_eq5"] and out["eq6_steps_needing_eq5"] == ["4→5"]


def test_residual_vanishes_exactly_under_eq5(sym):
    assert sym["residual_under_eq5"] == 0 and sym["zero_under_eq5"] is True
    assert sym["gram_zero_under_eq5"]


def test_residual_without_eq5(sym):
    gamma = sym["peak"]
    assert sp.simplify(sym["residual_without_eq5"] - 2 * (1 - gamma)) == 0
    assert sym["residual_without_eq5"].subs(gamma, sp.Rational(1, 2)) == 1  # nonzero off the assumption
    dx, dy = sym["offset"]
    sigma = sym["sigma"]
    expected = 2 * (1 - sp.exp(-(dx**2 + dy**2) / (2 * sigma**2)))
    assert sp.simplify(sym["residual_subpixel"] - expected) == 0
    assert sym["residual_subpixel"].subs({dx: 0, dy: 0}) == 0
    assert "gamma" in sym["latex"]["residual_without_eq5"]


def test_eq6_every_step_is_an_identity_except_the_one_using_eq5(sym):
    steps = sym["eq6_steps"]
    assert [s["step"] for s in steps] == ["1→2", "2→3", "3→4", "4→5", "5→6", "6→7"]
    for s in steps:
        if s["step"] == "4→5":
            assert not s["identity"] and not s["gram_identity"]
        else:
            assert s["identity"] and s["gram_identity"] and s["difference"] == 0
        assert s["holds_under_eq5"] and s["gram_holds_under_eq5"]
    # Step 4→5 replaces 2||d||^2 by 2<g,d>: its difference is minus the residual.
    step45 = steps[3]
    assert sp.expand(step45["difference"] + sym["residual"]) == 0
    assert sp.expand(step45["gram_difference"] + sym["gram_residual"]) == 0
    assert sym["eq6_steps_needing_eq5"] == ["4→5"] and sym["eq6_chain_holds_under_eq5"]


def test_symbolic_check_rejects_degenerate_sizes():
    with pytest.raises(ValueError, match="n_pixels"):
        symbolic_check(n_pixels=1)


# ---- numeric --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_theorem1_holds_on_hrnet_targets(sigma):
    joints, vis = _random_joints(3, 5, seed=int(sigma))
    gauss, _ = gaussian_heatmaps(joints, vis, HEATMAP, sigma)
    dot, _ = dot_heatmaps(joints, vis, HEATMAP)
    pred = _random_pred(gauss.shape, seed=10)
    t = theorem1_terms(pred, gauss, dot)
    assert t["eq5_gap"] == 0.0
    assert abs(t["residual"]) <= 1e-10 * abs(t["lhs"]) and t["relative_residual"] <= 1e-10
    # Each risk against torch's summed MSE divided by the number of images.
    mse = torch.nn.functional.mse_loss
    assert t["R_dot"] == pytest.approx(mse(pred, dot, reduction="sum").item() / 3, rel=1e-12)
    assert t["R_gau"] == pytest.approx(mse(pred, gauss, reduction="sum").item() / 3, rel=1e-12)
    assert t["C"] == pytest.approx(mse(gauss, dot, reduction="sum").item() / 3, rel=1e-12)
    assert t["E_pred_dot"] == pytest.approx(torch.einsum("bkhw,bkhw->", pred, dot).item() / 3, rel=1e-12)


def test_residual_is_twice_the_gap_for_arbitrary_targets():
    shape = (2, 3, *HEATMAP)
    pred, gauss, dot = (_random_pred(shape, seed) for seed in (1, 2, 3))
    t = theorem1_terms(pred, gauss, dot)
    assert abs(t["residual"]) > 1.0  # eq. 5 fails for random maps ...
    assert abs(t["residual"] - EQ4_RESIDUAL_FACTOR * t["eq5_gap"]) <= 1e-10 * abs(t["lhs"])  # ... and this holds


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_residual_is_twice_the_gap_for_subpixel_gaussians(sigma):
    joints, vis = _random_joints(4, 6, seed=7)
    gauss, _ = subpixel_gaussian_heatmaps(joints, vis, HEATMAP, sigma)
    dot, _ = dot_heatmaps(joints, vis, HEATMAP)
    t = theorem1_terms(_random_pred(gauss.shape, seed=8), gauss, dot)
    assert t["eq5_gap"] > 0.01
    assert abs(t["residual"] - EQ4_RESIDUAL_FACTOR * t["eq5_gap"]) <= 1e-10 * abs(t["lhs"])
    # The dataset summary predicts the same residual without any prediction.
    summary = dataset_eq5_violation(joints, vis, HEATMAP, sigma)
    assert summary["eq4_residual_per_image"] == pytest.approx(t["residual"], rel=1e-9)


def test_theorem1_terms_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        theorem1_terms(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))


# ---- where eq. 5 breaks ---------------------------------------------------------------------------------------


def test_subpixel_gaussian_matches_a_per_pixel_reference():
    height, width = HEATMAP
    sigma = 1.5
    joints = torch.tensor([[[3.3, 7.8], [0.4, 0.2], [11.6, 3.0]]], dtype=torch.float64)
    vis = torch.ones(1, 3, dtype=torch.float64)
    heat, weight = subpixel_gaussian_heatmaps(joints, vis, HEATMAP, sigma)
    assert weight.tolist() == [[1.0, 1.0, 0.0]]  # 11.6 rounds to 12, outside a width of 12
    radius = int(3 * sigma)
    for k in range(2):
        x, y = joints[0, k].tolist()
        cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
        for v in range(height):
            for u in range(width):
                inside = abs(u - cx) <= radius and abs(v - cy) <= radius
                expected = math.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * sigma**2)) if inside else 0.0
                assert heat[0, k, v, u].item() == pytest.approx(expected, abs=1e-14)
    assert heat[0, 2].sum() == 0


def test_subpixel_gaussian_equals_hrnet_on_pixel_centres():
    joints = torch.tensor([[[3.0, 7.0], [0.0, 15.0], [11.0, 0.0]]], dtype=torch.float64)
    vis = torch.ones(1, 3, dtype=torch.float64)
    sub, _ = subpixel_gaussian_heatmaps(joints, vis, HEATMAP, 2.0)
    hrnet, _ = gaussian_heatmaps(joints, vis, HEATMAP, 2.0)
    torch.testing.assert_close(sub, hrnet, rtol=0, atol=1e-15)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_violation_zero_on_pixel_centres_and_grows_along_the_diagonal(sigma):
    steps = torch.linspace(0, 0.5, 11, dtype=torch.float64)
    joints = (torch.tensor([6.0, 8.0], dtype=torch.float64) + steps[:, None]).unsqueeze(1)  # (11, 1, 2) on the diagonal
    gap = eq5_violation(joints, HEATMAP, sigma)[:, 0]
    assert gap[0] == 0.0
    assert bool((gap[1:] > gap[:-1]).all())
    for t, value in zip(steps.tolist(), gap.tolist()):
        d2 = 2 * t**2  # the rounded pixel is (6, 8) up to t = 0.5, which rounds up to (7, 9) at the same distance
        assert value == pytest.approx(1 - math.exp(-d2 / (2 * sigma**2)), rel=1e-12, abs=1e-15)
    integer = torch.tensor([[[0.0, 0.0], [5.0, 3.0], [11.0, 15.0]]], dtype=torch.float64)
    assert eq5_violation(integer, HEATMAP, sigma).abs().max() == 0.0


def test_violation_table_matches_closed_form():
    table = eq5_violation_table(offset_grid(5), sigmas=(1.0, 2.0), heatmap_hw=(32, 24))
    assert len(table) == 2 * 25
    assert list(table.columns) == [
        "sigma", "offset_x", "offset_y", "distance", "eq5_gap", "eq5_gap_closed_form", "eq4_residual",
    ]
    for row in table.itertuples():
        expected = 1 - math.exp(-(row.offset_x**2 + row.offset_y**2) / (2 * row.sigma**2))
        assert row.eq5_gap == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert row.eq5_gap_closed_form == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert row.eq4_residual == pytest.approx(2 * expected, rel=1e-12, abs=1e-15)
        assert row.distance == pytest.approx(math.hypot(row.offset_x, row.offset_y), abs=1e-12)


def test_violation_respects_visibility_and_closed_form_on_random_joints():
    joints, vis = _random_joints(3, 7, seed=3, margin=0.0)
    joints = joints.clamp(0, 11.4)  # keep every rounded pixel inside the 16 x 12 map
    gap = eq5_violation(joints, HEATMAP, 2.0, vis)
    torch.testing.assert_close(gap, eq5_violation_closed_form(joints, 2.0) * vis, rtol=1e-12, atol=1e-15)


def test_uniform_offset_expectation_matches_a_midpoint_average():
    n = 400
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5
    gx, gy = torch.meshgrid(u, u, indexing="xy")
    offsets = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    for sigma in (1.0, 2.0):
        mean = eq5_violation_closed_form((offsets + 5.0).unsqueeze(0), sigma).mean().item()
        assert uniform_offset_eq5_violation(sigma) == pytest.approx(mean, rel=1e-5)
    assert uniform_offset_eq5_violation(2.0) == pytest.approx((1 / 6) / (2 * 4), rel=0.05)  # ≈ E[d²]/2σ²
