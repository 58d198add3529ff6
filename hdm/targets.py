"""Training targets built from joints: Gaussian heatmaps, dot heatmaps and the demanders of eq. (2).

Legend: B images, K joints, H x W heatmap pixels, M demanders per joint.
``joints: (B, K, 2) float, heatmap px, (x, y)``, pixel centres on integer coordinates.
``visibility: (B, K)``, non-zero where the joint is labelled.

A joint *counts* (target weight 1) when it is labelled and its rounded pixel ``(int(x + 0.5), int(y + 0.5))``
lies inside the heatmap. The same rule serves every method, so all methods train on the same joints.
"""

from __future__ import annotations

import torch

DEMANDER_MODES = ("subpixel", "naive")


def _check_joints(joints: torch.Tensor, visibility: torch.Tensor | None = None) -> None:
    if joints.ndim != 3 or joints.shape[-1] != 2:
        raise ValueError(f"joints must have shape (B, K, 2) in heatmap px, got {tuple(joints.shape)}")
    if visibility is not None and visibility.shape != joints.shape[:2]:
        raise ValueError(
            f"visibility must have shape (B, K) = {tuple(joints.shape[:2])} to match joints, got {tuple(visibility.shape)}"
        )
    if not torch.isfinite(joints).all():
        raise ValueError("joints contain NaN or inf; mark unlabelled joints with visibility 0 and finite coordinates")


def rounded_pixels(joints: torch.Tensor) -> torch.Tensor:
    """Nearest pixel of each joint, HRNet's ``int(x + 0.5)``: ``(B, K, 2)`` int64, (x, y)."""
    return torch.floor(joints + 0.5).long()


def target_weight(joints: torch.Tensor, visibility: torch.Tensor, heatmap_hw: tuple[int, int]) -> torch.Tensor:
    """Weight of each joint: 1 if labelled and its rounded pixel is inside the heatmap, else 0.

    Args:
        joints: (B, K, 2) heatmap px. visibility: (B, K). heatmap_hw: (H, W).
    Returns:
        (B, K) float, dtype of ``joints``.
    """
    _check_joints(joints, visibility)
    height, width = heatmap_hw
    pix = rounded_pixels(joints)
    inside = (pix[..., 0] >= 0) & (pix[..., 0] < width) & (pix[..., 1] >= 0) & (pix[..., 1] < height)
    return (inside & (visibility > 0)).to(joints.dtype)


