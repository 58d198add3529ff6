"""Targets: Gaussian and dot heatmaps against an independent per-joint construction; demanders' geometry."""

import math

import numpy as np
import pytest
import torch

from hdm.targets import demanders, dot_heatmaps, gaussian_heatmaps, target_weight


def _hrnet_gaussian(x, y, height, width, sigma):
    """Reference: HRNet's recipe written per joint with a (6σ+1)² patch pasted at int(x+0.5), int(y+0.5)."""
    out = np.zeros((height, width))
    cx, cy = int(x + 0.5), int(y + 0.5)
    radius = int(3 * sigma)
    for v in range(cy - radius, cy + radius + 1):
        for u in range(cx - radius, cx + radius + 1):
            if 0 <= u < width and 0 <= v < height:
                out[v, u] = math.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * sigma**2))
    return out


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_gaussian_heatmaps_match_hrnet_recipe(sigma):
    rng = np.random.default_rng(0)
    height, width = 16, 12
    joints = torch.tensor(rng.random((3, 5, 2)) * [width + 2, height + 2] - 1)
    vis = torch.tensor(rng.random((3, 5)) > 0.2).float()
    heat, weight = gaussian_heatmaps(joints, vis, (height, width), sigma)
    assert heat.shape == (3, 5, height, width) and weight.shape == (3, 5)
    for b in range(3):
        for k in range(5):
            x, y = joints[b, k].tolist()
            inside = 0 <= int(math.floor(x + 0.5)) < width and 0 <= int(math.floor(y + 0.5)) < height
            expected_weight = float(inside and vis[b, k] > 0)
            assert weight[b, k].item() == expected_weight
            expected = _hrnet_gaussian(x, y, height, width, sigma) * expected_weight
            np.testing.assert_allclose(heat[b, k].numpy(), expected, atol=1e-12)
            if expected_weight:
                assert heat[b, k].max().item() == 1.0


def test_dot_heatmaps_are_one_hot_at_the_rounded_pixel():
    joints = torch.tensor([[[2.4, 3.6], [0.0, 0.0], [9.6, 1.0], [3.0, 3.0]]])
    vis = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    heat, weight = dot_heatmaps(joints, vis, (6, 10))
    assert weight.tolist() == [[1.0, 1.0, 0.0, 0.0]]  # x = 9.6 rounds to 10, outside a width of 10
    assert heat[0, 0, 4, 2] == 1 and heat[0, 0].sum() == 1
    assert heat[0, 1, 0, 0] == 1 and heat[0, 1].sum() == 1
    assert heat[0, 2].sum() == 0 and heat[0, 3].sum() == 0


def test_target_weight_rejects_bad_shapes_and_nan():
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        target_weight(torch.zeros(2, 3), torch.ones(2, 3), (4, 4))
    with pytest.raises(ValueError, match="visibility"):
        target_weight(torch.zeros(2, 3, 2), torch.ones(3, 2), (4, 4))
    with pytest.raises(ValueError, match="NaN"):
        target_weight(torch.full((1, 1, 2), float("nan")), torch.ones(1, 1), (4, 4))


def test_subpixel_demanders_are_bilinear_and_average_to_the_joint():
    rng = np.random.default_rng(1)
    height, width = 9, 7
    joints = torch.tensor(rng.random((4, 6, 2)) * [width - 1, height - 1])
    positions, masses = demanders(joints, (height, width))
    assert positions.shape == (4, 6, 4, 2) and masses.shape == (4, 6, 4)
    torch.testing.assert_close(masses.sum(-1), torch.ones(4, 6, dtype=torch.float64))
    assert (masses >= 0).all()
    mean = (positions.double() * masses[..., None]).sum(2)
    torch.testing.assert_close(mean, joints)
    # the 4 pixels are the corners of one unit square
    span = positions.amax(2) - positions.amin(2)
    assert (span == 1).all()


@pytest.mark.parametrize("joint", [(6.0, 3.0), (6.0, 8.0), (0.0, 0.0), (2.0, 8.0), (-0.4, 3.2), (6.3, 9.0)])
def test_subpixel_demanders_on_the_border_stay_in_the_heatmap(joint):
    height, width = 9, 7
    positions, masses = demanders(torch.tensor([[joint]]), (height, width))
    assert (positions[..., 0] >= 0).all() and (positions[..., 0] < width).all()
    assert (positions[..., 1] >= 0).all() and (positions[..., 1] < height).all()
    clamped = torch.tensor(joint).clamp(min=0).minimum(torch.tensor([width - 1.0, height - 1.0]))
    torch.testing.assert_close((positions[0, 0].float() * masses[0, 0, :, None]).sum(0), clamped)


def test_naive_demander_is_the_rounded_pixel():
    positions, masses = demanders(torch.tensor([[[2.4, 3.6], [2.5, 0.49]]]), (8, 8), mode="naive")
    assert positions.tolist() == [[[[2, 4]], [[3, 0]]]]
    assert masses.tolist() == [[[1.0], [1.0]]]
    with pytest.raises(ValueError, match="subpixel"):
        demanders(torch.zeros(1, 1, 2), (8, 8), mode="bilinear")
