"""Losses: our heatmap distribution matching loss (eq. 1) and HRNet's pixel-wise MSE baseline.

Legend: B images, K joints, H x W heatmap pixels.
``pred_heatmaps: (B, K, H, W)``, ``joints: (B, K, 2) heatmap px (x, y)``, ``target_weight: (B, K)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hdm import _ssp, ot
from hdm.targets import DEMANDER_MODES, demanders

SOLVERS = ("exact", "sinkhorn")
REDUCTIONS = ("mean", "sum", "none")
SUPPLIERS = ("relu", "softplus", "softmax")
#: "guarded": the ε guard of :func:`suppliers` (an all-≤ 0 relu map becomes a softmax supplier);
#: "strict": the literal relu + normalisation, so an all-≤ 0 relu map contributes no loss and no gradient.
SUPPLY_GUARDS = ("guarded", "strict")


def _not_finite(name: str) -> ValueError:
    return ValueError(f"{name} contains NaN or inf: the model diverged or its input was invalid")


def _check_floating(pred: torch.Tensor, name: str = "pred_heatmaps") -> None:
    if not pred.is_floating_point():
        raise ValueError(f"{name} must be floating point (float32/64, or float16/bfloat16 under AMP), got "
                         f"{pred.dtype}: pass {name}.float()")


def _check_heatmaps(pred: torch.Tensor, name: str = "pred_heatmaps", finite: bool = True) -> None:
    _check_floating(pred, name)
    if pred.ndim != 4:
        raise ValueError(f"{name} must be (B, K, H, W), got shape {tuple(pred.shape)}")
    if finite and not torch.isfinite(pred).all():
        raise _not_finite(name)


def _check_target_weight(target_weight: torch.Tensor) -> None:
    if not torch.isfinite(target_weight).all():
        raise ValueError("target_weight contains NaN or inf; use 0 for joints that do not count")
    if target_weight.numel() and target_weight.min() < 0:
        raise ValueError(f"target_weight has negative entries (min {target_weight.min().item():.3g}); weights must be >= 0")


HALF_DTYPES = (torch.float16, torch.bfloat16)


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision heatmaps (AMP): their sums are off by ~1e-3, too coarse to normalise and solve in."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


def _check_pose_inputs(pred: torch.Tensor, joints: torch.Tensor, target_weight: torch.Tensor, finite: bool = True) -> None:
    """Shapes, devices, finite joints and weights >= 0; finite heatmaps unless ``finite`` is False (the fused
    exact loss checks them in its own pass)."""
    _check_heatmaps(pred, finite=finite)
    batch, joint_count = pred.shape[:2]
    if joints.shape != (batch, joint_count, 2):
        raise ValueError(f"joints must be (B, K, 2) = ({batch}, {joint_count}, 2) to match the heatmaps, got {tuple(joints.shape)}")
    if target_weight.shape != (batch, joint_count):
        raise ValueError(f"target_weight must be (B, K) = ({batch}, {joint_count}), got {tuple(target_weight.shape)}")
    for name, tensor in (("joints", joints), ("target_weight", target_weight)):
        if tensor.device != pred.device:
            raise ValueError(f"{name} is on {tensor.device} but pred_heatmaps is on {pred.device}; move them to one device")
    if not torch.isfinite(joints).all():
        raise ValueError("joints contains NaN or inf")
    _check_target_weight(target_weight)


def suppliers(pred_heatmaps: torch.Tensor, eps: float = 1e-6, activation: str = "relu") -> torch.Tensor:
    """The suppliers S^k: an activation of the predicted heatmap, normalised to sum 1 per joint (Sec. C).

    ``activation="relu"`` (the paper's): ``S = (relu(h) + eps * softmax(h)) / (sum relu(h) + eps)``, equal to
    relu(h) / sum relu(h) up to a relative ``eps`` whenever the map has positive mass, and to softmax(h) for an
    all-zero or all-negative map, so that the loss stays finite and its gradient still moves mass toward the
    joint (relu alone would give 0/0 and a zero gradient there). ``"softplus"``: the same with softplus(h)
    (beta 1) in place of relu(h): no pixel is ever without gradient (ablation; see docs/assumptions.md).
    ``"softmax"``: softmax(h) over the H x W pixels (ablation).

    Args:
        pred_heatmaps: (..., H, W). eps: guard, in heatmap units (summed activation values).
        activation: one of ``SUPPLIERS``.
    Returns:
        (..., H, W) non-negative, summing to 1 over (H, W).
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    flat, positive = _activated(pred_heatmaps, activation)
    if positive is None:
        return torch.softmax(flat, dim=-1).view_as(pred_heatmaps)
    guard = eps * torch.softmax(flat, dim=-1)
    mass = positive.sum(-1, keepdim=True) + eps
    return ((positive + guard) / mass).view_as(pred_heatmaps)


def _activated(pred_heatmaps: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(flat (..., H*W), act(flat)) for relu / softplus; act is None for softmax (normalised as it is)."""
    _check_floating(pred_heatmaps)
    if activation not in SUPPLIERS:
        raise ValueError(f"activation must be one of {SUPPLIERS}, got {activation!r}")
    flat = pred_heatmaps.flatten(-2)
    if activation == "softmax":
        return flat, None
    return flat, torch.relu(flat) if activation == "relu" else nn.functional.softplus(flat)


def strict_suppliers(pred_heatmaps: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """The literal suppliers, without the ε guard: ``act(h) / Σ act(h)`` (softmax unchanged). Maps without positive
    mass (all-≤ 0 relu maps) give 0 / 0 = NaN: drop them first (:func:`has_supply`).

    Args: pred_heatmaps (..., H, W); activation: one of ``SUPPLIERS``. Returns (..., H, W), summing to 1."""
    flat, positive = _activated(pred_heatmaps, activation)
    if positive is None:
        return torch.softmax(flat, dim=-1).view_as(pred_heatmaps)
    return (positive / positive.sum(-1, keepdim=True)).view_as(pred_heatmaps)


def has_supply(pred_heatmaps: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """(...) bool: whether each (..., H, W) map has positive mass under ``activation`` (relu: a pixel > 0;
    softplus and softmax: always). The maps the strict mode keeps, and those the guard does not serve."""
    if activation != "relu":
        return torch.ones(pred_heatmaps.shape[:-2], dtype=torch.bool, device=pred_heatmaps.device)
    return (pred_heatmaps.detach() > 0).flatten(-2).any(-1)


def supplier_mass(pred_heatmaps: torch.Tensor, eps: float = 1e-6, activation: str = "relu") -> torch.Tensor:
    """(...) detached mass the suppliers normalise: Σ act(h) + eps over each (..., H, W) map (relu, softplus); 1 for
    softmax (already normalised). The gradient of the normalised suppliers scales as 1 / this mass."""
    flat = pred_heatmaps.detach().flatten(-2)
    if activation == "softmax":
        return torch.ones_like(flat[..., 0])
    positive = torch.relu(flat) if activation == "relu" else nn.functional.softplus(flat)
    return positive.sum(-1) + eps


class HDMLoss(nn.Module):
    """Heatmap distribution matching loss (eq. 1): per joint, the EMD between suppliers and demanders.

    L = sum over joints of w_k * EMD_C(S^k, D^k), averaged over images (``reduction="mean"``), where S^k are
    :func:`suppliers`, D^k the demanders of :func:`hdm.targets.demanders` and C the distance in heatmap px.
    Its gradient w.r.t. S^k is the dual potential a^k (eq. 3); autograd carries it through the normalisation.

    Args:
        demanders: "subpixel" (4 bilinear corner pixels, the paper's ``b in R^4``) or "naive" (rounded pixel).
        solver: "exact" (EMD, :func:`hdm.ot.emd_grid`) or "sinkhorn" (entropic, :func:`hdm.ot.sinkhorn`).
        reduction: "mean" (sum over joints, mean over images), "sum", or "none" for the (B, K) matrix.
        cost: "euclidean" (L2 in heatmap px, the paper's) or "sqeuclidean".
        sinkhorn_eps: entropic regularisation in cost units (only for ``solver="sinkhorn"``).
        supply_eps: guard of :func:`suppliers`.
        supplier: activation of :func:`suppliers`: "relu" (the paper's), "softplus" or "softmax" (ablations).
        supply_guard: "guarded" (:func:`suppliers`, an all-≤ 0 relu map becomes a softmax supplier) or "strict"
            (:func:`strict_suppliers`: the literal relu + normalisation; an all-≤ 0 relu map costs 0, no gradient).
        mass_weighting: a repair that keeps the loss's suppliers: each joint's EMD is weighted by its detached
            supplier mass (:func:`supplier_mass`) over the batch's mean mass, so maps with little positive mass
            (whose gradient scales as 1 / mass) do not dominate the batch's gradient. Reported values
            (:meth:`per_joint`) stay unweighted.

    Dtypes: float32 / float64 heatmaps are normalised and solved as given (the exact solver always works in
    float64); float16 / bfloat16 heatmaps (AMP) are normalised and solved in float32, and the loss and the
    gradient come back in the heatmaps' dtype. An empty batch (B = 0) gives a loss of 0 connected to the input.
    Target weights must be finite and >= 0; joints with weight 0 cost nothing and get no gradient.
    """

    def __init__(
        self,
        demanders: str = "subpixel",
        solver: str = "exact",
        reduction: str = "mean",
        cost: str = "euclidean",
        sinkhorn_eps: float = 0.05,
        supply_eps: float = 1e-6,
        supplier: str = "relu",
        supply_guard: str = "guarded",
        mass_weighting: bool = False,
    ):
        super().__init__()
        for name, value, allowed in (
            ("demanders", demanders, DEMANDER_MODES),
            ("solver", solver, SOLVERS),
            ("reduction", reduction, REDUCTIONS),
            ("cost", cost, ot.COSTS),
            ("supplier", supplier, SUPPLIERS),
            ("supply_guard", supply_guard, SUPPLY_GUARDS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.demanders = demanders
        self.solver = solver
        self.reduction = reduction
        self.cost = cost
        self.sinkhorn_eps = sinkhorn_eps
        self.supply_eps = supply_eps
        self.supplier = supplier
        self.supply_guard = supply_guard
        self.mass_weighting = mass_weighting

    def per_joint(self, pred_heatmaps: torch.Tensor, joints: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        """Unweighted EMD per joint, (B, K) in the dtype of ``pred_heatmaps``; 0 (and no gradient) where
        target_weight is 0 (and, with ``supply_guard="strict"``, where a relu map has no positive pixel)."""
        _check_pose_inputs(pred_heatmaps, joints, target_weight, finite=not self._fused(pred_heatmaps))
        return self._per_joint(pred_heatmaps, joints, target_weight).to(pred_heatmaps.dtype)

    def _fused(self, pred_heatmaps: torch.Tensor) -> bool:
        """Whether the loss takes the fused path (the paper's configuration): relu suppliers, sub-pixel demanders
        and the exact solver, computed in one compiled pass per problem (:func:`_fused_exact`)."""
        return (
            self.solver == "exact" and self.supplier == "relu" and self.demanders == "subpixel"
            and pred_heatmaps.shape[-2] >= 2 and pred_heatmaps.shape[-1] >= 2
        )

    def _per_joint(self, pred_heatmaps: torch.Tensor, joints: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        """:meth:`per_joint` in the working dtype (float32 for half-precision heatmaps), inputs checked."""
        work = _working_dtype(pred_heatmaps.dtype)
        pred_heatmaps = pred_heatmaps.to(work)  # no copy unless half precision; autograd casts the gradient back
        if joints.dtype in HALF_DTYPES:
            joints = joints.to(work)
        strict = self.supply_guard == "strict"
        if strict:  # maps without supply cost nothing and get no gradient
            target_weight = target_weight * has_supply(pred_heatmaps, self.supplier).to(target_weight.dtype)
        if self._fused(pred_heatmaps):
            return _fused_exact(pred_heatmaps, joints, target_weight, 0.0 if strict else self.supply_eps, self.cost)
        batch, joint_count, height, width = pred_heatmaps.shape
        losses = pred_heatmaps.new_zeros(batch, joint_count)
        used = target_weight > 0
        if not used.any():
            return losses + 0.0 * pred_heatmaps.sum((-1, -2))  # keeps the graph connected
        if strict:
            supply = strict_suppliers(pred_heatmaps[used], self.supplier)  # (N, H, W)
        else:
            supply = suppliers(pred_heatmaps[used], self.supply_eps, self.supplier)  # (N, H, W)
        positions, masses = demanders(joints[used].unsqueeze(0), (height, width), self.demanders)
        positions, masses = positions[0], masses[0].to(supply.dtype)
        if self.solver == "exact":
            value, _, _ = ot.emd_grid(supply, positions, masses, cost=self.cost)
        else:
            cost = ot.grid_cost(height, width, positions, cost=self.cost).to(supply.dtype)
            value, _, _ = ot.sinkhorn(supply.flatten(1), masses, cost, eps=self.sinkhorn_eps)
        return losses.index_put((used.nonzero(as_tuple=True)), value)

    def forward(self, pred_heatmaps: torch.Tensor, joints: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        _check_pose_inputs(pred_heatmaps, joints, target_weight, finite=not self._fused(pred_heatmaps))
        per_joint = self._per_joint(pred_heatmaps, joints, target_weight)
        weighted = per_joint * target_weight.to(per_joint.dtype)
        if self.mass_weighting:
            weighted = weighted * self._mass_weights(pred_heatmaps, target_weight).to(weighted.dtype)
        if self.reduction == "none":
            return weighted.to(pred_heatmaps.dtype)
        total = weighted.sum()  # 0 for an empty batch, still connected to the input
        if self.reduction == "mean":
            total = total / max(pred_heatmaps.shape[0], 1)
        return total.to(pred_heatmaps.dtype)


    def _mass_weights(self, pred_heatmaps: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        """(B, K) detached supplier mass of each joint's map over the mean mass of the batch's counted joints."""
        mass = supplier_mass(pred_heatmaps.to(_working_dtype(pred_heatmaps.dtype)), self.supply_eps, self.supplier)
        counted = target_weight > 0
        mean = mass[counted].mean() if counted.any() else mass.new_ones(())
        return mass / mean


class _FusedExactEMD(torch.autograd.Function):
    """EMD from the relu suppliers of heatmap rows to their 4 sub-pixel demanders; the kernel computes the
    gradient w.r.t. the heatmaps in the same pass (:func:`hdm._ssp.solve_relu_squares`)."""

    @staticmethod
    def forward(ctx, flat, masses, rows, corner, width, eps, cost):
        heat = flat.detach()
        sigma = torch.softmax(heat, dim=-1)  # the suppliers' guard, vectorised by torch
        heat_np = np.ascontiguousarray(heat.cpu().numpy())
        sigma_np = np.ascontiguousarray(sigma.cpu().numpy())
        rows_np = rows.cpu().numpy().astype(np.int64)
        corner_np = np.ascontiguousarray(corner.cpu().numpy().astype(np.int64))
        demand_np = np.ascontiguousarray(masses.detach().to("cpu", torch.float64).numpy())
        n_problems, (n_rows, n_pix) = len(rows_np), heat_np.shape
        height = n_pix // width
        value = np.empty(n_problems)
        b = np.empty((n_problems, 4))
        want_grad = ctx.needs_input_grad[0]  # False under torch.no_grad() (validation): no gradient pass
        grad = np.empty((n_problems if want_grad else 0, n_pix), heat_np.dtype)
        table = ot._offset_cost_table((height - 1) ** 2 + (width - 1) ** 2, cost)
        bad = _ssp.solve_relu_squares(heat_np, sigma_np, eps, rows_np, width, corner_np, demand_np, table, value, b,
                                      grad, ot._n_chunks(n_problems))
        if bad.size:
            raise _not_finite("pred_heatmaps")
        like = dict(device=flat.device, dtype=flat.dtype)
        ctx.grad, ctx.b = torch.from_numpy(grad).to(flat.device), torch.from_numpy(b).to(**like)
        ctx.rows, ctx.n_rows = rows, n_rows
        return torch.from_numpy(value).to(**like)

    @staticmethod
    def backward(ctx, grad_value):
        scale = grad_value.unsqueeze(-1)
        grad_flat = grad_masses = None
        if ctx.needs_input_grad[0]:
            grad_flat = ctx.grad * scale
            if len(ctx.rows) < ctx.n_rows:
                grad_flat = grad_flat.new_zeros(ctx.n_rows, grad_flat.shape[1]).index_copy_(0, ctx.rows, grad_flat)
        if ctx.needs_input_grad[1]:
            grad_masses = scale * ctx.b
        return grad_flat, grad_masses, None, None, None, None, None


def _fused_exact(pred: torch.Tensor, joints: torch.Tensor, target_weight: torch.Tensor, eps: float, cost: str):
    """Unweighted exact EMD per joint (B, K) of :class:`HDMLoss` with relu suppliers and sub-pixel demanders:
    the suppliers, the OT and the gradient in one compiled pass per joint (no (N, H, W) float64 copies)."""
    batch, joint_count, height, width = pred.shape
    flat = pred.reshape(batch * joint_count, height * width)
    used = (target_weight > 0).reshape(-1)
    losses = flat.new_zeros(batch * joint_count)
    if not used.all() and not torch.isfinite(flat[~used]).all():  # the kernel checks the used rows
        raise _not_finite("pred_heatmaps")
    if not used.any():
        return (losses + 0.0 * flat.sum(-1)).view(batch, joint_count)  # keeps the graph connected
    rows = used.nonzero().squeeze(1)
    positions, masses = demanders(joints.reshape(1, -1, 2)[:, rows], (height, width), "subpixel")
    value = _FusedExactEMD.apply(flat, masses[0].to(flat.dtype), rows, positions[0, :, 0], width, eps, cost)
    return losses.index_put((rows,), value).view(batch, joint_count)


class HeatmapMSELoss(nn.Module):
    """HRNet's pixel-wise baseline: 0.5 x MSE between heatmaps, averaged over joints, pixels and images.

    ``0.5 * mean_{b,k,h,w} (w_bk * (pred - target))^2`` with ``use_target_weight``; without it, w = 1.
    Targets must be finite and weights finite and >= 0; an empty batch gives 0 (connected to the input).

    Args:
        use_target_weight: weight each joint's squared error by its target weight (HRNet: True).
    """

    def __init__(self, use_target_weight: bool = True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, pred_heatmaps: torch.Tensor, target_heatmaps: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        _check_heatmaps(pred_heatmaps, finite=False)  # checked below, from the loss
        if target_heatmaps.shape != pred_heatmaps.shape:
            raise ValueError(
                f"target_heatmaps {tuple(target_heatmaps.shape)} must match pred_heatmaps {tuple(pred_heatmaps.shape)}"
            )
        if target_weight.shape != pred_heatmaps.shape[:2]:
            raise ValueError(f"target_weight must be (B, K) = {tuple(pred_heatmaps.shape[:2])}, got {tuple(target_weight.shape)}")
        if target_heatmaps.device != pred_heatmaps.device or target_weight.device != pred_heatmaps.device:
            raise ValueError("pred_heatmaps, target_heatmaps and target_weight must be on one device")
        _check_target_weight(target_weight)
        diff = pred_heatmaps - target_heatmaps
        if self.use_target_weight:
            diff = diff * target_weight[..., None, None]
        squared = diff.pow(2)
        # mean() of nothing is NaN; the sum (0) keeps the graph
        loss = 0.5 * (squared.sum() if squared.numel() == 0 else squared.mean())
        if not torch.isfinite(loss):
            # NaN or inf in either heatmap always makes the loss non-finite (weights are finite and >= 0), so the
            # inputs are only searched when it is: two passes over the batch saved on every normal call
            if not torch.isfinite(pred_heatmaps).all():
                raise _not_finite("pred_heatmaps")
            if not torch.isfinite(target_heatmaps).all():
                raise ValueError("target_heatmaps contains NaN or inf: check the targets built from the joints")
        return loss
