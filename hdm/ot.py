r"""Batched optimal transport between heatmap suppliers and joint demanders (supplementary Sec. C).

For each of N problems, the Earth Mover's Distance (eq. 2) and its dual:

.. math::
    E(s, d) = \min_{x \ge 0} \sum_{n,m} x_{nm} C_{nm}
        \quad \text{s.t.} \quad \sum_m x_{nm} = s_n, \ \sum_n x_{nm} = d_m
    \;=\; \max_{a, b} \langle a, s\rangle + \langle b, d\rangle
        \quad \text{s.t.} \quad a_n + b_m \le C_{nm}

where
- s : (N, P) supplier masses (a heatmap's P = H*W pixels), d : (N, M) demander masses, Σs = Σd per problem;
- C : (N, P, M) transport cost (Euclidean distance in heatmap px for the loss);
- a : (N, P), b : (N, M) optimal dual potentials; ∂E/∂s = a (eq. 3), ∂E/∂d = b (each up to a constant shift,
  which vanishes on the simplex).

Solvers:
- :func:`emd` — exact, any cost, small M (successive shortest paths over the demanders, compiled with numba;
  see :mod:`hdm._ssp`).
- :func:`emd_grid` — the same exact solver specialised for our shape: suppliers on the H x W pixel grid,
  demanders on pixels; the cost is never materialised beyond one problem's (P, M) scratch.
- :func:`sinkhorn` — entropic OT in the log domain (torch, any device), regularisation ``eps`` in cost units.

All take torch tensors on any device, solve in float64 (exact solvers on the CPU) and return results on the
input's device and in the supply's dtype. ``value`` carries autograd: its gradient w.r.t. the supply is ``a``
and w.r.t. the demand is ``b``. Masses (supply, demand) must be floating point: integer or bool masses are
refused with a ValueError (results take the supply's dtype, so they would come back truncated); convert them
with ``.double()``. Half-precision masses (float16, bfloat16) are accepted, with a balance tolerance of their
rounding error (``torch.finfo(dtype).eps`` relative) instead of ``BALANCE_RTOL``; costs may have any real dtype.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np
import torch

from hdm import _ssp

COSTS = ("euclidean", "sqeuclidean")
BALANCE_RTOL = 1e-4


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf; OT needs finite, non-negative masses and costs")


def _check_mass_dtypes(supply: torch.Tensor, demand: torch.Tensor) -> float:
    """Masses must be floating point; returns the relative balance tolerance for their dtypes."""
    for name, mass in (("supply", supply), ("demand", demand)):
        if not mass.dtype.is_floating_point:
            raise ValueError(
                f"{name} has dtype {mass.dtype}; masses must be floating point (results take the supply's dtype, "
                f"integer masses would be truncated): pass {name}.double()"
            )
    return max(BALANCE_RTOL, torch.finfo(supply.dtype).eps, torch.finfo(demand.dtype).eps)


def _check_masses(supply: np.ndarray, demand: np.ndarray, rtol: float = BALANCE_RTOL) -> None:
    """Checks on the float64 copies (numpy: cheaper than torch's threaded reductions on small batches). Two
    passes per array: a NaN makes the minimum NaN, -inf makes it -inf and +inf makes the row sums inf, so the
    exact isfinite pass only runs when one of them says so (or a sum overflowed)."""
    totals = {}
    for name, mass in (("supply", supply), ("demand", demand)):
        low = mass.min() if mass.size else 0.0
        totals[name] = mass.sum(-1)
        if not (np.isfinite(low) and np.isfinite(totals[name]).all()):
            _check_finite(name, mass)
        if low < 0:
            raise ValueError(f"{name} has negative entries (min {low:.3g}); masses must be >= 0")
    total_s, total_d = totals["supply"], totals["demand"]
    if not np.allclose(total_s, total_d, rtol=rtol, atol=1e-12):
        worst = int(np.abs(total_s - total_d).argmax())
        raise ValueError(
            f"unbalanced problem {worst}: supply sums to {total_s[worst]:.8g}, demand to "
            f"{total_d[worst]:.8g}; normalise both to the same total"
        )


def _same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"inputs are on different devices {devices}; put them on one device")


def _n_chunks(n_problems: int) -> int:
    """Chunks of problems for the parallel kernels: a few per thread for balance, never more than problems."""
    return max(1, min(n_problems, 4 * numba.get_num_threads()))


def _as_numpy64(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float64).numpy())


def _balanced_demand(supply: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Rescale demand rows to the exact supply totals (they already agree to the balance tolerance)."""
    total_d = demand.sum(-1, keepdims=True)
    scale = np.divide(supply.sum(-1, keepdims=True), total_d, out=np.ones_like(total_d), where=total_d > 0)
    return demand * scale


class _EMDValue(torch.autograd.Function):
    """value = E(s, d) with ∂E/∂s = a and ∂E/∂d = b, potentials computed by ``solve``."""

    @staticmethod
    def forward(ctx, supply, demand, value, a, b):
        ctx.save_for_backward(a, b)
        return value

    @staticmethod
    def backward(ctx, grad_value):
        a, b = ctx.saved_tensors
        grad = grad_value.unsqueeze(-1)
        return grad * a, grad * b, None, None, None


def _with_grad(supply, demand, value_np, a_np, b_np):
    like = dict(device=supply.device, dtype=supply.dtype)
    value = torch.as_tensor(value_np).to(**like)
    a = torch.as_tensor(a_np).to(**like)
    b = torch.as_tensor(b_np).to(**like)
    return _EMDValue.apply(supply, demand, value, a, b), a, b


def emd(supply: torch.Tensor, demand: torch.Tensor, cost: torch.Tensor):
    """Exact EMD for a batch of problems with a small number of demanders.

    Args:
        supply: (N, P) masses >= 0. demand: (N, M) masses >= 0 with the same totals (to 1e-4 relative, or the
            dtype's eps for half precision; the demand is rescaled to the supply's total). Both floating point
            (integer masses raise ValueError). cost: (N, P, M) finite costs, any real dtype.
    Returns:
        value (N,), a (N, P), b (N, M), on the device and dtype of ``supply``; ``value`` is differentiable
        w.r.t. supply (gradient a) and demand (gradient b). Dual feasibility a_n + b_m <= C_nm holds
        everywhere, with equality wherever the optimal plan moves mass.
    Cost: O(P M) to start plus O(M^2 + log P) per pixel that changes demander; meant for M <= ~8.
    """
    if supply.ndim != 2 or demand.ndim != 2 or cost.ndim != 3:
        raise ValueError(
            f"expected supply (N, P), demand (N, M), cost (N, P, M); got {tuple(supply.shape)}, "
            f"{tuple(demand.shape)}, {tuple(cost.shape)}"
        )
    if cost.shape != (supply.shape[0], supply.shape[1], demand.shape[1]) or supply.shape[0] != demand.shape[0]:
        raise ValueError(
            f"shapes disagree: supply {tuple(supply.shape)}, demand {tuple(demand.shape)}, cost {tuple(cost.shape)}"
            " must be (N, P), (N, M), (N, P, M)"
        )
    _same_device(supply=supply, demand=demand, cost=cost)
    rtol = _check_mass_dtypes(supply, demand)
    s_np, d_np, c_np = _as_numpy64(supply), _as_numpy64(demand), _as_numpy64(cost)
    _check_masses(s_np, d_np, rtol)
    _check_finite("cost", c_np)
    d_np = _balanced_demand(s_np, d_np)
    n_problems, n_pix = s_np.shape
    a_np = np.empty((n_problems, n_pix))
    b_np = np.empty_like(d_np)
    value_np = np.empty(n_problems)
    if n_problems:
        _ssp.solve_dense(c_np, s_np, d_np, a_np, b_np, value_np, _n_chunks(n_problems))
    return _with_grad(supply, demand, value_np, a_np, b_np)


@lru_cache(maxsize=16)
def _offset_cost_table(max_sq: int, cost: str) -> np.ndarray:
    """Cost of an integer pixel offset, indexed by dx² + dy²: sqrt for "euclidean", identity for "sqeuclidean"."""
    squares = np.arange(max_sq + 1, dtype=np.float64)
    return np.sqrt(squares) if cost == "euclidean" else squares


def grid_cost(height: int, width: int, positions: torch.Tensor, cost: str = "euclidean") -> torch.Tensor:
    """Dense cost (N, H*W, M) between the pixel grid and demander pixels ``positions`` (N, M, 2) (x, y).

    Used by :func:`sinkhorn` and by tests; :func:`emd_grid` never builds it.
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    ys, xs = torch.meshgrid(
        torch.arange(height, device=positions.device), torch.arange(width, device=positions.device), indexing="ij"
    )
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(torch.float64)  # (P, 2)
    diff = grid[None, :, None, :] - positions[:, None, :, :].to(torch.float64)  # (N, P, M, 2)
    squared = (diff**2).sum(-1)
    return squared.sqrt() if cost == "euclidean" else squared


def _check_grid_inputs(supply: torch.Tensor, positions: torch.Tensor, demand: torch.Tensor) -> None:
    if supply.ndim != 3:
        raise ValueError(f"supply must be (N, H, W) heatmap masses, got {tuple(supply.shape)}")
    n_problems = supply.shape[0]
    if positions.ndim != 3 or positions.shape[0] != n_problems or positions.shape[2] != 2:
        raise ValueError(f"positions must be (N, M, 2) = ({n_problems}, M, 2) pixel (x, y), got {tuple(positions.shape)}")
    if demand.shape != positions.shape[:2]:
        raise ValueError(f"demand must be (N, M) = {tuple(positions.shape[:2])}, got {tuple(demand.shape)}")
    if positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise ValueError(f"positions must be integer pixel indices, got dtype {positions.dtype}")
    height, width = supply.shape[1:]
    if positions.numel() and (
        positions[..., 0].min() < 0 or positions[..., 0].max() >= width
        or positions[..., 1].min() < 0 or positions[..., 1].max() >= height
    ):
        raise ValueError(f"demander positions must be pixels of the {height}x{width} heatmap (0 <= x < W, 0 <= y < H)")


def emd_grid(supply: torch.Tensor, positions: torch.Tensor, demand: torch.Tensor, cost: str = "euclidean"):
    """Exact EMD from heatmap pixels to a few demander pixels, without materialising the cost tensor.

    Args:
        supply: (N, H, W) masses >= 0 (a normalised heatmap per problem). positions: (N, M, 2) int64 demander
            pixels (x, y), inside the heatmap. demand: (N, M) masses with the supply's totals. Masses floating
            point (integer masses raise ValueError, see :func:`emd`).
        cost: "euclidean" (L2 distance in heatmap px, the paper's choice) or "sqeuclidean".
    Returns:
        value (N,), a (N, H, W), b (N, M) like :func:`emd` (value differentiable w.r.t. supply and demand).
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    _check_grid_inputs(supply, positions, demand)
    n_problems, height, width = supply.shape
    flat = supply.reshape(n_problems, height * width)
    _same_device(supply=supply, positions=positions, demand=demand)
    rtol = _check_mass_dtypes(supply, demand)
    s_np, d_np = _as_numpy64(flat), _as_numpy64(demand)
    _check_masses(s_np, d_np, rtol)
    d_np = _balanced_demand(s_np, d_np)
    pos_np = np.ascontiguousarray(positions.detach().cpu().numpy().astype(np.int64))
    table = _offset_cost_table((height - 1) ** 2 + (width - 1) ** 2, cost)
    a_np = np.empty_like(s_np)
    b_np = np.empty_like(d_np)
    value_np = np.empty(n_problems)
    if n_problems:
        _ssp.solve_grid(s_np, width, pos_np, d_np, table, a_np, b_np, value_np, _n_chunks(n_problems))
    value, a, b = _with_grad(flat, demand, value_np, a_np, b_np)
    return value, a.view(n_problems, height, width), b


def sinkhorn(
    supply: torch.Tensor,
    demand: torch.Tensor,
    cost: torch.Tensor,
    eps: float = 0.05,
    max_iter: int = 300,
    tol: float = 1e-3,
    check_every: int = 10,
    eps_start: float = 1.0,
    stage_iter: int = 10,
):
    """Entropic OT in the log domain (batched torch, any device).

    .. math:: \\min_{x \\ge 0} \\langle x, C\\rangle + \\varepsilon \\sum x_{nm}(\\log x_{nm} - 1)
        \\ \\text{s.t. the marginals of eq. (2)}

    Args:
        supply: (N, P), demand: (N, M) masses with equal totals; cost: (N, P, M). eps: regularisation in cost
        units (heatmap px for the Euclidean cost). max_iter, tol: stop when the supply marginal's L1 error
        (checked every ``check_every`` iterations) is below tol, or after max_iter iterations at ``eps``.
        eps_start, stage_iter: ε-scaling — ``stage_iter`` iterations at each of eps_start, eps_start/2, ... down
        to eps, warm-starting the potentials (far fewer iterations for small eps; no effect if eps >= eps_start).
    Returns:
        value (N,) = ⟨x, C⟩ of the entropic plan, f (N, P), g (N, M) its dual potentials. The gradient of value
        w.r.t. supply is f (and w.r.t. demand g): the envelope gradient of the regularised problem.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive (cost units), got {eps}")
    if supply.ndim != 2 or demand.ndim != 2 or cost.shape != (*supply.shape, demand.shape[1]):
        raise ValueError(
            f"expected supply (N, P), demand (N, M), cost (N, P, M); got {tuple(supply.shape)}, "
            f"{tuple(demand.shape)}, {tuple(cost.shape)}"
        )
    _same_device(supply=supply, demand=demand, cost=cost)
    _check_masses(_as_numpy64(supply), _as_numpy64(demand), _check_mass_dtypes(supply, demand))
    if not torch.isfinite(cost).all():
        raise ValueError("cost contains NaN or inf; OT needs finite costs")
    work = torch.float64
    s = supply.detach().to(work)
    d = demand.detach().to(work)
    d = d * (s.sum(-1, keepdim=True) / d.sum(-1, keepdim=True).clamp_min(1e-300))
    c = cost.detach().to(device=supply.device, dtype=work)
    c_t = c.transpose(1, 2).contiguous()  # (N, M, P): both reductions run over contiguous or tiny axes
    log_s = torch.where(s > 0, s.log(), torch.full_like(s, -math.inf))
    log_d = torch.where(d > 0, d.log(), torch.full_like(d, -math.inf))
    f = torch.zeros_like(s)
    g = torch.zeros_like(d)

    def update(f, g, eps):
        f = -eps * torch.logsumexp((g[:, :, None] - c_t) / eps + log_d[:, :, None], dim=1)
        g = -eps * torch.logsumexp((f[:, None, :] - c_t) / eps + log_s[:, None, :], dim=2)
        return f, g

    stage = eps_start
    while stage > eps:
        for _ in range(stage_iter):
            f, g = update(f, g, stage)
        stage /= 2
    for iteration in range(1, max_iter + 1):
        f, g = update(f, g, eps)
        if iteration % check_every == 0 or iteration == max_iter:
            log_plan = (f[:, None, :] + g[:, :, None] - c_t) / eps + log_s[:, None, :] + log_d[:, :, None]
            if (log_plan.exp().sum(1) - s).abs().sum(-1).max() < tol:
                break
    # Potentials of the problem written with the plan x = exp((f + g - C)/eps) s d (Gibbs kernel on s ⊗ d).
    plan = ((f[:, :, None] + g[:, None, :] - c) / eps + log_s[:, :, None] + log_d[:, None, :]).exp()
    value = (plan * c).sum((1, 2))
    like = dict(device=supply.device, dtype=supply.dtype)
    f, g = f.to(**like), g.to(**like)
    return _EMDValue.apply(supply, demand, value.to(**like), f, g), f, g
