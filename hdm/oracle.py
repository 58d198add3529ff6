"""Oracle evaluation: the whole evaluation path with ground-truth heatmaps in place of a model's output.

Every labelled person of a validation dataset (ground-truth boxes) gets the heatmaps a perfect model of one
kind would output, built from the sample's own joints; they are decoded and mapped back to the original
image by ``hdm.engine.prediction.decode_to_image`` (the path every model prediction takes) and scored by
pycocotools (``hdm.metrics``), exactly as a model's heatmaps would be. Two uses:

* it proves the pipeline end to end: an exact oracle (``subpixel_gaussian`` + ``local_com`` with a wide
  window) must reach AP = 1;
* it measures the AP each decoder loses to heatmap quantisation alone, at a given heatmap resolution.

Legend: N persons, B a batch of them, K joints, H x W heatmap px. ``joints: (B, K, 2)`` heatmap px, (x, y),
pixel centres on integers; ``visibility: (B, K)``, non-zero where the joint counts (``hdm.targets``).

Oracle kinds (``KINDS``):

- ``gaussian``: HRNet's target (``hdm.targets.gaussian_heatmaps``), peak 1 at the *rounded* pixel, 3σ window.
- ``dot``: 1 at the rounded pixel (``hdm.targets.dot_heatmaps``), the dot-annotated target.
- ``subpixel_gaussian``: an untruncated Gaussian centred at the exact sub-pixel joint, peak <= 1; an upper
  bound on what a perfect smooth predictor could give.
- ``subpixel_dot``: the joint's unit mass split bilinearly over its 4 surrounding pixels (the demanders of
  eq. (2), ``hdm.targets.demanders``); the heatmap the HDM loss is minimised by.

What each decoder can recover (per axis, ``f = x - round(x)`` in [-0.5, 0.5), heatmap px):
``gaussian`` and ``dot`` hold only the rounded pixel; both decoders return it (the quarter shift does not fire:
the two neighbours tie), error ``|f| <= 0.5`` per axis, ``<= sqrt(2)/2`` in all; for uniform ``f`` the mean
Euclidean error is ``(sqrt(2) + ln(1 + sqrt(2))) / 6 = 0.383``. ``argmax_shift`` on a sub-pixel map returns the
rounded pixel moved 0.25 toward the joint (away from the border), error ``<= 0.25`` per axis, mean ``0.191``.
``local_com`` on ``subpixel_dot`` is exact; on ``subpixel_gaussian`` it is exact up to the Gaussian's mass
outside its window (use a window of about 6σ + 1) and where the heatmap border cuts the Gaussian.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from hdm.data.errors import EmptyDatasetError
from hdm.data.transforms import check_header_size
from hdm.decode import DECODERS
from hdm.engine.prediction import decode_to_image
from hdm.metrics import coco_keypoint_eval, make_coco_results
from hdm.paths import REPO_ROOT, TABLES
from hdm import targets
from hdm.targets import demanders, dot_heatmaps, gaussian_heatmaps, target_weight

__all__ = [
    "KINDS",
    "METRICS",
    "OraclePredictions",
    "oracle_evaluate",
    "oracle_heatmaps",
    "oracle_predictions",
    "oracle_table",
    "run_oracle",
    "subpixel_dot_heatmaps",
    "subpixel_gaussian_heatmaps",
    "write_oracle_table",
]

KINDS = ("gaussian", "dot", "subpixel_gaussian", "subpixel_dot")
#: COCO metrics that ``oracle_evaluate`` returns (fractions) and ``oracle_table`` reports (in %).
METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
#: local_com window that makes the sub-pixel Gaussian oracle exact at σ = 2 (radius 6 = 3σ).
WIDE_WINDOW = 13

# Where ``run_oracle`` reads its data and at which sizes, (H, W) px of the input and the heatmap: the real COCO
# sample shipped with the tests at HRNet's COCO sizes, and the synthetic validation split at the default-scale
# model's sizes.
COCO_SAMPLE = REPO_ROOT / "tests" / "data" / "coco"
COCO_SIZES = ((256, 192), (64, 48))
SYNTHETIC_SIZES = ((128, 96), (32, 24))


# ---------------------------------------------------------------------------------------------------------
# Oracle heatmaps


def subpixel_gaussian_heatmaps(
    joints: torch.Tensor, visibility: torch.Tensor, heatmap_hw: tuple[int, int], sigma: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Untruncated Gaussians at the exact sub-pixel joints: :func:`hdm.targets.subpixel_gaussian_heatmaps` with
    ``truncate=False``. Shapes: joints (B, K, 2) heatmap px, visibility (B, K), heatmap_hw (H, W)."""
    return targets.subpixel_gaussian_heatmaps(joints, visibility, heatmap_hw, sigma, truncate=False)


