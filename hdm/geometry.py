"""Top-down crop geometry: person boxes as (center, scale), the affine map from an image to a crop, and its
exact inverse.

Legend: N persons, K joints. ``center: (N, 2)`` image px, ``scale: (N, 2)`` box width and height in units
of ``PIXEL_STD`` = 200 px (HRNet's convention), ``rotation: (N,)`` degrees, ``output_hw = (H, W)`` px (torch's order).

Pixel convention (all three frames)
-----------------------------------
Image, input-crop and heatmap coordinates are (x, y) with pixel centres on integers: pixel ``(i, j)`` covers
``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``. This is the convention of ``cv2.warpAffine``, so an image feature
at point ``p`` appears in the warped crop at ``A @ p`` exactly (up to interpolation), for any affine ``A``.

* image -> crop of ``output_hw = (h, w)``: ``q = D R(-r) (p - center) + (w/2, h/2)`` with
  ``D = diag(w / (200 scale_x), h / (200 scale_y))`` and ``R(a) = [[cos a, -sin a], [sin a, cos a]]``.
  The box centre lands on ``(w/2, h/2)`` and the content turns ``r`` degrees counter-clockwise on screen,
  as in HRNet (``get_affine_transform``) and ``cv2.getRotationMatrix2D``. HRNet scales both axes by
  ``w / (200 scale_x)``; ``D`` equals that whenever ``scale`` has the crop's aspect ratio, which every box
  made here has (``box_to_center_scale``, the datasets).
* input crop -> heatmap: ``x_heatmap = x_input / stride`` (stride = input w / heatmap w = 4), HRNet's
  convention (its Gaussian target is centred at ``int(x_input / 4 + 0.5)``). Hence image -> heatmap is the
  same crop map with ``output_hw = heatmap_hw``, and ``heatmap_to_image`` is its exact inverse.
* Consequence for flipping a crop: mirroring the input (``x -> w_in - 1 - x``) maps heatmap ``x`` to
  ``(w_in - 1) / stride - x = w_hm - 1/stride - x``, not ``w_hm - 1 - x`` (see ``heatmap_hflip``); HRNet's
  flip test approximates the 0.75 px difference with a 1 px shift.
"""

from __future__ import annotations

import math

import numpy as np
import torch

PIXEL_STD = 200.0  # px per unit of scale
BOX_PADDING = 1.25  # box enlargement before cropping


def box_to_center_scale(
    box, aspect_ratio: float, padding: float = BOX_PADDING, pixel_std: float = PIXEL_STD
) -> tuple[np.ndarray, np.ndarray]:
    """Person box -> (center, scale) at the model's aspect ratio, enlarged by ``padding`` (HRNet ``_xywh2cs``).

    The shorter side of the box is extended (about its centre) until ``w / h == aspect_ratio``.

    Args:
        box: (..., 4) image px, ``(x, y, w, h)`` with ``(x, y)`` the top-left corner (COCO ``bbox``).
        aspect_ratio: crop width / height, e.g. 192 / 256.
    Returns:
        center (..., 2) image px and scale (..., 2) in units of ``pixel_std`` px, float64.
    """
    box = np.asarray(box, dtype=np.float64)
    if box.shape[-1] != 4:
        raise ValueError(f"box must have shape (..., 4) as (x, y, w, h) image px, got {box.shape}")
    x, y, w, h = np.moveaxis(box, -1, 0)
    center = np.stack([x + 0.5 * w, y + 0.5 * h], axis=-1)
    w_out = np.where(w > aspect_ratio * h, w, h * aspect_ratio)
    h_out = np.where(w > aspect_ratio * h, w / aspect_ratio, h)
    scale = np.stack([w_out, h_out], axis=-1) / pixel_std * padding
    return center, scale


def crop_matrix(center, scale, rotation: float, output_hw, inverse: bool = False, pixel_std: float = PIXEL_STD):
    """The affine map image -> crop (or, with ``inverse``, crop -> image) as a homogeneous (3, 3) matrix.

    Args:
        center: (2,) image px. scale: (2,) units of ``pixel_std``. rotation: degrees. output_hw: (H, W) px.
        inverse: return the exact inverse (built in closed form, not by numerical inversion).
    Returns:
        (3, 3) float64; ``matrix[:2]`` is what ``cv2.warpAffine`` takes.
    """
    center = np.asarray(center, dtype=np.float64).reshape(2)
    scale = np.asarray(scale, dtype=np.float64).reshape(2)
    size = np.asarray(output_hw, dtype=np.float64).reshape(2)[::-1]  # (w, h)
    if np.any(scale <= 0):
        raise ValueError(f"scale must be positive (units of {pixel_std} px), got {scale}")
    zoom = size / (scale * pixel_std)  # D, crop px per image px
    a = math.radians(rotation)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # R(r)
    out = np.eye(3)
    if inverse:  # p = center + R(r) D^-1 (q - size/2)
        lin = rot / zoom[None, :]
        out[:2, :2] = lin
        out[:2, 2] = center - lin @ (size / 2)
    else:  # q = D R(-r) (p - center) + size/2
        lin = zoom[:, None] * rot.T
        out[:2, :2] = lin
        out[:2, 2] = size / 2 - lin @ center
    return out