def gaussian_heatmaps(
    joints: torch.Tensor, visibility: torch.Tensor, heatmap_hw: tuple[int, int], sigma: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """HRNet's Gaussian-smoothed targets (the baseline of Table 1).

    Unnormalised Gaussian with peak 1 at the joint's *rounded* pixel, truncated to a (6σ+1)² window
    (radius 3σ), zero elsewhere and zero for joints that do not count.

    Args:
        joints: (B, K, 2) heatmap px. visibility: (B, K). heatmap_hw: (H, W). sigma: heatmap px.
    Returns:
        heatmaps (B, K, H, W) and target_weight (B, K), both in the dtype of ``joints``.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive (heatmap px), got {sigma}")
    weight = target_weight(joints, visibility, heatmap_hw)
    height, width = heatmap_hw
    radius = int(3 * sigma)
    centre = rounded_pixels(joints).to(joints.dtype)  # (B, K, 2)
    xs = torch.arange(width, dtype=joints.dtype, device=joints.device)
    ys = torch.arange(height, dtype=joints.dtype, device=joints.device)
    dx = xs.view(1, 1, 1, width) - centre[..., 0, None, None]
    dy = ys.view(1, 1, height, 1) - centre[..., 1, None, None]
    gauss = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    window = (dx.abs() <= radius) & (dy.abs() <= radius)
    return gauss * window * weight[..., None, None], weight


def subpixel_gaussian_heatmaps(
    joints: torch.Tensor,
    visibility: torch.Tensor,
    heatmap_hw: tuple[int, int],
    sigma: float = 2.0,
    truncate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussians centred at the exact sub-pixel joint, ``exp(-||p - joint||² / (2σ²))`` (peak < 1 off pixel centres).

    With ``truncate`` the map keeps :func:`gaussian_heatmaps`' (6σ+1)² window around the rounded pixel, so only the
    centre differs from HRNet's target (Theorem 1's eq. 5 check); without, it is untruncated (the oracle's smooth
    upper bound). Zero for joints that do not count.

    Args:
        joints: (B, K, 2) heatmap px. visibility: (B, K). heatmap_hw: (H, W). sigma: heatmap px, > 0.
    Returns:
        heatmaps (B, K, H, W) and target_weight (B, K), in the dtype of ``joints``.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive (heatmap px), got {sigma}")
    weight = target_weight(joints, visibility, heatmap_hw)
    height, width = heatmap_hw
    xs = torch.arange(width, dtype=joints.dtype, device=joints.device).view(1, 1, 1, width)
    ys = torch.arange(height, dtype=joints.dtype, device=joints.device).view(1, 1, height, 1)
    dist2 = (xs - joints[..., 0, None, None]) ** 2 + (ys - joints[..., 1, None, None]) ** 2
    heat = torch.exp(-dist2 / (2 * sigma**2)) * weight[..., None, None]
    if truncate:
        radius = int(3 * sigma)
        pix = rounded_pixels(joints).to(joints.dtype)
        heat = heat * (((xs - pix[..., 0, None, None]).abs() <= radius) & ((ys - pix[..., 1, None, None]).abs() <= radius))
    return heat, weight


def dot_heatmaps(
    joints: torch.Tensor, visibility: torch.Tensor, heatmap_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dot-annotated targets: 1 at the joint's rounded pixel, 0 elsewhere (and all 0 for joints that do not count).

    Args:
        joints: (B, K, 2) heatmap px. visibility: (B, K). heatmap_hw: (H, W).
    Returns:
        heatmaps (B, K, H, W) and target_weight (B, K).
    """
    weight = target_weight(joints, visibility, heatmap_hw)
    height, width = heatmap_hw
    pix = rounded_pixels(joints)
    batch, joints_count = joints.shape[:2]
    flat = torch.zeros(batch, joints_count, height * width, dtype=joints.dtype, device=joints.device)
    index = (pix[..., 1].clamp(0, height - 1) * width + pix[..., 0].clamp(0, width - 1)).unsqueeze(-1)
    flat.scatter_(-1, index, weight.unsqueeze(-1))
    return flat.view(batch, joints_count, height, width), weight


def demanders(
    joints: torch.Tensor, heatmap_hw: tuple[int, int], mode: str = "subpixel"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The demanders D^k of eq. (2): heatmap pixels that receive the joint's unit mass.

    - ``"subpixel"`` (default): the 4 pixels around the sub-pixel joint, weighted bilinearly (``b in R^4``);
      their weighted mean is exactly the joint. M = 4; weights can be 0 when the joint lies on a pixel row/column.
    - ``"naive"``: the joint's rounded pixel with mass 1 (ablation). M = 1.

    Joints are first clamped to the pixel-centre box ``[0, W-1] x [0, H-1]`` so that every demander is a heatmap
    pixel; joints farther out should carry target weight 0 (see :func:`target_weight`).

    Args:
        joints: (B, K, 2) heatmap px. heatmap_hw: (H, W). mode: "subpixel" | "naive".
    Returns:
        positions (B, K, M, 2) int64 heatmap px (x, y) and masses (B, K, M) in the dtype of ``joints``, summing to 1.
    """
    _check_joints(joints)
    height, width = heatmap_hw
    upper = torch.tensor([width - 1, height - 1], dtype=joints.dtype, device=joints.device)
    clamped = torch.minimum(joints.clamp(min=0), upper)
    if mode == "naive":
        return rounded_pixels(clamped).unsqueeze(2), torch.ones_like(joints[..., :1])
    if mode != "subpixel":
        raise ValueError(f"demanders mode must be one of {DEMANDER_MODES}, got {mode!r}")
    # The lower corner stays inside so that its +1 neighbour is a heatmap pixel (a joint on the last
    # row/column then puts all its mass on the +1 corner).
    limit = torch.tensor([max(width - 2, 0), max(height - 2, 0)], device=joints.device)
    low = torch.minimum(torch.floor(clamped).long(), limit)
    frac = clamped - low.to(joints.dtype)  # (B, K, 2) in [0, 1]
    offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]], device=joints.device)
    positions = low.unsqueeze(2) + offsets  # (B, K, 4, 2)
    fx, fy = frac[..., 0:1], frac[..., 1:2]
    masses = torch.cat([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    if width == 1 or height == 1:
        positions = torch.minimum(positions, torch.tensor([width - 1, height - 1], device=joints.device))
    return positions, masses
