"""Training-dynamics diagnostics of the suppliers (the relu question of issue 10), measured on heatmaps.

Legend: B images, K joints, H x W heatmap px; ``heatmaps (B, K, H, W)``, ``joints (B, K, 2)`` heatmap px (x, y),
``weight (B, K)`` target weight (1: the joint counts).

- ``supplier_mass``: Σ relu(h) over a joint's map, the mass relu suppliers normalise (eq. 1's S^k before
  normalisation); near 0 means the loss sees only its ε guard.
- ``dead_share``: the share of pixels within ``radius`` px of the joint whose value is <= 0: relu gives them no
  gradient, so the loss cannot raise them (the mechanism suspected when relu training stalls).
- ``no_positive``: whether a joint's whole map has no pixel > 0 (Σ relu(h) = 0): validation reports the share as
  ``val_no_positive_share``, training as ``train_no_positive_share`` (``MapShares``).
- ``guard_served``: whether the loss sees a map only through the suppliers' ε guard (``train_guard_share``); the
  rule is in that one function.
"""

from __future__ import annotations

import torch

from hdm.methods import get_method
from hdm.targets import target_weight


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


def no_positive(heatmaps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(N,) bool: whether each counted joint's map (N = number of counted joints) has no pixel > 0."""
    return ~(heatmaps.detach() > 0).flatten(-2).any(-1)[_counted(weight)]


def loss_supplier(cfg) -> str | None:
    """The suppliers' activation of ``cfg``'s training loss: ``cfg.supplier`` for the EMD methods (those whose
    loss reads the ``supplier`` key, ``hdm.methods``), None for the MSE methods (no suppliers, no guard)."""
    return getattr(cfg, "supplier", "relu") if "supplier" in get_method(cfg.method).keys else None


def guard_served(heatmaps: torch.Tensor, weight: torch.Tensor, supplier: str | None,
                 supply_guard: str = "guarded") -> torch.Tensor:  # fmt: skip
    """(N,) bool: whether the loss sees each counted joint's map only through the suppliers' ε guard.

    The rule (the loss's owner keeps it in step with ``hdm.loss``): with relu suppliers under ``supply_guard``
    "guarded", a map with no pixel > 0 has Σ relu(h) = 0, so its supplier is the guard's softmax(h) alone: those
    maps, exactly. Softplus and softmax suppliers always have positive mass (the guard adds a relative ε at most):
    none. "strict" drops such maps from the loss instead of guarding them: none. ``supplier`` None (MSE methods,
    ``loss_supplier``): none. Maps with 0 < Σ relu(h) << ε are partly the guard's but not counted here."""
    if supplier != "relu" or supply_guard == "strict":
        return torch.zeros(int(_counted(weight).sum()), dtype=torch.bool, device=heatmaps.device)
    return no_positive(heatmaps, weight)


class MapShares:
    """Counts over training batches of the counted joint maps (target weight > 0), those with no pixel > 0 and
    those the guard serves (``guard_served``), as float64 tensors on the heatmaps' device (no host sync per step).

    ``supplier``: ``loss_supplier(cfg)``; ``supply_guard``: the config's (``getattr(cfg, "supply_guard",
    "guarded")``)."""

    def __init__(self, supplier: str | None, supply_guard: str = "guarded"):
        self.supplier, self.supply_guard = supplier, supply_guard
        self.counts: torch.Tensor | None = None  # (3,): counted, no positive pixel, guard-served

    def add(self, heatmaps: torch.Tensor, joints: torch.Tensor, visibility: torch.Tensor) -> None:
        """Count one batch: ``heatmaps (B, K, H, W)``, ``joints (B, K, 2)`` heatmap px, ``visibility (B, K)``."""
        heatmaps = heatmaps.detach()
        weight = target_weight(joints.detach(), visibility.detach(), tuple(heatmaps.shape[-2:]))
        batch = torch.stack([_counted(weight).sum(), no_positive(heatmaps, weight).sum(),
                             guard_served(heatmaps, weight, self.supplier, self.supply_guard).sum()]).double()  # fmt: skip
        self.counts = batch if self.counts is None else self.counts + batch

    def totals(self) -> list[float]:
        """[counted maps, maps with no positive pixel, guard-served maps] so far (zeros before any batch)."""
        return [0.0, 0.0, 0.0] if self.counts is None else self.counts.tolist()

    @staticmethod
    def shares(totals: list[float]) -> dict[str, float]:
        """``train_no_positive_share`` and ``train_guard_share`` of ``totals`` (``totals()``, summed over ranks):
        shares of the counted maps in [0, 1]; NaN when no map counted."""
        counted, empty, guarded = totals
        nan = float("nan")
        return {"train_no_positive_share": empty / counted if counted else nan,
                "train_guard_share": guarded / counted if counted else nan}  # fmt: skip
