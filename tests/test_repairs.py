"""The strict supply mode and the repairs of the relu suppliers (issue 19): each keeps relu + normalisation in the
loss's value; checked against POT, finite hand computations and the config's identity rules."""

import numpy as np
import ot as pot
import pytest
import torch

from hdm import ot
from hdm.config import preset
from hdm.loss import HDMLoss, has_supply, strict_suppliers, supplier_mass
from hdm.methods import JointsHDMLoss, method_loss
from hdm.targets import demanders

H, W = 9, 7


def _maps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, H, W) maps: a blob with negative pixels, an all-≤ 0 map, a map with a single positive pixel; joints."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    blob = np.exp(-((xx - 3.2) ** 2 + (yy - 4.6) ** 2) / 3) - 0.2
    dead = -rng.random((H, W)) - 0.01
    single = np.full((H, W), -0.3)
    single[1, 5] = 0.7
    heat = torch.from_numpy(np.stack([blob, dead, single]))[None]
    joints = torch.tensor([[[3.3, 4.6], [2.5, 2.0], [5.7, 1.2]]], dtype=torch.float64)
    return heat, joints


def _pot_emd(supply: np.ndarray, joint: torch.Tensor) -> float:
    positions, masses = demanders(joint.view(1, 1, 2), (H, W))
    cost = ot.grid_cost(H, W, positions[0]).numpy()[0]
    return pot.emd2(supply.ravel(), masses[0, 0].numpy(), cost)


@pytest.mark.parametrize("demander_mode", ["subpixel", "naive"])  # the fused path, and the general one
def test_strict_mode_is_the_literal_relu_normalisation_and_drops_dead_maps(demander_mode):
    heat, joints = _maps()
    heat.requires_grad_(True)
    loss = HDMLoss(demanders=demander_mode, supply_guard="strict", reduction="none")
    values = loss(heat, joints, torch.ones(1, 3, dtype=heat.dtype))
    relu = torch.relu(heat.detach())[0]
    for k in (0, 2):
        literal = (relu[k] / relu[k].sum()).numpy()
        if demander_mode == "subpixel":
            expected = _pot_emd(literal, joints[0, k])
        else:
            pixel = torch.round(joints[0, k]).long()
            cost = np.hypot(*(np.mgrid[0:H, 0:W][::-1] - pixel.numpy()[:, None, None]))
            expected = float((literal * cost).sum())
        assert values[0, k].item() == pytest.approx(expected, abs=1e-10)
    assert values[0, 1].item() == 0.0  # all-≤ 0: no loss ...
    values.sum().backward()
    assert heat.grad[0, 1].abs().max().item() == 0.0  # ... and no gradient
    assert heat.grad[0, 0].abs().max().item() > 0
    guarded = HDMLoss(demanders=demander_mode, reduction="none")(heat.detach(), joints, torch.ones(1, 3, dtype=heat.dtype))
    assert guarded[0, 1].item() > 0  # the guard serves the dead map as a softmax supplier
    np.testing.assert_allclose(guarded[0, [0, 2]].numpy(), values[0, [0, 2]].detach().numpy(), rtol=1e-4)


def test_supply_helpers_on_known_maps():
    heat, _ = _maps()
    assert has_supply(heat).tolist() == [[True, False, True]]
    assert has_supply(heat, "softplus").all()
    mass = supplier_mass(heat, eps=1e-6)
    assert mass[0, 1].item() == pytest.approx(1e-6)
    assert mass[0, 2].item() == pytest.approx(0.7 + 1e-6)
    supply = strict_suppliers(heat[:, [0, 2]])
    np.testing.assert_allclose(supply.sum((-1, -2)).numpy(), 1.0)


