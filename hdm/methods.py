"""The method table: what a training method *is* — its target, its loss and its default decoder.

A method changes nothing but the training step's loss (and the decoder used by default): the dataset, the
model, the schedule and the evaluation are shared, so every method is compared like with like.

Legend: B images, K joints, H x W heatmap px. Every method's loss is called as
``loss(heatmaps (B, K, H, W), joints (B, K, 2) heatmap px (x, y), visibility (B, K))`` and returns the scalar
loss (mean over images).

==============  =====================================================================  ===============
method          training target and loss                                               default decoder
==============  =====================================================================  ===============
gaussian        ``HeatmapMSELoss`` to Gaussian heatmaps (``sigma``), HRNet's baseline  argmax_shift
dot             ``HeatmapMSELoss`` to dot heatmaps (1 at the rounded pixel)            argmax_shift
hdm             ``HDMLoss``: exact EMD to the 4 sub-pixel demanders (ours, eq. 1)      local_com
hdm_naive       ``HDMLoss`` with one demander at the rounded pixel (ablation)          local_com
hdm_sinkhorn    ``HDMLoss`` with entropic OT (``sinkhorn_eps``) instead of exact        local_com
==============  =====================================================================  ===============

Adding a method is one entry in ``METHODS``; e.g. a softmax-supplier variant with the naive demanders::

    METHODS["hdm_softmax_naive"] = Method(
        "HDMLoss, softmax suppliers, one demander at the rounded pixel",
        lambda o: JointsHDMLoss(demanders="naive", supplier="softmax"),
        decoder="local_com",
    )

``options`` (``o`` above) is anything with the config's attributes (``hdm.config.Config``); ``keys`` names the
config keys a method reads beyond those every run reads (``sigma`` for the validation MSE): they enter the
identity of that method's runs, and are left out of the others'.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import nn

from hdm.loss import HDMLoss, HeatmapMSELoss
from hdm.targets import dot_heatmaps, gaussian_heatmaps, target_weight


class TargetMSELoss(nn.Module):
    """HRNet's pixel-wise MSE to a target heatmap built from the joints by ``make_target``.

    Args:
        make_target: ``(joints (B, K, 2), visibility (B, K), heatmap_hw (H, W)) -> (heatmaps, target_weight)``,
            e.g. ``hdm.targets.gaussian_heatmaps``.
    """

    def __init__(self, make_target: Callable[..., tuple[torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.make_target = make_target
        self.mse = HeatmapMSELoss(use_target_weight=True)

    def forward(self, heatmaps: torch.Tensor, joints: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
        target, weight = self.make_target(joints, visibility, tuple(heatmaps.shape[-2:]))
        return self.mse(heatmaps, target, weight)


class JointsHDMLoss(nn.Module):
    """``HDMLoss`` (eq. 1) called with the joints' visibility: a joint counts when it is labelled and inside the
    heatmap (``hdm.targets.target_weight``). Keyword arguments go to ``HDMLoss``.

    ``level_weight`` > 0 adds a repair that leaves the EMD term as it is: ``level_weight`` x Σ_k w_k
    relu(``level_margin`` - max_pixels h_k), averaged over images, which stops a counted joint's map from sinking
    to all-≤ 0 (where relu suppliers have no gradient) by raising its highest pixel back to the margin.
    """

    def __init__(self, level_weight: float = 0.0, level_margin: float = 0.1, **hdm_options):
        super().__init__()
        self.hdm = HDMLoss(**hdm_options)
        self.level_weight = level_weight
        self.level_margin = level_margin

    def forward(self, heatmaps: torch.Tensor, joints: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
        weight = target_weight(joints, visibility, tuple(heatmaps.shape[-2:]))
        loss = self.hdm(heatmaps, joints, weight)
        if self.level_weight > 0:
            peak = heatmaps.flatten(-2).amax(-1)  # (B, K)
            sinking = torch.relu(self.level_margin - peak) * weight.to(peak.dtype)
            loss = loss + self.level_weight * sinking.sum() / max(heatmaps.shape[0], 1)
        return loss


#: Config keys of the EMD methods' loss: the suppliers' activation and guard, and the repairs (docs/assumptions.md).
HDM_KEYS = ("supplier", "supply_guard", "mass_weighting", "level_weight", "level_margin")


def _hdm_loss(o, **fixed) -> JointsHDMLoss:
    """The EMD methods' loss from the config ``o`` (``HDM_KEYS``) and the method's ``fixed`` options."""
    return JointsHDMLoss(supplier=o.supplier, supply_guard=o.supply_guard, mass_weighting=o.mass_weighting,
                         level_weight=o.level_weight, level_margin=o.level_margin, **fixed)  # fmt: skip


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        summary: one line for tables and ``--help``.
        build: ``build(options) -> loss module`` (see the module docstring for its call signature).
        decoder: the ``hdm.decode.DECODERS`` key used when the config says ``decoder="auto"``.
        keys: config keys this method reads beyond the shared ones (part of its runs' identity).
    """

    summary: str
    build: Callable[[object], nn.Module]
    decoder: str
    keys: tuple[str, ...] = ()


METHODS: dict[str, Method] = {
    "gaussian": Method(
        "MSE to Gaussian heatmaps (HRNet's baseline)",
        lambda o: TargetMSELoss(partial(gaussian_heatmaps, sigma=o.sigma)),
        decoder="argmax_shift",
    ),
    "dot": Method("MSE to dot heatmaps (1 at the rounded pixel)", lambda o: TargetMSELoss(dot_heatmaps), "argmax_shift"),
    "hdm": Method(
        "EMD to the 4 sub-pixel demanders, exact (ours, eq. 1)",
        lambda o: _hdm_loss(o),
        decoder="local_com",
        keys=HDM_KEYS,
    ),
    "hdm_naive": Method(
        "EMD to one demander at the rounded pixel (ablation)",
        lambda o: _hdm_loss(o, demanders="naive"),
        decoder="local_com",
        keys=HDM_KEYS,
    ),
    "hdm_sinkhorn": Method(
        "entropic EMD (Sinkhorn, sinkhorn_eps) to the sub-pixel demanders",
        lambda o: _hdm_loss(o, solver="sinkhorn", sinkhorn_eps=o.sinkhorn_eps),
        decoder="local_com",
        keys=(*HDM_KEYS, "sinkhorn_eps"),
    ),
}

#: Every config key that some method reads and others do not.
METHOD_KEYS = tuple(sorted({key for method in METHODS.values() for key in method.keys}))


def get_method(name: str) -> Method:
    """The ``METHODS`` entry ``name``; a clear error for an unknown one."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {tuple(METHODS)}") from None


def method_loss(name: str, options) -> nn.Module:
    """The training loss of method ``name`` with ``options`` (a ``Config``, or any object with its fields)."""
    return get_method(name).build(options)


def validation_losses(sigma: float) -> dict[str, nn.Module]:
    """The two losses every run reports on its validation heatmaps, whatever its method: ``val_mse`` (MSE to
    Gaussian targets of std ``sigma`` heatmap px) and ``val_hdm`` (exact EMD, sub-pixel demanders, relu)."""
    return {"val_mse": TargetMSELoss(partial(gaussian_heatmaps, sigma=sigma)), "val_hdm": JointsHDMLoss()}
