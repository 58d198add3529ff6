"""Decoders and flip test (hdm.decode): sub-pixel accuracy on sampled blobs, HRNet's quarter shift and its
border rule, batching against a per-map loop, and flip-test geometry."""

from __future__ import annotations

import math

import pytest
import torch

from hdm.decode import (
    DECODERS,
    decode,
    decode_argmax_shift,
    decode_local_com,
    decode_supplier_com,
    flip_back,
    flip_test_average,
    shift_right,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gaussian_map(height: int, width: int, centre: tuple[float, float], sigma: float, dtype=torch.float64) -> torch.Tensor:
    """Sampled, unnormalised Gaussian at ``centre = (x, y)`` heatmap px: (H, W)."""
    y = torch.arange(height, dtype=dtype)[:, None]
    x = torch.arange(width, dtype=dtype)[None, :]
    return torch.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))


def bilinear_splat(height: int, width: int, centre: tuple[float, float]) -> torch.Tensor:
    """Unit mass at a sub-pixel point spread on its 4 neighbouring pixels with bilinear weights: (H, W)."""
    h = torch.zeros(height, width, dtype=torch.float64)
    x0, y0 = math.floor(centre[0]), math.floor(centre[1])
    fx, fy = centre[0] - x0, centre[1] - y0
    h[y0, x0] += (1 - fx) * (1 - fy)
    h[y0, x0 + 1] += fx * (1 - fy)
    h[y0 + 1, x0] += (1 - fx) * fy
    h[y0 + 1, x0 + 1] += fx * fy
    return h


OFFSETS = [(0.0, 0.0), (0.3, -0.2), (0.5, 0.49), (-0.37, 0.11), (-0.49, -0.5), (0.01, 0.25)]


# ---------------------------------------------------------------------------------------------------------
# local centre of mass


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_local_com_recovers_subpixel_centre_of_sampled_gaussian(device, dtype):
    # σ = 1 and a 13 px window (±6 px): the Gaussian is untruncated to ~1e-7, and the centre of mass of
    # its integer samples equals the true centre to ~1e-8 (Poisson summation), so the decoder must hit it.
    centres = [(10.0 + dx, 8.0 + dy) for dx, dy in OFFSETS]
    maps = torch.stack([gaussian_map(17, 21, c, sigma=1.0) for c in centres])[None].to(device, dtype)
    coords, maxvals = decode_local_com(maps, window=13)
    expected = torch.tensor(centres, dtype=coords.dtype, device=device)[None]
    assert coords.shape == (1, len(centres), 2) and coords.dtype == dtype
    assert torch.allclose(coords, expected, atol=1e-3, rtol=0)
    assert torch.allclose(maxvals, maps.flatten(2).max(-1).values)


@pytest.mark.parametrize("window", [3, 5, 7])
def test_local_com_is_exact_on_a_bilinear_splat(window):
    # The dot annotation spread on its 4 pixels is symmetric about the sub-pixel point and fits in any window >= 3.
    centres = [(5.0 + dx, 4.0 + dy) for dx, dy in OFFSETS if dx >= 0 and dy >= 0] + [(5.7, 4.9), (5.99, 4.01)]
    maps = torch.stack([bilinear_splat(11, 12, c) for c in centres])[None]
    coords, _ = decode_local_com(maps, window=window)
    assert torch.allclose(coords[0], torch.tensor(centres, dtype=torch.float64), atol=1e-12)


def test_local_com_clips_the_window_at_the_border_and_ignores_negative_values():
    h = torch.zeros(1, 1, 5, 5)
    h[0, 0, 0, 0] = 2.0  # peak in the corner
    h[0, 0, 0, 1] = 1.0  # (x=1, y=0)
    h[0, 0, 1, 0] = 1.0  # (x=0, y=1)
    h[0, 0, 1, 1] = -5.0  # negative: removed by the relu
    h[0, 0, 4, 4] = 1.5  # outside the 3x3 window
    coords, maxvals = decode_local_com(h, window=3)
    # window = x, y in [-1, 1] clipped to [0, 1]: mass 2 + 1 + 1; x = 1·1 / 4, y = 1·1 / 4
    assert torch.allclose(coords, torch.tensor([[[0.25, 0.25]]]))
    assert maxvals.item() == 2.0
    # A window covering everything also counts the far pixel.
    coords, _ = decode_local_com(h, window=9)
    assert torch.allclose(coords, torch.tensor([[[(1 + 4 * 1.5) / 5.5, (1 + 4 * 1.5) / 5.5]]]))