def subpixel_dot_heatmaps(
    joints: torch.Tensor, visibility: torch.Tensor, heatmap_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The joint's unit mass on its 4 surrounding pixels with bilinear weights (``hdm.targets.demanders``).

    The map's centre of mass is the joint exactly (for joints inside the pixel-centre box); all zero for
    joints that do not count.

    Args:
        joints: (B, K, 2) heatmap px. visibility: (B, K). heatmap_hw: (H, W).
    Returns:
        heatmaps (B, K, H, W) and target_weight (B, K), in the dtype of ``joints``.
    """
    weight = target_weight(joints, visibility, heatmap_hw)
    height, width = heatmap_hw
    positions, masses = demanders(joints, heatmap_hw, mode="subpixel")  # (B, K, 4, 2), (B, K, 4)
    batch, count = joints.shape[:2]
    flat = torch.zeros(batch, count, height * width, dtype=joints.dtype, device=joints.device)
    flat.scatter_add_(-1, positions[..., 1] * width + positions[..., 0], masses * weight[..., None])
    return flat.view(batch, count, height, width), weight


def oracle_heatmaps(
    joints: torch.Tensor,
    visibility: torch.Tensor,
    heatmap_hw: tuple[int, int],
    kind: str = "gaussian",
    sigma: float = 2.0,
) -> torch.Tensor:
    """Ground-truth heatmaps of one ``kind`` (see ``KINDS`` and the module docstring).

    Joints that do not count (unlabelled, or rounded pixel outside the map) get all-zero maps.

    Args:
        joints: (B, K, 2) heatmap px, finite. visibility: (B, K). heatmap_hw: (H, W), as ``hdm.targets``.
        kind: one of ``KINDS``. sigma: heatmap px, the Gaussian kinds' width (the dot kinds have none).
    Returns:
        (B, K, H, W) in the dtype and on the device of ``joints``.
    """
    if kind == "gaussian":
        return gaussian_heatmaps(joints, visibility, heatmap_hw, sigma)[0]
    if kind == "dot":
        return dot_heatmaps(joints, visibility, heatmap_hw)[0]
    if kind == "subpixel_gaussian":
        return subpixel_gaussian_heatmaps(joints, visibility, heatmap_hw, sigma)[0]
    if kind == "subpixel_dot":
        return subpixel_dot_heatmaps(joints, visibility, heatmap_hw)[0]
    raise ValueError(f"unknown oracle kind {kind!r}; expected one of {KINDS}")


# ---------------------------------------------------------------------------------------------------------
# Oracle predictions on a dataset


class OraclePredictions(NamedTuple):
    """The oracle's output for the N persons it predicts, with what is needed to score it (numpy, float64).

    coords: (N, K, 2) decoded, heatmap px. image_coords: (N, K, 2) decoded, original-image px.
    maxvals: (N, K) heatmap peaks. joints: (N, K, 2) the sample's joints, heatmap px.
    image_joints: (N, K, 2) the annotation, image px. visibility: (N, K) bool, the joints that count.
    labelled: (N, K) bool, the annotated joints (some may fall outside the heatmap).
    center, scale: (N, 2) the crop boxes, image px and units of 200 px. image_ids: (N,) int64.
    areas: (N,) person areas, image px². heatmap_hw: (H, W) of the maps.
    """

    coords: np.ndarray
    image_coords: np.ndarray
    maxvals: np.ndarray
    joints: np.ndarray
    image_joints: np.ndarray
    visibility: np.ndarray
    labelled: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    image_ids: np.ndarray
    areas: np.ndarray
    heatmap_hw: tuple[int, int]


def _geometry(dataset, predict_unlabelled: bool) -> dict[str, torch.Tensor]:
    """The stacked ``sample_geometry`` of every person the oracle predicts (float64 for float entries)."""
    if getattr(dataset, "train", False):
        raise ValueError("the oracle needs a validation dataset (train=False): training crops are augmented")
    samples = [dataset.sample_geometry(i) for i in range(len(dataset))]
    checked = set()
    for record in getattr(dataset, "records", ()):  # the json's image sizes place the crops: check them once
        if record.image_path not in checked:
            checked.add(record.image_path)
            check_header_size(record)
    if any(int(s["annotation_id"]) < 0 for s in samples):
        raise ValueError("the oracle needs ground-truth boxes (boxes='gt'): detector boxes carry no joints")
    if not predict_unlabelled:
        samples = [s for s in samples if bool((s["visibility"] > 0).any())]
    if not samples:
        raise EmptyDatasetError(
            f"none of the {len(dataset)} persons has a joint inside the heatmap: the oracle has nothing to "
            "predict; use a dataset with labelled keypoints"
        )
    keys = ("joints", "visibility", "keypoint_flags", "image_joints", "center", "scale", "image_id", "area")
    out = {k: torch.stack([s[k] for s in samples]) for k in keys}
    return {k: v.double() if v.is_floating_point() else v for k, v in out.items()}


def oracle_predictions(
    dataset,
    kind: str = "gaussian",
    decoder: str = "argmax_shift",
    sigma: float = 2.0,
    window: int | None = None,
    batch_size: int = 256,
    predict_unlabelled: bool = False,
) -> OraclePredictions:
    """Build the oracle heatmaps of every person, decode them and map them back to the image.

    Uses ``dataset.sample_geometry`` (no image is read). Computes in float64 on the CPU.

    Args:
        dataset: a validation ``TopDownDataset`` over ground-truth boxes (e.g. ``CocoTopDown``).
        kind: oracle kind, see ``KINDS``. decoder: a name in ``hdm.decode.DECODERS``.
        sigma: heatmap px, width of the Gaussian kinds.
        window: ``local_com``'s window (odd, heatmap px); None keeps the decoder's default.
        batch_size: persons per batch of heatmaps (memory: batch_size x K x H x W x 8 bytes).
        predict_unlabelled: also predict persons with no joint inside the heatmap (their maps are all zero
            and decode to the map's corner), as a model run on every ground-truth box would. COCOeval ignores
            the ground truth of persons without keypoints, so these poses can only add false positives.
    Returns:
        ``OraclePredictions`` of the persons predicted, in dataset order.
    Raises:
        EmptyDatasetError: no person to predict.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {sorted(DECODERS)}")
    if window is not None and decoder != "local_com":
        raise ValueError(f"window is local_com's parameter; decoder {decoder!r} takes none: pass window=None")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 person, got {batch_size}")
    geo = _geometry(dataset, predict_unlabelled)
    heatmap_hw = tuple(int(v) for v in dataset.heatmap_hw)
    kwargs = {} if window is None else {"window": window}
    parts = []
    for start in range(0, len(geo["joints"]), batch_size):
        part = slice(start, start + batch_size)
        maps = oracle_heatmaps(geo["joints"][part], geo["visibility"][part], heatmap_hw, kind, sigma)
        parts.append(decode_to_image(maps, decoder, geo["center"][part], geo["scale"][part], **kwargs))
    coords, maxvals, image_coords = (torch.cat(column) for column in zip(*parts))
    return OraclePredictions(
        coords=coords.numpy(),
        image_coords=image_coords.numpy(),
        maxvals=maxvals.numpy(),
        joints=geo["joints"].numpy(),
        image_joints=geo["image_joints"].numpy(),
        visibility=(geo["visibility"] > 0).numpy(),
        labelled=(geo["keypoint_flags"] > 0).numpy(),
        center=geo["center"].numpy(),
        scale=geo["scale"].numpy(),
        image_ids=geo["image_id"].numpy(),
        areas=geo["area"].numpy(),
        heatmap_hw=heatmap_hw,
    )


def target_kind(spec: str) -> str:
    """The oracle kind of a method's training target: "gaussian" and "dot" for the MSE methods, "subpixel_dot" (the
    four sub-pixel demanders, a bilinear splat) for every distribution-matching variant ``hdm...``."""
    method = spec.split("+")[0]
    return method if method in ("gaussian", "dot") else "subpixel_dot"


def oracle_errors(dataset, kind: str = "gaussian", decoder: str = "argmax_shift", sigma: float = 2.0) -> dict[str, float]:
    """The floor a perfect model of target ``kind`` reaches with ``decoder``: the heatmap-px error of the decoded
    oracle heatmaps over every joint that counts in the heatmap, ``mean``, ``median`` and ``p90``."""
    pred = oracle_predictions(dataset, kind, decoder, sigma)
    errors = np.linalg.norm(pred.coords - pred.joints, axis=-1)[pred.visibility]
    return {"mean": float(errors.mean()), "median": float(np.median(errors)), "p90": float(np.quantile(errors, 0.9))}


def oracle_evaluate(
    dataset,
    kind: str = "gaussian",
    decoder: str = "argmax_shift",
    sigma: float = 2.0,
    window: int | None = None,
    batch_size: int = 256,
    predict_unlabelled: bool = False,
) -> dict[str, float]:
    """COCO metrics and localisation error of the oracle (arguments as ``oracle_predictions``).

    Scores every pose 1 (no rescoring: the oracle has no confidence) and runs no OKS-NMS (ground-truth boxes
    hold one person each), then ``COCOeval`` over every image of ``dataset.coco``.

    Returns:
        ``AP, AP50, AP75, APM, APL, AR`` (fractions in [0, 1]; NaN for an empty area range);
        ``error_image_px`` / ``error_heatmap_px``: mean Euclidean error over the joints that count;
        ``max_error_heatmap_px``; ``persons`` predicted; ``joints`` that count; ``joints_outside``: labelled
        joints outside the heatmap, which no oracle can place (they lower the ceiling below 1).
    """
    pred = oracle_predictions(dataset, kind, decoder, sigma, window, batch_size, predict_unlabelled)
    results = make_coco_results(
        pred.image_coords,
        pred.maxvals,
        pred.image_ids,
        np.ones(len(pred.image_ids)),
        pred.areas,
        use_nms=False,
        rescoring=False,
        category_id=getattr(dataset, "category_id", 1),
    )
    metrics = coco_keypoint_eval(dataset.coco, results, sigmas=dataset.joint_set.sigmas)
    vis = pred.visibility
    err_img = np.linalg.norm(pred.image_coords - pred.image_joints, axis=-1)[vis]
    err_hm = np.linalg.norm(pred.coords - pred.joints, axis=-1)[vis]
    return {
        **{name: metrics[name] for name in METRICS},
        "error_image_px": float(err_img.mean()) if err_img.size else float("nan"),
        "error_heatmap_px": float(err_hm.mean()) if err_hm.size else float("nan"),
        "max_error_heatmap_px": float(err_hm.max()) if err_hm.size else float("nan"),
        "persons": int(len(pred.image_ids)),
        "joints": int(vis.sum()),
        "joints_outside": int((pred.labelled & ~vis).sum()),
    }


# ---------------------------------------------------------------------------------------------------------
# The table


def _decoder_setting(spec) -> tuple[str, int | None]:
    """(decoder name, local_com window or None) from a name or a ``("local_com", window)`` pair."""
    if isinstance(spec, str):
        return spec, None
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] == "local_com":
        return "local_com", int(spec[1])
    raise ValueError(f"a decoder is a name in {sorted(DECODERS)} or a ('local_com', window) pair, got {spec!r}")


def oracle_table(
    datasets: dict[str, object],
    kinds: Sequence[str] = ("gaussian", "dot", "subpixel_gaussian"),
    decoders: Sequence[str | tuple[str, int]] = ("argmax_shift", "local_com"),
    sigma: float = 2.0,
) -> pd.DataFrame:
    """``oracle_evaluate`` for every dataset x kind x decoder, in that order.

    Args:
        datasets: name -> validation dataset over ground-truth boxes. kinds: oracle kinds (``KINDS``).
        decoders: names in ``hdm.decode.DECODERS``, or ``("local_com", window)`` for a window other than
            the decoder's default. sigma: heatmap px, the Gaussian kinds' width.
    Returns:
        One row per combination: ``dataset``, ``heatmap`` ("WxH"), ``kind``, ``decoder``, ``window``
        (local_com's window, heatmap px; NaN for other decoders), the ``METRICS`` in %,
        ``error_image_px``, ``error_heatmap_px``, ``max_error_heatmap_px``, ``persons``, ``joints``.
    """
    if not datasets:
        raise ValueError("datasets is empty: pass at least one {name: dataset}")
    settings = [_decoder_setting(spec) for spec in decoders]
    default_window = inspect.signature(DECODERS["local_com"]).parameters["window"].default
    rows = []
    for name, dataset in datasets.items():
        height, width = dataset.heatmap_hw
        for kind in kinds:
            for decoder, window in settings:
                result = oracle_evaluate(dataset, kind, decoder, sigma, window)
                used = (window or default_window) if decoder == "local_com" else float("nan")
                row = {"dataset": name, "heatmap": f"{width}x{height}", "kind": kind, "decoder": decoder}
                row["window"] = used
                row.update({m: 100.0 * result[m] for m in METRICS})
                for key in ("error_image_px", "error_heatmap_px", "max_error_heatmap_px", "persons", "joints"):
                    row[key] = result[key]
                rows.append(row)
    return pd.DataFrame(rows)


def _markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table: metrics with 1 decimal, errors with 3."""

    def cell(column: str, value) -> str:
        if isinstance(value, (float, np.floating)):
            if np.isnan(value):
                return ""
            return f"{value:.1f}" if column in METRICS else f"{value:.0f}" if column == "window" else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(cell(c, row[c]) for c in df.columns) + " |")
    return "\n".join(lines) + "\n"


def write_oracle_table(
    df: pd.DataFrame, stem: str = "oracle", folder: Path | None = None, caption: str = ""
) -> tuple[Path, Path]:
    """Write ``df`` as ``<folder>/<stem>.csv`` (full precision) and ``<stem>.md`` (rounded, ``caption`` above).

    folder: default ``hdm.paths.TABLES``. Returns (csv path, md path).
    """
    folder = Path(folder) if folder is not None else TABLES
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / f"{stem}.csv", folder / f"{stem}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text((caption.strip() + "\n\n" if caption.strip() else "") + _markdown(df))
    return csv_path, md_path


CAPTION = """\
Oracle evaluation (`hdm.oracle.run_oracle`): ground-truth heatmaps of each kind in place of a model's output,
decoded, mapped back to the image and scored by pycocotools (ground-truth boxes, score 1, no NMS).
AP columns in %; errors are Euclidean distances over the joints that count (mean in original-image px and in
heatmap px, max in heatmap px); window = local_com's window (heatmap px); sigma = 2 heatmap px for the
Gaussian kinds; persons = poses predicted (persons with a joint inside the heatmap)."""


def run_oracle(scale: str = "default", write: bool = True) -> pd.DataFrame:
    """The oracle table: the real COCO sample (``tests/data/coco``) and the synthetic validation split of preset
    ``scale``, each at 48x64 heatmaps (192x256 input, HRNet's COCO size) and 24x32 (96x128 input, the
    default-scale model's size); every kind of ``KINDS``; decoders ``argmax_shift``, ``local_com`` with its
    default window and with ``WIDE_WINDOW``; σ = 2 heatmap px.

    Args:
        scale: synthetic preset, "smoke" or "default" (``hdm.data.synthetic.PRESETS``; generated if missing).
        write: write ``results/tables/oracle.{csv,md}``.
    Returns:
        The table of ``oracle_table``.
    """
    from hdm.data.coco import CocoTopDown
    from hdm.data.synthetic import PRESETS, synthetic_split

    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(PRESETS)}")
    sources = {
        "coco_sample": (COCO_SAMPLE / "test_coco.json", COCO_SAMPLE),
        f"synthetic_{scale}_val": synthetic_split(scale, "val"),
    }
    decoders = ("argmax_shift", "local_com", ("local_com", WIDE_WINDOW))
    tables = [
        oracle_table({name: CocoTopDown(ann_file, image_dir, *sizes)}, KINDS, decoders)
        for name, (ann_file, image_dir) in sources.items()
        for sizes in (COCO_SIZES, SYNTHETIC_SIZES)
    ]
    df = pd.concat(tables, ignore_index=True)
    if write:
        write_oracle_table(df, "oracle", caption=CAPTION)
    return df


def main() -> None:
    """``python -m hdm.oracle``: build, write and print the oracle table for the default scale."""
    df = run_oracle("default")
    print(_markdown(df))


if __name__ == "__main__":
    main()
