"""Nothing silent in the losses: half-precision heatmaps, integer masses, empty batches, bad targets/weights."""

import math

import numpy as np
import pytest
import torch

from hdm import ot
from hdm.loss import HDMLoss, HeatmapMSELoss
from hdm.targets import gaussian_heatmaps

HALF = [torch.float16, torch.bfloat16]
# relative rounding of one value in each dtype (unit roundoff), used for tolerances
ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def _batch(rng, b=3, k=4, height=16, width=12):
    pred = torch.tensor(rng.standard_normal((b, k, height, width)))
    joints = torch.tensor(rng.random((b, k, 2)) * [width - 1, height - 1])
    weight = torch.tensor(rng.random((b, k)) > 0.25, dtype=torch.float64)
    return pred, joints, weight


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("solver", ["exact", "sinkhorn"])
def test_hdm_loss_takes_half_precision_heatmaps(dtype, solver):
    """AMP hands the loss float16/bfloat16 maps: no 'unbalanced' error, loss and gradient in that dtype, and the
    values of the float64 loss on the same (rounded) heatmaps to the dtype's precision."""
    rng = np.random.default_rng(0)
    pred, joints, weight = _batch(rng)
    pred = pred.to(dtype)  # the rounded heatmaps, as the network would have produced them
    loss_fn = HDMLoss(solver=solver)
    half = pred.clone().requires_grad_(True)
    loss = loss_fn(half, joints.to(dtype), weight.to(dtype))
    loss.backward()
    assert loss.dtype == dtype and half.grad.dtype == dtype and half.grad.shape == pred.shape
    full = pred.double().requires_grad_(True)
    # the reference sees the same joints as the half-precision call (rounded to the dtype)
    reference = loss_fn(full, joints.to(dtype).double(), weight)
    reference.backward()
    tol = 4 * ROUNDOFF[dtype]
    assert loss.double().item() == pytest.approx(reference.item(), rel=tol)
    scale = full.grad.abs().max().item()
    assert (half.grad.double() - full.grad).abs().max().item() <= 4 * tol * scale
    assert torch.isfinite(half.grad).all()


@pytest.mark.parametrize("dtype", HALF)
def test_hdm_loss_per_joint_and_none_reduction_keep_half_dtype(dtype):
    rng = np.random.default_rng(1)
    pred, joints, weight = _batch(rng)
    loss_fn = HDMLoss(reduction="none")
    per_joint = loss_fn.per_joint(pred.to(dtype), joints, weight)
    none = loss_fn(pred.to(dtype), joints, weight)
    assert per_joint.dtype == none.dtype == dtype and none.shape == weight.shape
    reference = loss_fn(pred.to(dtype).double(), joints, weight)
    torch.testing.assert_close(none.double(), reference, rtol=4 * ROUNDOFF[dtype], atol=0)


def test_emd_and_emd_grid_take_half_precision_masses():
    rng = np.random.default_rng(2)
    height, width = 6, 5
    heat = torch.tensor(rng.random((3, height, width))).to(torch.float16)
    heat = heat / heat.sum((1, 2), keepdim=True)  # normalised in float16: totals off by ~1e-3
    positions = torch.tensor([[[1, 1], [2, 1], [1, 2], [2, 2]]]).expand(3, 4, 2)
    demand = torch.full((3, 4), 0.25, dtype=torch.float16)
    value, a, b = ot.emd_grid(heat, positions, demand)
    assert value.dtype == a.dtype == b.dtype == torch.float16
    # float64 masses must balance to 1e-4: the reference gets the demand scaled to the rounded supply's totals
    expected, _, _ = ot.emd_grid(heat.double(), positions, demand.double() * heat.double().sum((1, 2))[:, None])
    torch.testing.assert_close(value.double(), expected, rtol=4 * ROUNDOFF[torch.float16], atol=0)