def test_local_com_falls_back_to_the_argmax_without_positive_mass():
    h = torch.full((1, 2, 6, 7), -1.0)
    h[0, 0, 2, 3] = -0.1  # all-negative map: argmax at (x=3, y=2)
    h[0, 1, 4, 5] = 0.0  # zero peak, no mass
    coords, maxvals = decode_local_com(h, window=5)
    assert coords.tolist() == [[[3.0, 2.0], [5.0, 4.0]]]
    assert torch.allclose(maxvals, torch.tensor([[-0.1, 0.0]]))


@pytest.mark.parametrize("window", [0, 2, 4, -3, 2.0, True])
def test_local_com_rejects_bad_windows(window):
    with pytest.raises(ValueError, match="odd"):
        decode_local_com(torch.zeros(1, 1, 5, 5), window=window)


# ---------------------------------------------------------------------------------------------------------
# argmax + quarter shift (HRNet)


def test_argmax_shift_quarter_pixel_geometry_on_hand_made_maps():
    h = torch.zeros(1, 3, 9, 9)
    # map 0: peak (4, 4); right > left, up == down -> (4.25, 4.0)
    h[0, 0, 4, 4], h[0, 0, 4, 5], h[0, 0, 4, 3], h[0, 0, 3, 4], h[0, 0, 5, 4] = 1.0, 0.5, 0.2, 0.3, 0.3
    # map 1: peak (3, 5); left > right, down > up -> (2.75, 5.25)
    h[0, 1, 5, 3], h[0, 1, 5, 2], h[0, 1, 5, 4], h[0, 1, 6, 3], h[0, 1, 4, 3] = 2.0, 1.0, 0.1, 0.4, 0.3
    # map 2: peak (6, 2); up > down, no horizontal neighbour -> (6.0, 1.75)
    h[0, 2, 2, 6], h[0, 2, 1, 6] = 1.0, 0.9
    coords, maxvals = decode_argmax_shift(h)
    assert coords.tolist() == [[[4.25, 4.0], [2.75, 5.25], [6.0, 1.75]]]
    assert maxvals.tolist() == [[1.0, 2.0, 1.0]]


@pytest.mark.parametrize(
    "peak, shifted",
    [
        ((0, 4), False),  # on the left border
        ((1, 4), False),  # next to it: HRNet's condition is 1 < px < W - 1
        ((2, 4), True),
        ((7, 4), True),  # W = 9: px = W - 2 is still shifted (the rule is not symmetric)
        ((8, 4), False),  # on the right border
        ((4, 1), False),  # py next to the top border: neither axis shifts
        ((4, 7), True),
        ((4, 8), False),
    ],
)
def test_argmax_shift_border_rule(peak, shifted):
    x, y = peak
    h = torch.zeros(1, 1, 9, 9)
    h[0, 0, y, x] = 1.0
    if x + 1 < 9:
        h[0, 0, y, x + 1] = 0.5
    if y + 1 < 9:
        h[0, 0, y + 1, x] = 0.5
    coords, _ = decode_argmax_shift(h)
    expected = [x + 0.25, y + 0.25] if shifted else [float(x), float(y)]
    assert coords[0, 0].tolist() == expected


@pytest.mark.parametrize("device", DEVICES)
def test_argmax_shift_on_sampled_gaussians_is_within_a_quarter_pixel(device):
    centres = [(10.0 + dx, 8.0 + dy) for dx, dy in OFFSETS if abs(dx) < 0.5 and abs(dy) < 0.5]
    maps = torch.stack([gaussian_map(17, 21, c, sigma=2.0) for c in centres])[None].to(device)
    coords, _ = decode_argmax_shift(maps)
    truth = torch.tensor(centres, dtype=torch.float64, device=device)
    # argmax = nearest pixel; the quarter step goes toward the true centre, nothing on a tie
    offset = truth - torch.tensor([[10.0, 8.0]], dtype=torch.float64, device=device)
    expected = torch.tensor([[10.0, 8.0]], dtype=torch.float64, device=device) + 0.25 * torch.sign(offset)
    assert torch.equal(coords[0], expected)
    assert (coords[0] - truth).abs().max() <= 0.25


# ---------------------------------------------------------------------------------------------------------
# batching, dispatch, errors


def reference_argmax_shift(h: torch.Tensor) -> list[float]:
    """Per-map loop written straight from HRNet's description."""
    height, width = h.shape
    idx = int(torch.argmax(h))
    px, py = idx % width, idx // width
    x, y = float(px), float(py)
    if 1 < px < width - 1 and 1 < py < height - 1:
        x += 0.25 * float(torch.sign(h[py, px + 1] - h[py, px - 1]))
        y += 0.25 * float(torch.sign(h[py + 1, px] - h[py - 1, px]))
    return [x, y]


