"""Heatmaps → joint coordinates, and the flip test.

Legend: B images (or person crops), K joints, H x W heatmap pixels.
``heatmaps: (B, K, H, W)`` float. Decoders return ``coords: (B, K, 2)`` in heatmap px, (x, y), pixel centres
on integer coordinates, and ``maxvals: (B, K)``, the value of each map at its argmax (its peak).
Mapping heatmap px to image px is the job of ``hdm.geometry``; nothing here knows the method that
produced the heatmaps, so baseline and ours differ only by the decoder name.

Decoders:
- ``argmax_shift``: HRNet's baseline (Sun et al. 2019, ``get_final_preds``): argmax, then a quarter-pixel
  shift toward the higher neighbour.
- ``local_com``: our method's decoder: centre of mass of the relu'd map in a small window around the argmax
  (5 x 5; ``local_com3`` and ``local_com7``: 3 x 3 and 7 x 7).
- ``softplus_com``, ``softmax_com``: centre of mass of the whole map's supplier distribution under softplus or
  softmax (the suppliers a distribution-matching model may be trained with; the relu one is ``local_com``'s).

Device follows the input; coordinates are computed in at least float32 (float64 stays float64).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch

__all__ = [
    "DECODERS",
    "decode",
    "decode_argmax_shift",
    "decode_local_com",
    "decode_supplier_com",
    "flip_back",
    "flip_test_average",
    "shift_right",
]


def _check_heatmaps(heatmaps: torch.Tensor) -> None:
    if not isinstance(heatmaps, torch.Tensor):
        raise TypeError(f"heatmaps must be a torch.Tensor of shape (B, K, H, W), got {type(heatmaps).__name__}")
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must have shape (B, K, H, W), got ndim={heatmaps.ndim} shape {tuple(heatmaps.shape)}")
    if not heatmaps.is_floating_point():
        raise TypeError(f"heatmaps must be a floating tensor, got dtype {heatmaps.dtype}; convert with .float()")
    if heatmaps.shape[-1] == 0 or heatmaps.shape[-2] == 0:
        raise ValueError(f"heatmaps must have H, W >= 1, got shape {tuple(heatmaps.shape)}")
    if torch.isnan(heatmaps).any():
        raise ValueError("heatmaps contain NaN; check the model output (a diverged loss or a bad checkpoint)")


def _coord_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32 input, float64 for float64: sub-pixel coordinates need the bits."""
    return torch.promote_types(dtype, torch.float32)


def _argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat argmax index (B, K) int64, its pixel (B, K, 2) int64 (x, y), and the peak value (B, K)."""
    width = heatmaps.shape[-1]
    maxvals, idx = heatmaps.flatten(2).max(dim=-1)
    pixel = torch.stack((idx % width, torch.div(idx, width, rounding_mode="floor")), dim=-1)
    return idx, pixel, maxvals


def decode_argmax_shift(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HRNet's baseline decoder: argmax, then 0.25 px toward the higher neighbour in x and in y.

    For a peak pixel ``(px, py)`` with ``2 <= px <= W-2`` *and* ``2 <= py <= H-2`` (HRNet's condition
    ``1 < px < W-1 and 1 < py < H-1``: besides the border, column 1 and row 1 are left alone too):
    ``x = px + 0.25 * sign(h[py, px+1] - h[py, px-1])`` and ``y = py + 0.25 * sign(h[py+1, px] - h[py-1, px])``
    (no shift on a tie). Elsewhere the argmax pixel is returned unshifted.

    Unlike HRNet's ``get_max_preds`` we do not zero the coordinates of maps whose peak is <= 0: the
    argmax is returned for every map, as ``decode_local_com`` does, so both decoders see the same joints.

    Args:
        heatmaps: (B, K, H, W) float, no NaN.
    Returns:
        coords: (B, K, 2) heatmap px, (x, y), float32 (float64 for float64 input).
        maxvals: (B, K) peak values, dtype of ``heatmaps``.
    """
    _check_heatmaps(heatmaps)
    height, width = heatmaps.shape[-2:]
    idx, pixel, maxvals = _argmax(heatmaps)
    px, py = pixel.unbind(-1)
    interior = (px > 1) & (px < width - 1) & (py > 1) & (py < height - 1)

    flat = heatmaps.flatten(2)
    last = flat.shape[-1] - 1

    def at(offset: int) -> torch.Tensor:
        # Clamping only matters where `interior` is False, and those entries are discarded below.
        return flat.gather(-1, (idx + offset).clamp(0, last).unsqueeze(-1)).squeeze(-1)

    diff = torch.stack((at(1) - at(-1), at(width) - at(-width)), dim=-1)
    shift = 0.25 * torch.sign(diff).to(_coord_dtype(heatmaps.dtype)) * interior.unsqueeze(-1)
    coords = pixel.to(_coord_dtype(heatmaps.dtype)) + shift
    return coords, maxvals


