"""HDMLoss against POT per joint, its gradient, masking and degenerate maps; HeatmapMSELoss formula."""

import numpy as np
import ot as pot
import pytest
import torch

from hdm import ot
from hdm.loss import HDMLoss, HeatmapMSELoss, suppliers
from hdm.targets import demanders, gaussian_heatmaps


def _batch(rng, b=3, k=4, height=10, width=8):
    pred = torch.tensor(rng.standard_normal((b, k, height, width)))
    joints = torch.tensor(rng.random((b, k, 2)) * [width - 1, height - 1])
    weight = torch.tensor(rng.random((b, k)) > 0.3, dtype=torch.float64)
    return pred, joints, weight


@pytest.mark.parametrize("mode", ["subpixel", "naive"])
def test_per_joint_loss_equals_pot_emd_of_normalised_relu(mode):
    rng = np.random.default_rng(0)
    pred, joints, weight = _batch(rng)
    loss = HDMLoss(demanders=mode, reduction="none", supply_eps=1e-12)(pred, joints, weight)
    height, width = pred.shape[-2:]
    positions, masses = demanders(joints, (height, width), mode)
    for b in range(pred.shape[0]):
        for k in range(pred.shape[1]):
            if weight[b, k] == 0:
                assert loss[b, k] == 0
                continue
            relu = np.maximum(pred[b, k].numpy(), 0).ravel()
            cost = ot.grid_cost(height, width, positions[b, k][None])[0].numpy()
            expected = pot.emd2(relu / relu.sum(), masses[b, k].numpy(), cost)
            assert loss[b, k].item() == pytest.approx(expected, abs=1e-6)


def test_mean_reduction_sums_joints_and_averages_images():
    rng = np.random.default_rng(1)
    pred, joints, weight = _batch(rng)
    per_joint = HDMLoss(reduction="none")(pred, joints, weight)
    assert HDMLoss(reduction="mean")(pred, joints, weight).item() == pytest.approx(per_joint.sum().item() / 3)
    assert HDMLoss(reduction="sum")(pred, joints, weight).item() == pytest.approx(per_joint.sum().item())


def test_loss_is_zero_when_the_heatmap_is_the_demanders():
    joints = torch.tensor([[[2.3, 4.7], [5.0, 1.0]]], dtype=torch.float64)
    positions, masses = demanders(joints, (8, 7))
    pred = torch.zeros(1, 2, 8, 7, dtype=torch.float64)
    for k in range(2):
        for (x, y), m in zip(positions[0, k].tolist(), masses[0, k].tolist()):
            pred[0, k, y, x] += m * 5.0  # any positive scale: the suppliers are normalised
    loss = HDMLoss(reduction="none", supply_eps=1e-12)(pred, joints, torch.ones(1, 2, dtype=torch.float64))
    assert loss.abs().max().item() < 1e-9


def test_gradient_matches_autograd_gradcheck():
    rng = np.random.default_rng(2)
    pred = torch.tensor(rng.random((2, 2, 6, 5)) + 0.1, requires_grad=True)  # away from relu's kink
    joints = torch.tensor(rng.random((2, 2, 2)) * [4, 5])
    weight = torch.ones(2, 2, dtype=torch.float64)
    loss = HDMLoss()
    assert torch.autograd.gradcheck(lambda p: loss(p, joints, weight), (pred,), eps=1e-7, atol=1e-5)


def test_masked_joints_get_no_gradient_and_others_do():
    rng = np.random.default_rng(3)
    pred, joints, weight = _batch(rng)
    pred.requires_grad_(True)
    HDMLoss()(pred, joints, weight).backward()
    grad_norm = pred.grad.abs().sum((-1, -2))
    assert (grad_norm[weight == 0] == 0).all()
    assert (grad_norm[weight > 0] > 0).all()