def reference_local_com(h: torch.Tensor, window: int) -> list[float]:
    height, width = h.shape
    idx = int(torch.argmax(h))
    px, py = idx % width, idx // width
    r = window // 2
    mass = sx = sy = 0.0
    for j in range(max(0, py - r), min(height, py + r + 1)):
        for i in range(max(0, px - r), min(width, px + r + 1)):
            v = max(float(h[j, i]), 0.0)
            mass, sx, sy = mass + v, sx + v * i, sy + v * j
    return [sx / mass, sy / mass] if mass > 0 else [float(px), float(py)]


@pytest.mark.parametrize("device", DEVICES)
def test_batched_decoders_match_a_per_map_loop(device):
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 4, 10, 12, generator=gen, dtype=torch.float64) - 0.5
    coords_shift, _ = decode_argmax_shift(maps.to(device))
    coords_com, _ = decode_local_com(maps.to(device), window=5)
    for b in range(3):
        for k in range(4):
            assert coords_shift[b, k].tolist() == reference_argmax_shift(maps[b, k])
            expected = torch.tensor(reference_local_com(maps[b, k], 5), dtype=torch.float64)
            assert torch.allclose(coords_com[b, k].cpu(), expected)


def test_decode_dispatches_by_name_and_rejects_unknown_names():
    maps = torch.rand(2, 3, 8, 6, generator=torch.Generator().manual_seed(1))
    assert set(DECODERS) == {"argmax_shift", "local_com", "local_com3", "local_com7", "softplus_com", "softmax_com"}
    for window in (3, 7):
        for got, want in zip(decode(maps, f"local_com{window}"), decode_local_com(maps, window=window)):
            assert torch.equal(got, want)
    for got, want in zip(decode(maps, "local_com", window=3), decode_local_com(maps, window=3)):
        assert torch.equal(got, want)
    for got, want in zip(decode(maps, "argmax_shift"), decode_argmax_shift(maps)):
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match="argmax_shift"):
        decode(maps, "soft_argmax")


@pytest.mark.parametrize("decoder", list(DECODERS.values()))
def test_decoders_reject_bad_input(decoder):
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        decoder(torch.zeros(3, 8, 6))
    bad = torch.zeros(1, 2, 4, 4)
    bad[0, 1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        decoder(bad)
    with pytest.raises(TypeError, match="floating"):
        decoder(torch.zeros(1, 1, 4, 4, dtype=torch.int64))


@pytest.mark.parametrize("decoder", list(DECODERS.values()))
def test_decoders_keep_precision_and_peak_dtype(decoder):
    maps = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    for dtype, coord_dtype in [(torch.float64,) * 2, (torch.float32,) * 2, (torch.float16, torch.float32)]:
        coords, maxvals = decoder(maps.to(dtype))
        assert coords.dtype == coord_dtype and maxvals.dtype == dtype


# ---------------------------------------------------------------------------------------------------------
# supplier centre of mass


@pytest.mark.parametrize("supplier", ["softmax", "softplus"])
def test_supplier_com_is_the_expected_position_under_the_supplier(supplier):
    gen = torch.Generator().manual_seed(3)
    maps = 3 * torch.randn(2, 3, 7, 5, generator=gen, dtype=torch.float64)
    coords, maxvals = decode_supplier_com(maps, supplier)
    for b in range(2):
        for k in range(3):
            h = maps[b, k]
            mass = torch.softmax(h.flatten(), 0).view_as(h) if supplier == "softmax" else torch.log1p(torch.exp(h))
            mass = mass / mass.sum()
            x = sum(float(mass[j, i]) * i for j in range(7) for i in range(5))
            y = sum(float(mass[j, i]) * j for j in range(7) for i in range(5))
            assert coords[b, k].tolist() == pytest.approx([x, y], abs=1e-12)
            assert maxvals[b, k] == h.max()


@pytest.mark.parametrize("supplier", ["softmax", "softplus"])
@pytest.mark.parametrize("centre", [(3, 4), (7, 6), (11, 2)])
def test_supplier_com_of_a_mirror_symmetric_map_is_its_centre(supplier, centre):
    # a map mirror-symmetric about pixel (cx, cy) in x and in y (cut to the square of the same reach on each side,
    # -2 elsewhere, so the background is symmetric too) has its supplier's centre of mass exactly there
    height, width = 13, 15
    reach = min(centre[0], centre[1], width - 1 - centre[0], height - 1 - centre[1])
    h = torch.full((height, width), -50.0, dtype=torch.float64)
    window = (slice(centre[1] - reach, centre[1] + reach + 1), slice(centre[0] - reach, centre[0] + reach + 1))
    h[window] = (4 * gaussian_map(height, width, centre, 1.5) - 2)[window]
    coords, _ = decode_supplier_com(h[None, None], supplier)
    assert coords[0, 0].tolist() == pytest.approx(list(centre), abs=1e-9)


def test_supplier_com_falls_back_to_the_argmax_when_softplus_underflows():
    maps = torch.full((1, 1, 4, 5), -1e4)
    maps[0, 0, 1, 3] = -200.0  # softplus(-200) is 0 in float32: no mass anywhere
    coords, _ = decode_supplier_com(maps, "softplus")
    assert coords[0, 0].tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="softmax"):
        decode_supplier_com(maps, "relu")


