"""Training-dynamics diagnostics of the suppliers (the relu question of issue 10), measured on heatmaps.

Legend: B images, K joints, H x W heatmap px; ``heatmaps (B, K, H, W)``, ``joints (B, K, 2)`` heatmap px (x, y),
``weight (B, K)`` target weight (1: the joint counts).

- ``supplier_mass``: Σ relu(h) over a joint's map, the mass relu suppliers normalise (eq. 1's S^k before
  normalisation); near 0 means the loss sees only its ε guard.
- ``dead_share``: the share of pixels within ``radius`` px of the joint whose value is <= 0: relu gives them no
  gradient, so the loss cannot raise them (the mechanism suspected when relu training stalls).
"""

from __future__ import annotations

import torch


def _counted(weight: torch.Tensor) -> torch.Tensor:
    return weight > 0


def supplier_mass(heatmaps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(N,) Σ_pixels relu(h) of each counted joint's map (N = number of counted joints), heatmap units."""
    return torch.relu(heatmaps.detach()).sum((-1, -2))[_counted(weight)]


def dead_share(heatmaps: torch.Tensor, joints: torch.Tensor, weight: torch.Tensor, radius: float = 2.0) -> torch.Tensor:
    """(N,) share of the pixels within ``radius`` heatmap px (Euclidean, pixel centres) of each counted joint whose
    value is <= 0; NaN where no pixel is that close (joints far outside the map do not count anyway)."""
    height, width = heatmaps.shape[-2:]
    ys = torch.arange(height, dtype=joints.dtype, device=joints.device).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=joints.dtype, device=joints.device).view(1, 1, 1, width)
    near = (xs - joints[..., 0, None, None]) ** 2 + (ys - joints[..., 1, None, None]) ** 2 <= radius**2
    dead = (heatmaps.detach() <= 0) & near
    counted = _counted(weight)
    return dead.sum((-1, -2))[counted].double() / near.sum((-1, -2))[counted].double()