@pytest.mark.parametrize("which", ["supply", "demand"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_masses_are_refused_not_truncated(which, dtype):
    """emd with masses [1, 0] -> [0, 1] at cost sqrt(2) used to return 1 (int64)."""
    supply = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    demand = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    cost = torch.tensor([[[0.0, math.sqrt(2)], [math.sqrt(2), 0.0]]], dtype=torch.float64)
    args = {"supply": supply, "demand": demand}
    args[which] = args[which].to(dtype)
    with pytest.raises(ValueError, match=rf"{which} has dtype .*floating point.*{which}\.double\(\)"):
        ot.emd(args["supply"], args["demand"], cost)
    grid_supply = args["supply"].view(1, 1, 2)
    with pytest.raises(ValueError, match=rf"{which} has dtype .*floating point"):
        ot.emd_grid(grid_supply, torch.tensor([[[0, 0], [1, 0]]]), args["demand"])
    with pytest.raises(ValueError, match=rf"{which} has dtype"):
        ot.sinkhorn(args["supply"], args["demand"], cost)
    # the float version gives the exact distance, and integer costs are fine
    value, _, _ = ot.emd(supply, demand, cost)
    assert value.item() == pytest.approx(math.sqrt(2), abs=1e-12)
    value, _, _ = ot.emd(supply, demand, torch.tensor([[[0, 3], [3, 0]]]))
    assert value.item() == 3.0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_empty_batch_gives_zero_connected_to_the_input(reduction, dtype):
    pred = torch.zeros(0, 17, 8, 6, dtype=dtype, requires_grad=True)
    joints, weight = torch.zeros(0, 17, 2), torch.zeros(0, 17)
    loss = HDMLoss(reduction=reduction)(pred, joints, weight)
    assert loss.dtype == dtype and not torch.isnan(loss).any()
    assert loss.shape == ((0, 17) if reduction == "none" else ())
    loss.sum().backward()
    assert pred.grad is not None and pred.grad.shape == pred.shape
    if reduction != "none":
        assert loss.item() == 0.0


@pytest.mark.parametrize("use_target_weight", [True, False])
def test_mse_empty_batch_gives_zero_connected_to_the_input(use_target_weight):
    pred = torch.zeros(0, 17, 8, 6, requires_grad=True)
    loss = HeatmapMSELoss(use_target_weight)(pred, torch.zeros(0, 17, 8, 6), torch.zeros(0, 17))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad.shape == pred.shape


def test_mse_refuses_non_finite_targets_and_bad_weights():
    rng = np.random.default_rng(3)
    pred = torch.tensor(rng.standard_normal((2, 3, 6, 5)))
    target, weight = gaussian_heatmaps(torch.tensor(rng.random((2, 3, 2)) * 4), torch.ones(2, 3), (6, 5))
    mse = HeatmapMSELoss()
    for bad in (float("nan"), float("inf")):
        broken = target.clone()
        broken[1, 2, 3, 4] = bad
        with pytest.raises(ValueError, match="target_heatmaps contains NaN or inf"):
            mse(pred, broken, weight)
    for bad, message in ((float("nan"), "NaN or inf"), (float("inf"), "NaN or inf"), (-1.0, "negative")):
        broken = weight.clone()
        broken[0, 1] = bad
        with pytest.raises(ValueError, match=f"target_weight .*{message}"):
            mse(pred, target, broken)
        with pytest.raises(ValueError, match=f"target_weight .*{message}"):
            HDMLoss()(pred, torch.zeros(2, 3, 2, dtype=torch.float64), broken)
    assert torch.isfinite(mse(pred, target, weight))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["supply", "demand"])
def test_non_finite_masses_are_named(bad, which):
    supply = torch.full((2, 4), 0.25, dtype=torch.float64)
    demand = torch.full((2, 2), 0.5, dtype=torch.float64)
    args = {"supply": supply, "demand": demand}
    args[which] = args[which].clone()
    args[which][1, 1] = bad
    with pytest.raises(ValueError, match=f"{which} contains NaN or inf"):
        ot.emd(args["supply"], args["demand"], torch.rand(2, 4, 2, dtype=torch.float64))