# ---------------------------------------------------------------------------------------------------------
# flip test

FLIP_PAIRS = [(1, 2), (3, 4)]


def test_flip_back_mirrors_and_swaps_channels_and_is_an_involution():
    maps = torch.rand(2, 5, 6, 7, generator=torch.Generator().manual_seed(3))
    back = flip_back(maps, FLIP_PAIRS)
    assert torch.equal(back[:, 0], maps[:, 0].flip(-1))
    assert torch.equal(back[:, 1], maps[:, 2].flip(-1)) and torch.equal(back[:, 2], maps[:, 1].flip(-1))
    assert torch.equal(back[:, 3, :, 0], maps[:, 4, :, 6])
    assert torch.equal(flip_back(back, FLIP_PAIRS), maps)


@pytest.mark.parametrize("pairs", [[(0, 5)], [(1, 2), (2, 3)], [(1, 1)], [(1, 2, 3)]])
def test_flip_back_rejects_bad_pairs(pairs):
    with pytest.raises(ValueError):
        flip_back(torch.zeros(1, 5, 4, 4), pairs)


def test_shift_right_by_one_is_hrnets_column_copy():
    maps = torch.rand(1, 2, 3, 6, generator=torch.Generator().manual_seed(4))
    out = shift_right(maps, 1)
    assert torch.equal(out[..., 1:], maps[..., :-1]) and torch.equal(out[..., 0], maps[..., 0])
    assert torch.equal(shift_right(maps, 0), maps)
    assert torch.equal(shift_right(shift_right(maps, 2), -2)[..., 2:-2], maps[..., 2:-2])


def _pose_maps(joints_x: list[float], y: float, width: int = 24, height: int = 16) -> torch.Tensor:
    return torch.stack([gaussian_map(height, width, (x, y), sigma=1.0) for x in joints_x])[None]


def test_flip_test_of_an_exactly_mirrored_setup_returns_the_original():
    # Pixel-centre geometry: the flipped crop's joint x sits at W - 1 - x, and left/right swap.
    width, joints_x = 28, [13.3, 9.6, 17.2, 7.05, 19.8]
    maps = _pose_maps(joints_x, 7.4, width)
    mirrored_x = [width - 1 - joints_x[j] for j in (0, 2, 1, 4, 3)]
    maps_flipped = _pose_maps(mirrored_x, 7.4, width)
    averaged = flip_test_average(maps, maps_flipped, FLIP_PAIRS, shift_px=0)
    assert torch.allclose(averaged, maps, atol=1e-12)


def test_flip_test_shift_for_hrnet_geometry():
    # HRNet geometry with stride s = 4: heatmap u = crop x / s, so the flipped crop's joint sits at
    # W - 1/s - u and the flipped-back map peaks at u - 0.75. A 0.75 px shift restores the centre of mass
    # exactly; HRNet's whole-pixel shift leaves the average 0.125 px to the right.
    width, stride, joints_x = 28, 4, [13.3, 9.6, 17.2, 7.05, 19.8]
    maps = _pose_maps(joints_x, 7.4, width)
    maps_flipped = _pose_maps([width - 1 / stride - joints_x[j] for j in (0, 2, 1, 4, 3)], 7.4, width)
    truth = torch.tensor(joints_x, dtype=torch.float64)

    coords, _ = decode_local_com(flip_test_average(maps, maps_flipped, FLIP_PAIRS, shift_px=1 - 1 / stride), window=13)
    assert torch.allclose(coords[0, :, 0], truth, atol=1e-6)
    coords, _ = decode_local_com(flip_test_average(maps, maps_flipped, FLIP_PAIRS, shift_px=1), window=13)
    assert torch.allclose(coords[0, :, 0], truth + 0.125, atol=1e-6)
    coords, _ = decode_local_com(flip_test_average(maps, maps_flipped, FLIP_PAIRS, shift_px=0), window=13)
    assert torch.allclose(coords[0, :, 0], truth - 0.375, atol=1e-6)


def test_flip_test_average_checks_shapes():
    with pytest.raises(ValueError, match="shape"):
        flip_test_average(torch.zeros(1, 5, 4, 4), torch.zeros(1, 5, 4, 5), FLIP_PAIRS)
