"""Heatmaps and crops of chosen validation samples from a trained run, for the qualitative figures (Fig. 1, 3)
and Theorem 1's numeric check on real predictions.

Legend: N samples, K joints, h x w heatmap px, H x W input-crop px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hdm.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from hdm.decode import decode
from hdm.geometry import heatmap_to_image
from hdm.runs import Run


@dataclass
class SamplePredictions:
    """Predictions of one run on N validation samples.

    Attributes:
        indices: (N,) dataset indices. crops: (N, H, W, 3) RGB input crops in [0, 1]. heatmaps: (N, K, h, w).
        coords: (N, K, 2) decoded heatmap px. image_coords: (N, K, 2) decoded original-image px.
        joints: (N, K, 2) ground truth, heatmap px. image_joints: (N, K, 2) ground truth, original-image px.
        visibility: (N, K) target weight. keypoint_flags: (N, K) COCO v (0/1/2). decoder: the decoder used.
        joint_names: K names. stride: input-crop px per heatmap px (crop px = stride * heatmap px).
    """

    indices: np.ndarray
    crops: np.ndarray
    heatmaps: np.ndarray
    coords: np.ndarray
    image_coords: np.ndarray
    joints: np.ndarray
    image_joints: np.ndarray
    visibility: np.ndarray
    keypoint_flags: np.ndarray
    decoder: str
    joint_names: tuple[str, ...]
    stride: float


def denormalise(images: torch.Tensor) -> np.ndarray:
    """ImageNet-normalised (N, 3, H, W) -> (N, H, W, 3) RGB in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def predict_samples(run: Run, indices, decoder: str | None = None, device: str | torch.device = "cpu") -> SamplePredictions:
    """Run ``run``'s final model on validation samples ``indices`` (no flip test) and decode.

    Args:
        run: a finished run. indices: dataset indices of its validation set. decoder: default the run's.
    """
    from hdm.experiment import build_data  # the engine imports this module's neighbours; keep import local

    if not run.done:
        raise RuntimeError(f"{run.dir} is not finished: train it first")
    cfg = run.config
    decoder = decoder or cfg.decoder
    dataset = build_data(cfg, train=False).val
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise ValueError("indices is empty: choose at least one validation sample")
    samples = [dataset[int(i)] for i in indices]
    batch = {key: torch.stack([s[key] for s in samples]) for key in ("image", "joints", "image_joints", "visibility",
                                                                      "keypoint_flags", "center", "scale", "rotation")}
    model = run.load_model(device)
    heatmaps = model(batch["image"].to(device)).cpu().double()
    coords, _ = decode(heatmaps, decoder)
    image_coords = heatmap_to_image(coords, batch["center"].double(), batch["scale"].double(),
                                    tuple(cfg.heatmap_size), batch["rotation"].double())
    return SamplePredictions(
        indices=indices, crops=denormalise(batch["image"]), heatmaps=heatmaps.numpy(), coords=coords.numpy(),
        image_coords=np.asarray(image_coords), joints=batch["joints"].numpy(),
        image_joints=batch["image_joints"].numpy(), visibility=batch["visibility"].numpy(),
        keypoint_flags=batch["keypoint_flags"].numpy(), decoder=decoder, joint_names=tuple(dataset.joint_set.names),
        stride=cfg.input_size[0] / cfg.heatmap_size[0],
    )
