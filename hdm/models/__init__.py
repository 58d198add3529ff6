"""Pose networks: ``get_model(name, num_joints)`` builds a preset, ``load_checkpoint`` fills it from a local file.

Every model maps an image crop (B, 3, H, W) to heatmaps (B, K, H/4, W/4) (output stride 4) and exposes
``num_joints`` and ``output_stride``.
"""

from hdm.models.hrnet import (
    CFGS,
    MODELS,
    OUTPUT_STRIDE,
    HighResolutionModule,
    HRNet,
    HRNetCfg,
    StageCfg,
    get_model,
    hrnet_tiny,
    hrnet_w32,
    hrnet_w48,
    load_checkpoint,
)

__all__ = [
    "CFGS",
    "MODELS",
    "OUTPUT_STRIDE",
    "HRNet",
    "HRNetCfg",
    "HighResolutionModule",
    "StageCfg",
    "get_model",
    "hrnet_tiny",
    "hrnet_w32",
    "hrnet_w48",
    "load_checkpoint",
]