def test_mass_weighting_weights_each_joint_by_its_detached_mass():
    heat, joints = _maps()
    heat = heat.clone().requires_grad_(True)
    weight = torch.ones(1, 3, dtype=heat.dtype)
    weighted = HDMLoss(mass_weighting=True)(heat, joints, weight)
    per_joint = HDMLoss().per_joint(heat, joints, weight)
    mass = supplier_mass(heat.detach(), 1e-6)
    manual = (per_joint * mass / mass.mean()).sum()
    assert weighted.item() == pytest.approx(manual.item(), rel=1e-12)
    (grad,) = torch.autograd.grad(weighted, heat)
    (expected,) = torch.autograd.grad(manual, heat)
    np.testing.assert_allclose(grad.numpy(), expected.numpy(), rtol=1e-10, atol=1e-14)
    # the reported value (per_joint) stays the unweighted EMD
    np.testing.assert_array_equal(HDMLoss(mass_weighting=True).per_joint(heat, joints, weight).detach().numpy(),
                                  per_joint.detach().numpy())  # fmt: skip


def test_level_term_raises_the_highest_pixel_of_a_sinking_map_only():
    heat, joints = _maps()
    heat = heat.clone().requires_grad_(True)
    visibility = torch.full((1, 3), 2)
    plain = JointsHDMLoss()(heat, joints, visibility)
    repaired = JointsHDMLoss(level_weight=0.5, level_margin=0.1)(heat, joints, visibility)
    peaks = heat.detach().flatten(-2).amax(-1)[0]
    expected_extra = 0.5 * torch.relu(0.1 - peaks).sum().item()
    assert expected_extra > 0 and peaks[0] > 0.1  # only the dead map (peak < 0.1) pays
    assert (repaired - plain).item() == pytest.approx(expected_extra, rel=1e-12)
    (g_plain,) = torch.autograd.grad(plain, heat)
    (g_rep,) = torch.autograd.grad(JointsHDMLoss(level_weight=0.5, level_margin=0.1)(heat, joints, visibility), heat)
    diff = (g_rep - g_plain)[0]
    top = heat.detach()[0, 1].flatten().argmax()
    assert diff[1].flatten()[top].item() == pytest.approx(-0.5)
    assert diff.abs().sum().item() == pytest.approx(0.5)


def test_repair_keys_reach_the_loss_and_only_the_emd_methods_identity():
    cfg = preset("smoke", "hdm").replace(supply_guard="strict", mass_weighting=True, level_weight=0.2)
    loss = method_loss("hdm", cfg)
    assert (loss.hdm.supply_guard, loss.hdm.mass_weighting, loss.level_weight) == ("strict", True, 0.2)
    ident = cfg.identity()
    assert ident["supply_guard"] == "strict" and ident["level_margin"] == 0.1
    gaussian = preset("smoke", "gaussian").identity()
    assert not {"supply_guard", "mass_weighting", "level_weight", "level_margin", "supplier"} & set(gaussian)
    assert gaussian["head_bias"] == 0.0
    for key, bad in (("supply_guard", "loose"), ("level_weight", "-1"), ("level_margin", "nan")):
        with pytest.raises(ValueError, match=key):
            cfg.replace(**{key: bad})


def test_head_bias_starts_every_pixel_positive():
    from hdm.engine.training import initial_model

    cfg = preset("smoke", "hdm").replace(head_bias=0.25, init="scratch")
    model = initial_model(cfg, run=None, num_joints=17)
    assert torch.all(model.final_layer.bias == 0.25)
    with torch.no_grad():
        out = model(torch.randn(1, 3, *cfg.input_hw))
    assert (out > 0).all()


def test_a_larger_input_can_start_from_the_long_scale_pretraining_run():
    """The 64x48 screen (issue 19, item 5b) starts from the same pretrained backbone as the 32x24 runs."""
    from hdm.config import pretrain_config

    long = preset("long", "gaussian")
    large = long.replace(input_hw="256,192", heatmap_hw="64,48", pretrain_hw="128,96")
    assert pretrain_config(large).identity() == pretrain_config(long).identity()
    assert large.identity()["init"] == long.identity()["init"] and "pretrain_hw" not in large.identity()
    assert pretrain_config(long.replace(input_hw="256,192", heatmap_hw="64,48")).input_hw == (256, 192)
    with pytest.raises(ValueError, match="pretrain_hw"):
        long.replace(pretrain_hw="130,96")
