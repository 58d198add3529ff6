"""The one prediction path: model -> heatmaps -> decode -> original-image coordinates.

``decode_to_image`` is the shared last step (evaluation, the figures' samples and the oracle all use it);
``predict`` runs a model over dataset samples and collects everything evaluation needs; ``predict_samples``
does the same for a few chosen samples of a finished run, keeping crops and heatmaps for the figures.

Legend: N samples, B a batch of them, K joints, h x w heatmap px, H x W input-crop px.

Arrays of ``predict`` (and of a run's ``predictions.npz``), one row per sample, in the order of ``indices``:
``index`` (N,) dataset index; ``image_id``, ``annotation_id`` (N,); ``coords`` (N, K, 2) heatmap px and
``image_coords`` (N, K, 2) original-image px, predicted, (x, y); ``maxvals`` (N, K) heatmap peaks;
``joints`` (N, K, 2) heatmap px and ``image_joints`` (N, K, 2) image px, ground truth; ``visibility`` (N, K)
target weight; ``keypoint_flags`` (N, K); ``center`` (N, 2) image px; ``scale`` (N, 2) units of 200 px;
``box_score``, ``area`` (N,); ``head_size`` (N,) px for MPII with head boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from hdm.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from hdm.decode import decode, flip_test_average
from hdm.geometry import heatmap_to_image
from hdm.engine.diagnostics import dead_share, no_positive, supplier_mass
from hdm.methods import validation_losses
from hdm.targets import target_weight

#: Per-joint sums of the validation diagnostics (``hdm.engine.diagnostics``) and their joint count.
DIAGNOSTICS = ("supplier_mass", "dead_share", "no_positive", "joint_count")

#: Sample fields copied into the prediction arrays as they are.
_SAMPLE_FIELDS = ("joints", "image_joints", "visibility", "keypoint_flags", "center", "scale", "image_id",
                  "annotation_id", "box_score", "area")  # fmt: skip


def decode_to_image(heatmaps: torch.Tensor, decoder: str, center, scale, rotation=None, **decoder_options):
    """Decode heatmaps and map the coordinates back to the original image.

    Args:
        heatmaps: (B, K, h, w). decoder: a ``hdm.decode.DECODERS`` key (``decoder_options`` go to it).
        center: (B, 2) image px. scale: (B, 2) units of 200 px. rotation: (B,) degrees or None.
    Returns:
        ``coords`` (B, K, 2) heatmap px, ``maxvals`` (B, K), ``image_coords`` (B, K, 2) image px: torch, on the
        CPU, float64 coordinates.
    """
    coords, maxvals = decode(heatmaps, decoder, **decoder_options)
    coords = coords.cpu().double()
    rotation = None if rotation is None else torch.as_tensor(rotation).double()
    image_coords = heatmap_to_image(coords, torch.as_tensor(center).double(), torch.as_tensor(scale).double(),
                                    tuple(heatmaps.shape[-2:]), rotation)  # fmt: skip
    return coords, maxvals.cpu(), image_coords


def denormalise(images: torch.Tensor) -> np.ndarray:
    """ImageNet-normalised (N, 3, H, W) -> (N, H, W, 3) RGB in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def predict(model: nn.Module, dataset, indices, *, decoder: str, device: torch.device, batch_size: int = 16,
            flip_test: bool = False, flip_shift_px: float = 1.0, sigma: float | None = 2.0, num_workers: int = 0,
            float64: bool = False, keep_images: bool = False, progress: bool = False):  # fmt: skip
    """Run ``model`` (eval mode) on ``dataset[indices]``, decode, map to image px; sum the validation losses.

    Args:
        model: maps (B, 3, H, W) crops to (B, K, h, w) heatmaps. dataset: a ``TopDownDataset``.
        indices: dataset indices (any order). decoder: a ``hdm.decode.DECODERS`` key.
        flip_test: average with the mirrored crop's heatmaps (``flip_shift_px`` heatmap px, HRNet: 1).
        sigma: Gaussian std (heatmap px) of ``val_mse``; None computes no validation loss.
        float64: decode heatmaps in float64. keep_images: also return ``heatmaps`` (N, K, h, w) and ``crops``
            (N, H, W, 3) RGB in [0, 1].
    Returns:
        ``(arrays, sums)``: the arrays of the module docstring (plus ``heatmaps``/``crops`` when kept) and
        ``{"val_mse": Σ loss · B, "val_hdm": Σ loss · B, "count": N, "supplier_mass": Σ, "dead_share": Σ,
        "no_positive": Σ, "joint_count": J}`` over batches of ground-truth persons (the diagnostics summed over J
        counted joints; ``no_positive`` counts their maps without a pixel > 0).
    """
    model.eval()
    loader = DataLoader(Subset(dataset, list(map(int, indices))), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == "cuda")  # fmt: skip
    losses = validation_losses(sigma) if sigma is not None else {}
    sums = {**{name: 0.0 for name in losses}, "count": 0.0, **{name: 0.0 for name in DIAGNOSTICS}}
    chunks: dict[str, list] = {}
    for batch in tqdm(loader, desc="val", unit="batch", leave=False, disable=not progress):
        images = batch["image"].to(device, non_blocking=True)
        heatmaps = model(images)
        if flip_test:
            heatmaps = flip_test_average(heatmaps, model(images.flip(-1)), dataset.flip_pairs, flip_shift_px)
        if losses and bool((batch["annotation_id"] >= 0).all()):  # ground-truth persons (detections have no joints)
            joints, visibility = batch["joints"].to(device), batch["visibility"].to(device)
            for name, loss in losses.items():
                sums[name] += float(loss(heatmaps, joints, visibility)) * len(images)
            sums["count"] += len(images)
            weight = target_weight(joints, visibility, tuple(heatmaps.shape[-2:]))
            sums["supplier_mass"] += float(supplier_mass(heatmaps, weight).double().sum())
            sums["dead_share"] += float(dead_share(heatmaps, joints, weight).nansum())
            sums["no_positive"] += float(no_positive(heatmaps, weight).sum())
            sums["joint_count"] += float((weight > 0).sum())
        if float64:
            heatmaps = heatmaps.cpu().double()
        coords, maxvals, image_coords = decode_to_image(heatmaps, decoder, batch["center"], batch["scale"],
                                                        batch["rotation"])  # fmt: skip
        fields = {"coords": coords, "image_coords": image_coords, "maxvals": maxvals,
                  **{k: batch[k] for k in _SAMPLE_FIELDS}}  # fmt: skip
        if "head_size" in batch:
            fields["head_size"] = batch["head_size"]
        if keep_images:
            fields["heatmaps"] = heatmaps.cpu()
            fields["crops"] = torch.from_numpy(denormalise(batch["image"]))
        for key, value in fields.items():
            chunks.setdefault(key, []).append(value.numpy())
    arrays = {key: np.concatenate(value) for key, value in chunks.items()}  # empty for no indices
    arrays["index"] = np.asarray(indices, dtype=np.int64)
    return arrays, sums