@pytest.mark.parametrize("fill", [0.0, -3.0])
def test_all_zero_or_negative_maps_give_finite_loss_and_a_useful_gradient(fill):
    height, width = 9, 9
    pred = torch.full((1, 1, height, width), fill, dtype=torch.float64)
    pred[0, 0, 0, 0] = fill - 1.0  # not constant, to have a direction
    pred.requires_grad_(True)
    joints = torch.tensor([[[6.0, 6.0]]], dtype=torch.float64)
    loss = HDMLoss()(pred, joints, torch.ones(1, 1, dtype=torch.float64))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    # gradient descent raises the joint's pixel relative to far pixels
    assert pred.grad[0, 0, 6, 6] < pred.grad[0, 0, 0, 8]
    with torch.no_grad():
        stepped = pred - 10.0 * pred.grad
    assert HDMLoss()(stepped, joints, torch.ones(1, 1, dtype=torch.float64)) < loss


def test_suppliers_are_normalised_relu():
    rng = np.random.default_rng(4)
    heat = torch.tensor(rng.standard_normal((2, 3, 5, 4)))
    s = suppliers(heat, eps=1e-12)
    torch.testing.assert_close(s.sum((-1, -2)), torch.ones(2, 3, dtype=torch.float64))
    relu = heat.clamp(min=0)
    torch.testing.assert_close(s, relu / relu.sum((-1, -2), keepdim=True), atol=1e-10, rtol=0)


@pytest.mark.parametrize("activation, expected", [
    ("softplus", lambda h: torch.nn.functional.softplus(h) / torch.nn.functional.softplus(h).sum((-1, -2), keepdim=True)),
    ("softmax", lambda h: torch.softmax(h.flatten(-2), -1).view_as(h)),
])
def test_supplier_activations_are_normalised(activation, expected):
    heat = torch.tensor(np.random.default_rng(14).standard_normal((2, 3, 5, 4)))
    s = suppliers(heat, eps=1e-12, activation=activation)
    torch.testing.assert_close(s, expected(heat), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="activation"):
        suppliers(heat, activation="sigmoid")


def test_relu_suppliers_starve_negative_pixels_softplus_does_not():
    # the joint's pixel is negative while a far pixel holds the mass: relu cannot raise the joint's pixel
    # (its gradient is only the eps guard's, ~1e-8); softplus pushes it up (negative gradient), as descent should
    heat = torch.full((1, 1, 9, 9), -1.0, dtype=torch.float64)
    heat[0, 0, 0, 0] = 2.0
    joints = torch.tensor([[[6.0, 6.0]]], dtype=torch.float64)
    grads = {}
    for activation in ("relu", "softplus"):
        pred = heat.clone().requires_grad_(True)
        HDMLoss(supplier=activation)(pred, joints, torch.ones(1, 1, dtype=torch.float64)).backward()
        grads[activation] = pred.grad[0, 0, 6, 6].item()
    assert grads["softplus"] < 0.0
    assert abs(grads["relu"]) < 1e-4 * abs(grads["softplus"])


def test_sinkhorn_solver_approaches_exact():
    rng = np.random.default_rng(5)
    pred, joints, weight = _batch(rng)
    exact = HDMLoss(reduction="none")(pred, joints, weight)
    entropic = HDMLoss(solver="sinkhorn", sinkhorn_eps=0.01, reduction="none")(pred, joints, weight)
    assert (entropic - exact).abs().max().item() < 0.05


def test_float32_input_gives_float32_loss_and_gradient():
    rng = np.random.default_rng(6)
    pred, joints, weight = _batch(rng)
    pred = pred.float().requires_grad_(True)
    loss = HDMLoss()(pred, joints.float(), weight.float())
    loss.backward()
    assert loss.dtype == torch.float32 and pred.grad.dtype == torch.float32