def hflip_matrix(width: int) -> np.ndarray:
    """(3, 3) float64 horizontal mirror of an image ``width`` px wide: ``x -> width - 1 - x`` (its own inverse)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def apply_affine(points, matrix) -> np.ndarray:
    """Map points through an affine matrix.

    Args:
        points: (..., 2) px, (x, y). matrix: (3, 3) or (2, 3).
    Returns:
        (..., 2) float64 px.
    """
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _xp(x):
    return torch if isinstance(x, torch.Tensor) else np


def _like(value, ref):
    """``value`` as an array of ``ref``'s kind, dtype (floating) and device."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    dtype = ref.dtype if np.issubdtype(ref.dtype, np.floating) else np.float64
    return np.asarray(value, dtype=dtype)


def _crop_terms(coords, center, scale, output_hw, rotation, pixel_std):
    """Broadcast the crop parameters against ``coords`` (..., K, 2): center, zoom D, half size, cos, sin."""
    if isinstance(coords, torch.Tensor):
        xp = torch
        coords = coords if coords.is_floating_point() else coords.float()
    else:
        xp = np
        coords = np.asarray(coords)
        coords = coords if np.issubdtype(coords.dtype, np.floating) else coords.astype(np.float64)
    center = _like(center, coords)[..., None, :]
    scale = _like(scale, coords)[..., None, :]
    if len(output_hw) != 2:
        raise ValueError(f"output_hw must be (H, W), got {output_hw!r}")
    size = _like((output_hw[1], output_hw[0]), coords)  # (w, h)
    if coords.shape[-1] != 2 or center.shape[-1] != 2 or scale.shape[-1] != 2 or tuple(size.shape) != (2,):
        raise ValueError(
            "expected coords (..., K, 2), center (..., 2), scale (..., 2) and output_hw (H, W); got shapes "
            f"{tuple(coords.shape)}, {tuple(center.shape[:-2] + center.shape[-1:])}, "
            f"{tuple(scale.shape[:-2] + scale.shape[-1:])} and {tuple(size.shape)}"
        )
    zoom = size / (scale * pixel_std)
    if rotation is None:
        cos, sin = 1.0, 0.0
    else:
        angle = _like(rotation, coords)[..., None] * (math.pi / 180.0)
        cos, sin = xp.cos(angle), xp.sin(angle)
    return coords, center, zoom, size / 2, cos, sin


def crop_to_image(coords, center, scale, output_hw, rotation=None, pixel_std: float = PIXEL_STD):
    """Crop px -> original-image px: the exact inverse of ``image_to_crop``.

    Args:
        coords: (..., K, 2) crop px (x, y), numpy or torch. center: (..., 2) image px.
        scale: (..., 2) units of ``pixel_std``. output_hw: (H, W) of the crop, px.
        rotation: (...,) degrees, or None for no rotation.
    Returns:
        (..., K, 2) image px, same kind, dtype and device as ``coords`` (float64 for integer numpy input).
    """
    coords, center, zoom, half, cos, sin = _crop_terms(coords, center, scale, output_hw, rotation, pixel_std)
    u = (coords - half) / zoom  # D^-1 (q - size/2)
    x = cos * u[..., 0] - sin * u[..., 1]
    y = sin * u[..., 0] + cos * u[..., 1]
    return _xp(coords).stack([x, y], -1) + center


def image_to_crop(points, center, scale, output_hw, rotation=None, pixel_std: float = PIXEL_STD):
    """Original-image px -> crop px (the map ``cv2.warpAffine`` applies with ``crop_matrix``).

    Args:
        points: (..., K, 2) image px (x, y), numpy or torch. center: (..., 2) image px.
        scale: (..., 2) units of ``pixel_std``. output_hw: (H, W) of the crop, px.
        rotation: (...,) degrees, or None for no rotation.
    Returns:
        (..., K, 2) crop px, same kind, dtype and device as ``points``.
    """
    points, center, zoom, half, cos, sin = _crop_terms(points, center, scale, output_hw, rotation, pixel_std)
    d = points - center
    x = cos * d[..., 0] + sin * d[..., 1]  # R(-r) (p - center)
    y = -sin * d[..., 0] + cos * d[..., 1]
    return _xp(points).stack([x, y], -1) * zoom + half


def heatmap_to_image(coords, center, scale, heatmap_hw, rotation=None, pixel_std: float = PIXEL_STD):
    """Heatmap px -> original-image px; what the decoder calls (HRNet ``transform_preds``).

    Same map as ``crop_to_image`` with ``output_hw = heatmap_hw`` because input px = stride x heatmap px.

    Args:
        coords: (N, K, 2) heatmap px (x, y), numpy or torch. center: (N, 2) image px.
        scale: (N, 2) units of 200 px. heatmap_hw: (H, W). rotation: (N,) degrees or None.
    Returns:
        (N, K, 2) image px, same kind, dtype and device as ``coords``.
    """
    return crop_to_image(coords, center, scale, heatmap_hw, rotation, pixel_std)


def image_to_heatmap(points, center, scale, heatmap_hw, rotation=None, pixel_std: float = PIXEL_STD):
    """Original-image px -> heatmap px; the exact inverse of ``heatmap_to_image`` (same arguments)."""
    return image_to_crop(points, center, scale, heatmap_hw, rotation, pixel_std)


def heatmap_hflip(coords, input_width: int, stride: int):
    """Heatmap x of a point after mirroring the *input crop*: ``((w_in - 1) - stride x) / stride``.

    Args:
        coords: (..., 2) heatmap px (x, y), numpy or torch. input_width: w_in px. stride: input px per heatmap px.
    Returns:
        (..., 2) heatmap px in the mirrored crop, same kind and dtype; y unchanged.
    """
    x = ((input_width - 1) - stride * coords[..., 0]) / stride
    return _xp(coords).stack([x, coords[..., 1] * 1.0], -1)