@dataclass
class SamplePredictions:
    """Predictions of one run on N validation samples, for the qualitative figures and Theorem 1.

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


def predict_samples(run, indices, decoder: str | None = None, device: str | torch.device = "cpu") -> SamplePredictions:
    """Run ``run``'s final model on validation samples ``indices`` (no flip test), decoding in float64.

    Args:
        run: a finished ``hdm.runs.Run``. indices: dataset indices of its validation set.
        decoder: default the run's. device: where the model runs.
    """
    from hdm.engine.data import build_data

    if not run.done:
        raise RuntimeError(f"{run.dir} is not finished: train it first")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise ValueError("indices is empty: choose at least one validation sample")
    cfg = run.config
    decoder = decoder or cfg.decoder
    dataset = build_data(cfg, train=False).val
    arrays, _ = predict(run.load_model(device), dataset, indices, decoder=decoder, device=torch.device(device),
                        batch_size=len(indices), sigma=None, float64=True, keep_images=True)  # fmt: skip
    return SamplePredictions(
        indices=indices, crops=arrays["crops"], heatmaps=arrays["heatmaps"], coords=arrays["coords"],
        image_coords=arrays["image_coords"], joints=arrays["joints"], image_joints=arrays["image_joints"],
        visibility=arrays["visibility"], keypoint_flags=arrays["keypoint_flags"], decoder=decoder,
        joint_names=tuple(dataset.joint_set.names), stride=cfg.input_hw[1] / cfg.heatmap_hw[1],
    )  # fmt: skip