def decode_local_com(heatmaps: torch.Tensor, window: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Our decoder: centre of mass of ``relu(h)`` in a ``window x window`` square around the argmax.

    ``x = Σ_{(i,j)∈Ω} relu(h[j, i]) · i / Σ_{(i,j)∈Ω} relu(h[j, i])`` (and ``y`` with ``j``), where Ω is the
    window centred on the argmax pixel, clipped to the map at its borders (no padding, no reflection).
    If the window holds no positive mass (a map <= 0 everywhere near its peak) the argmax pixel is returned.
    The centre of mass is exact for any map that is mirror-symmetric about a sub-pixel point inside the
    window and zero outside it, e.g. the bilinear 4-pixel splat of a dot annotation.

    Args:
        heatmaps: (B, K, H, W) float, no NaN.
        window: odd int >= 1, side of the square window in heatmap px.
    Returns:
        coords: (B, K, 2) heatmap px, (x, y), float32 (float64 for float64 input).
        maxvals: (B, K) the peak value of ``heatmaps`` (before relu), dtype of ``heatmaps``.
    """
    _check_heatmaps(heatmaps)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd int >= 1 (side in heatmap px), got {window!r}")
    height, width = heatmaps.shape[-2:]
    _, pixel, maxvals = _argmax(heatmaps)
    dtype = _coord_dtype(heatmaps.dtype)

    radius = window // 2
    offsets = torch.arange(-radius, radius + 1, device=heatmaps.device)
    xs = pixel[..., 0, None] + offsets  # (B, K, window)
    ys = pixel[..., 1, None] + offsets
    x_in = (xs >= 0) & (xs < width)
    y_in = (ys >= 0) & (ys < height)
    flat_idx = ys.clamp(0, height - 1)[..., :, None] * width + xs.clamp(0, width - 1)[..., None, :]
    values = heatmaps.flatten(2).gather(-1, flat_idx.flatten(2)).view(flat_idx.shape).to(dtype)
    mass = values.clamp_min(0) * (y_in[..., :, None] & x_in[..., None, :])  # (B, K, window_y, window_x)

    total = mass.sum(dim=(-2, -1))
    mx = (mass.sum(dim=-2) * xs.to(dtype)).sum(dim=-1)
    my = (mass.sum(dim=-1) * ys.to(dtype)).sum(dim=-1)
    has_mass = total > 0
    safe_total = torch.where(has_mass, total, torch.ones_like(total))
    com = torch.stack((mx / safe_total, my / safe_total), dim=-1)
    coords = torch.where(has_mass.unsqueeze(-1), com, pixel.to(dtype))
    return coords, maxvals


def decode_supplier_com(heatmaps: torch.Tensor, supplier: str = "softmax") -> tuple[torch.Tensor, torch.Tensor]:
    """Centre of mass of the whole map's supplier distribution: ``x = Σ p[j, i] · i`` (and ``y`` with ``j``), with
    ``p = softmax(h)`` or ``p = softplus(h) / Σ softplus(h)`` over the H x W map: the expected position under the
    distribution a model trained with those suppliers matched to its joint. Where softplus underflows to no mass
    (every pixel below about -100 in float32) the argmax pixel is returned.

    Args:
        heatmaps: (B, K, H, W) float, no NaN. supplier: "softmax" or "softplus".
    Returns:
        coords: (B, K, 2) heatmap px, (x, y), float32 (float64 for float64 input).
        maxvals: (B, K) the peak value of ``heatmaps``, dtype of ``heatmaps``.
    """
    _check_heatmaps(heatmaps)
    if supplier not in ("softmax", "softplus"):
        raise ValueError(f"supplier must be 'softmax' or 'softplus', got {supplier!r}")
    height, width = heatmaps.shape[-2:]
    _, pixel, maxvals = _argmax(heatmaps)
    dtype = _coord_dtype(heatmaps.dtype)
    flat = heatmaps.flatten(2).to(dtype)
    mass = torch.softmax(flat, dim=-1) if supplier == "softmax" else torch.nn.functional.softplus(flat)
    mass = mass.view(heatmaps.shape)
    total = mass.sum(dim=(-2, -1))
    xs = torch.arange(width, device=heatmaps.device, dtype=dtype)
    ys = torch.arange(height, device=heatmaps.device, dtype=dtype)
    has_mass = total > 0
    safe_total = torch.where(has_mass, total, torch.ones_like(total))
    com = torch.stack(((mass.sum(-2) * xs).sum(-1) / safe_total, (mass.sum(-1) * ys).sum(-1) / safe_total), dim=-1)
    return torch.where(has_mass.unsqueeze(-1), com, pixel.to(dtype)), maxvals


DECODERS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "argmax_shift": decode_argmax_shift,
    "local_com": decode_local_com,
    "local_com3": functools.partial(decode_local_com, window=3),
    "local_com7": functools.partial(decode_local_com, window=7),
    "softplus_com": functools.partial(decode_supplier_com, supplier="softplus"),
    "softmax_com": functools.partial(decode_supplier_com, supplier="softmax"),
}


def decode(heatmaps: torch.Tensor, method: str, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode with the decoder registered under ``method`` in ``DECODERS``; ``kwargs`` go to that decoder.

    Returns ``coords (B, K, 2)`` heatmap px (x, y) and ``maxvals (B, K)``.
    """
    if method not in DECODERS:
        raise ValueError(f"unknown decoder {method!r}; expected one of {sorted(DECODERS)}")
    return DECODERS[method](heatmaps, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Flip test


def _flip_permutation(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> list[int]:
    perm = list(range(num_joints))
    seen: set[int] = set()
    for pair in flip_pairs:
        if len(pair) != 2:
            raise ValueError(f"flip_pairs must hold (left, right) joint index pairs, got {pair!r}")
        a, b = int(pair[0]), int(pair[1])
        for j in (a, b):
            if not 0 <= j < num_joints:
                raise ValueError(f"flip pair {pair!r} has index {j} outside [0, {num_joints}) joints")
            if j in seen:
                raise ValueError(f"joint {j} appears in more than one flip pair: {list(flip_pairs)!r}")
            seen.add(j)
        if a == b:
            raise ValueError(f"flip pair {pair!r} pairs a joint with itself; leave unpaired joints out")
        perm[a], perm[b] = b, a
    return perm


def flip_back(heatmaps: torch.Tensor, flip_pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Undo a horizontal flip of the input: mirror along W and swap the left/right joint channels.

    Column ``i`` goes to column ``W-1-i`` (a mirror about the map's centre ``(W-1)/2``, pixel centres on
    integers); channels ``a`` and ``b`` swap for every pair ``(a, b)`` in ``flip_pairs``. An involution:
    applying it twice gives the input back.

    Args:
        heatmaps: (B, K, H, W) the model's output for the flipped input.
        flip_pairs: (left, right) joint index pairs, each index at most once, e.g. COCO ((1, 2), (3, 4), ...).
    Returns:
        (B, K, H, W), same dtype and device.
    """
    _check_heatmaps(heatmaps)
    perm = _flip_permutation(heatmaps.shape[1], flip_pairs)
    return heatmaps.flip(-1)[:, perm]


def shift_right(heatmaps: torch.Tensor, shift_px: float) -> torch.Tensor:
    """Translate every map by ``shift_px`` heatmap px along +x, replicating the edge column.

    ``out[..., j] = (1-f) · h[..., clip(j-i)] + f · h[..., clip(j-i-1)]`` with ``shift_px = i + f``,
    ``0 <= f < 1`` (linear interpolation; exact copy for integer shifts). Away from the edges this moves
    every map's centre of mass by exactly ``shift_px``. ``shift_px = 1`` is HRNet's
    ``out[..., 1:] = h[..., :-1]`` (column 0 keeps its value); negative shifts move left.

    Args:
        heatmaps: (B, K, H, W). shift_px: heatmap px, any real.
    Returns:
        (B, K, H, W), same dtype and device.
    """
    if shift_px == 0:
        return heatmaps
    width = heatmaps.shape[-1]
    whole = math.floor(shift_px)
    frac = float(shift_px) - whole
    src = torch.arange(width, device=heatmaps.device) - whole
    out = heatmaps[..., src.clamp(0, width - 1)]
    if frac > 0:
        out = (1 - frac) * out + frac * heatmaps[..., (src - 1).clamp(0, width - 1)]
    return out


def flip_test_average(
    heatmaps: torch.Tensor,
    heatmaps_flipped: torch.Tensor,
    flip_pairs: Sequence[Sequence[int]],
    shift_px: float = 1.0,
) -> torch.Tensor:
    """Flip test: ``(h + shift_right(flip_back(h_flipped), shift_px)) / 2``.

    Why a shift: with HRNet's crop geometry a crop pixel ``x`` maps to heatmap ``x / s`` (stride ``s``,
    no half-pixel offset), so the flipped-back map of a joint at heatmap ``u`` peaks at ``u - 1 + 1/s``
    (``u - 0.75`` for ``s = 4``). HRNet compensates with a whole-pixel shift, ``shift_px = 1`` (the default,
    to reproduce its numbers); ``1 - 1/s`` is the exact shift for that geometry. With an exact
    pixel-centre geometry (crop px ``s·u + (s-1)/2``) mirroring is already exact: pass ``shift_px = 0``.
    Use the shift that matches the geometry that produced the crops.

    Args:
        heatmaps: (B, K, H, W) the model's output for the original crops.
        heatmaps_flipped: (B, K, H, W) its output for the horizontally flipped crops (not flipped back).
        flip_pairs: (left, right) joint index pairs.
        shift_px: heatmap px added along +x to the flipped-back maps before averaging.
    Returns:
        (B, K, H, W) averaged heatmaps.
    """
    _check_heatmaps(heatmaps)
    if heatmaps_flipped.shape != heatmaps.shape:
        raise ValueError(
            f"heatmaps_flipped must have the shape of heatmaps {tuple(heatmaps.shape)}, got {tuple(heatmaps_flipped.shape)}"
        )
    back = shift_right(flip_back(heatmaps_flipped, flip_pairs), shift_px)
    return 0.5 * (heatmaps + back)