def test_bad_inputs_raise_clear_errors():
    pred = torch.zeros(2, 3, 6, 5)
    joints, weight = torch.zeros(2, 3, 2), torch.ones(2, 3)
    loss = HDMLoss()
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        loss(pred[0], joints, weight)
    with pytest.raises(ValueError, match="joints must be"):
        loss(pred, joints[:, :2], weight)
    with pytest.raises(ValueError, match="target_weight must be"):
        loss(pred, joints, weight[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full_like(pred, float("nan")), joints, weight)
    with pytest.raises(ValueError, match="NaN"):
        loss(pred, torch.full_like(joints, float("inf")), weight)
    with pytest.raises(ValueError, match="solver"):
        HDMLoss(solver="greedy")
    with pytest.raises(ValueError, match="match"):
        HeatmapMSELoss()(pred, pred[:, :2], weight)


def test_heatmap_mse_is_half_mean_squared_error_weighted_per_joint():
    rng = np.random.default_rng(7)
    pred = torch.tensor(rng.standard_normal((2, 3, 6, 5)))
    joints = torch.tensor(rng.random((2, 3, 2)) * 4)
    target, weight = gaussian_heatmaps(joints, torch.tensor([[1.0, 0, 1], [1, 1, 1]]), (6, 5))
    expected = 0.0
    for b in range(2):
        for k in range(3):
            expected += 0.5 * ((weight[b, k] * (pred[b, k] - target[b, k])) ** 2).mean().item() / 6
    assert HeatmapMSELoss()(pred, target, weight).item() == pytest.approx(expected)
    unweighted = 0.5 * ((pred - target) ** 2).mean().item()
    assert HeatmapMSELoss(use_target_weight=False)(pred, target, weight).item() == pytest.approx(unweighted)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_exact_loss_equals_suppliers_then_emd_grid(dtype):
    """The default configuration runs fused (suppliers, OT and gradient in one compiled pass); it must equal the
    composition of the public pieces, value and gradient, masked joints included."""
    rng = np.random.default_rng(15)
    pred, joints, weight = _batch(rng, b=4, k=5, height=12, width=9)
    pred = (pred + 0.3).to(dtype)  # some maps all positive, most mixed
    pred[0, 0] = -1.0  # an all-negative map: the softmax guard carries the loss
    joints[1, 1] = torch.tensor([0.0, 11.0])  # a corner: zero bilinear weights
    weight[0, 0] = 1.0
    fused = pred.clone().requires_grad_(True)
    HDMLoss()(fused, joints.to(dtype), weight.to(dtype)).backward()

    composed = pred.clone().requires_grad_(True)
    used = weight > 0
    supply = suppliers(composed[used])
    positions, masses = demanders(joints[used].unsqueeze(0).to(dtype), (12, 9))
    value, _, _ = ot.emd_grid(supply, positions[0], masses[0].to(dtype))
    (value * weight[used].to(dtype)).sum().div(4).backward()

    expected = HDMLoss(reduction="none")(pred, joints.to(dtype), weight.to(dtype))[used]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(expected, value.detach(), atol=tol, rtol=tol)
    torch.testing.assert_close(fused.grad, composed.grad, atol=tol, rtol=tol)
    assert (fused.grad[~used] == 0).all()


def test_fused_exact_loss_reports_non_finite_maps_used_or_not():
    pred = torch.rand(2, 3, 6, 5)
    joints, weight = torch.rand(2, 3, 2) * 4, torch.ones(2, 3)
    weight[1, 2] = 0.0
    for b, k in ((0, 1), (1, 2)):  # a used joint (checked by the kernel) and a masked one (checked in torch)
        broken = pred.clone()
        broken[b, k, 2, 3] = float("inf")
        with pytest.raises(ValueError, match="pred_heatmaps contains NaN or inf"):
            HDMLoss()(broken, joints, weight)


def test_fused_exact_loss_without_gradient_gives_the_same_values():
    rng = np.random.default_rng(16)
    pred, joints, weight = _batch(rng)
    with_grad = HDMLoss(reduction="none")(pred.clone().requires_grad_(True), joints, weight)
    with torch.no_grad():
        without = HDMLoss(reduction="none")(pred.clone().requires_grad_(True), joints, weight)
    assert without.grad_fn is None
    torch.testing.assert_close(without, with_grad.detach(), atol=0, rtol=0)
