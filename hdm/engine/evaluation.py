"""Validation of a model and evaluation of a finished run: every number of a metrics.csv row.

- ``val_mse`` (``HeatmapMSELoss`` to Gaussian targets) and ``val_hdm`` (``HDMLoss``, exact, sub-pixel, relu),
  whatever the method, on the heatmaps that are decoded (flip-averaged when ``flip_test``, as HRNet does);
- COCO-format datasets (synthetic, coco): ``AP AP50 AP75 APM APL AR`` (pycocotools, HRNet's rescoring and
  OKS-NMS; ground-truth boxes, or person detections for coco with ``val_boxes="detections"``);
  MPII: ``PCKh`` (PCKh@0.5 mean) when ``annot/gt_valid.mat`` provides head boxes;
  every dataset: ``PCK`` (``pck_bbox`` at ``pck_threshold`` of the box size: the longer side of the person
  box at the model's aspect ratio, before the 1.25 padding), ``err_px`` (mean joint error, original-image px)
  and ``err_hm`` (mean joint error, heatmap px, joints with target weight 1);
- ``supplier_mass`` (mean Σ relu(h) per counted joint), ``dead_share`` (mean share of pixels within 2 px of
  the joint that are <= 0) and ``val_no_positive_share`` (share of the counted joints' maps without a pixel > 0):
  ``hdm.engine.diagnostics``.

``evaluate(run, split=...)`` scores a finished run's final model on "val" (the split training validated on) or
"test" (the held-out synthetic split, ``hdm.data.sources.eval_sources``), with the same metric names.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hdm import distributed
from hdm.config import Config, check_device
from hdm.decode import DECODERS
from hdm.engine.data import Data, build_data, build_eval_data
from hdm.engine.prediction import DIAGNOSTICS, predict
from hdm.geometry import BOX_PADDING, PIXEL_STD
from hdm.metrics import coco_keypoint_eval, localisation_error, make_coco_results, pck_bbox, pckh
from hdm.data.sources import EVAL_SPLITS, VALIDATION, data_fingerprint, eval_fingerprint, without_paths
from hdm.runs import EVAL_DIR, Run, open_run, read_json

log = logging.getLogger(__name__)

COCO_METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
LOSSES = ("val_mse", "val_hdm")


def resolve_device(requested: str, info: distributed.DistInfo | None = None) -> torch.device:
    """``auto`` -> cuda if available, else cpu; a distributed CUDA run uses ``cuda:LOCAL_RANK``."""
    check_device(requested, "device")  # torch's own error for e.g. "gpu" is a bare RuntimeError
    info = info or distributed.DistInfo()
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available: use device=cpu or auto")
        if info.distributed:
            device = torch.device("cuda", info.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def reduce_device(device: torch.device) -> torch.device:
    """nccl reduces CUDA tensors only; gloo CPU tensors."""
    return device if device.type == "cuda" else torch.device("cpu")


def _predict_all(model, dataset, indices, cfg: Config, device, info, decoder: str, flip_test: bool, progress: bool):
    """``predict`` split over the ranks (sample i on rank i mod W), gathered in dataset order on every rank."""
    shard = np.asarray(indices)[info.rank :: info.world_size]
    arrays, sums = predict(model, dataset, shard, decoder=decoder, device=device, batch_size=cfg.batch_size,
                           flip_test=flip_test, flip_shift_px=cfg.flip_shift_px, sigma=cfg.sigma,
                           num_workers=cfg.num_workers, progress=progress)  # fmt: skip
    if not info.distributed:
        return arrays, sums
    gathered = [a for a in distributed.all_gather_objects(arrays) if len(a.get("index", ()))]
    merged = {k: np.concatenate([a[k] for a in gathered]) for k in gathered[0]}
    order = np.argsort(merged["index"], kind="stable")
    keys = (*LOSSES, "count", *DIAGNOSTICS)
    totals = distributed.all_reduce_sum([sums[k] for k in keys], reduce_device(device))
    return {k: v[order] for k, v in merged.items()}, dict(zip(keys, totals))


def accuracy(arrays: dict[str, np.ndarray], pck_threshold: float = 0.1) -> dict[str, float]:
    """PCK (box-normalised), PCKh (when head sizes exist), err_px and err_hm of ground-truth-box predictions."""
    visible = arrays["keypoint_flags"] > 0
    box_size = arrays["scale"].max(axis=1) * PIXEL_STD / BOX_PADDING
    out = {}
    if "head_size" in arrays:
        out["PCKh"] = float(pckh(arrays["image_coords"], arrays["image_joints"], visible, arrays["head_size"]).loc["Mean", "pckh"])
    out["PCK"] = pck_bbox(arrays["image_coords"], arrays["image_joints"], visible, box_size, pck_threshold).mean
    errors = localisation_error(arrays["image_coords"], arrays["image_joints"], visible)
    out["err_px"] = float(np.nanmean(errors)) if visible.any() else float("nan")
    counted = arrays["visibility"] > 0
    hm_errors = np.linalg.norm(arrays["coords"] - arrays["joints"], axis=-1)[counted]
    out["err_hm"] = float(hm_errors.mean()) if hm_errors.size else float("nan")
    return out


def coco_results(arrays: dict[str, np.ndarray], dataset) -> list[dict]:
    """COCO results with HRNet's rescoring and OKS-NMS (the dataset's OKS sigmas and keypoint category); the NMS
    area is the padded box's (200 scale)^2."""
    areas = np.prod(arrays["scale"].astype(np.float64) * PIXEL_STD, axis=1)
    return make_coco_results(arrays["image_coords"], arrays["maxvals"], arrays["image_id"], arrays["box_score"], areas,
                             sigmas=dataset.sigmas, category_id=dataset.category_id)  # fmt: skip


def validate(model: nn.Module, data: Data, cfg: Config, device: torch.device, info: distributed.DistInfo,
             decoder: str, flip_test: bool, progress: bool = False):  # fmt: skip
    """Every validation number of one model. Returns (metrics, arrays, coco results or None) on rank 0 and
    ``({}, arrays, None)`` elsewhere; metrics: val_mse, val_hdm, the COCO metrics (COCO format), PCKh, PCK,
    err_px, err_hm."""
    arrays, sums = _predict_all(model, data.val, data.val_indices, cfg, device, info, decoder, flip_test, progress)
    det_arrays = None
    if data.detections is not None:
        det_arrays, _ = _predict_all(model, data.detections, data.det_indices, cfg, device, info, decoder,
                                     flip_test, progress)  # fmt: skip
    if not info.main:
        return {}, arrays, None
    count = sums["count"]
    metrics = {name: sums[name] / count if count else float("nan") for name in LOSSES}
    results = None
    if data.coco_format:
        results = coco_results(det_arrays if det_arrays is not None else arrays, data.val)
        scores = coco_keypoint_eval(data.val.coco, results, data.eval_image_ids, sigmas=data.val.sigmas)
        metrics.update({k: scores[k] for k in COCO_METRICS})
    metrics.update(accuracy(arrays, cfg.pck_threshold))
    joints = sums["joint_count"]
    metrics["supplier_mass"] = sums["supplier_mass"] / joints if joints else float("nan")
    metrics["dead_share"] = sums["dead_share"] / joints if joints else float("nan")
    metrics["val_no_positive_share"] = sums["no_positive"] / joints if joints else float("nan")
    return metrics, arrays, results


def eval_key(decoder: str, flip_test: bool, split: str = "val") -> str:
    """The cache key of an evaluation in ``eval/``: ``<decoder>-flip<0|1>`` on "val" (as before the test split
    existed), ``<decoder>-flip<0|1>-<split>`` otherwise (e.g. ``local_com-flip0-test``)."""
    key = f"{decoder}-flip{int(bool(flip_test))}"
    return key if split == "val" else f"{key}-{split}"


def evaluate(run: Run | str | Path, decoder: str | None = None, flip_test: bool | None = None, *,
             split: str = "val", device: str = "auto", progress: bool | None = None,
             refresh: bool = False) -> dict[str, float]:  # fmt: skip
    """Metrics of a finished run's final model on a split, with any decoder and flip test, cached in the run.

    Args:
        run: a ``Run`` or its folder. decoder: a ``hdm.decode.DECODERS`` key (default: the run's).
        flip_test: average with the flipped image (default: the run's setting).
        split: "val" (the split the run validated on, ``max_val_samples`` applies) or "test" (the held-out
            synthetic split: every person with its ground-truth box, at the run's crop and heatmap sizes).
        device: auto | cpu | cuda[:N]. refresh: recompute even when the cache holds the result.
    Returns:
        the metrics of a metrics.csv row (without epoch, lr, train_loss and the training diagnostics; the same
        names on either split). Cached as ``eval/<eval_key(decoder, flip_test, split)>.json`` (with ``decoder``,
        ``flip_test``, ``split`` and ``data``, the split's ``eval_fingerprint``), the per-person predictions beside
        it (``.npz``, keys of predictions.npz; ``evaluation_arrays``) and their sizes and SHA-256 (``.sums``),
        checked before a cached result is served. A cached "test" result is served only for the test files it was
        computed on: other test files (another fingerprint: json size or SHA-256, image names or sizes) are
        evaluated anew, with a warning.
    Raises:
        ValueError: unknown decoder or split, "test" on coco or mpii, unfinished run, or validation data other
            than the run's (its fingerprint).
        DamagedRunError: the run's files, or the cached evaluation's, do not verify (one line naming the file).
        hdm.runs.RunWriteError: eval/ cannot be written (raised before computing anything).
    """
    run = run if isinstance(run, Run) else open_run(run)
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; expected one of {EVAL_SPLITS}")
    if not run.done:
        raise ValueError(f"{run.dir} is not finished (no done marker): train it first with `hdm train`")
    run.verify()
    cfg = run.config
    decoder = decoder or cfg.decoder
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {sorted(DECODERS)}")
    flip_test = cfg.flip_test if flip_test is None else bool(flip_test)
    key = eval_key(decoder, flip_test, split)
    held_out = eval_fingerprint(cfg, split) if split != "val" else None  # coco/mpii fail here; generated if missing
    cached = None if refresh else run.evaluation(key)
    if cached is not None and (held_out is None or _cached_data(run, key) == without_paths(held_out)):
        return cached
    if cached is not None:
        log.warning("%s: computed on other %s files than %s: evaluating anew", run.dir / EVAL_DIR / f"{key}.json",
                    split, ", ".join(entry["path"] for entry in held_out.values()))  # fmt: skip
    run.check_writable()  # before computing: a result that cannot be saved is not computed
    torch_device = resolve_device(device)
    data_files = _check_same_data(run, cfg) if held_out is None else held_out
    data = build_data(cfg, train=False) if split == "val" else build_eval_data(cfg, split)
    model = run.load_model(torch_device)
    show = sys.stderr.isatty() if progress is None else progress
    metrics, arrays, _ = validate(model, data, cfg, torch_device, distributed.DistInfo(), decoder, flip_test, show)
    run.save_evaluation(key, metrics, arrays, decoder=decoder, flip_test=flip_test, split=split, data=data_files)
    return metrics


def evaluation_arrays(run: Run | str | Path, decoder: str | None = None, flip_test: bool | None = None, *,
                      split: str = "val", device: str = "auto", progress: bool | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """The per-person predictions of ``evaluate(run, decoder, flip_test, split=split)`` (computed when not cached),
    read from ``eval/<key>.npz`` once its checksums verify: the keys of predictions.npz
    (``hdm.engine.prediction``), one row per person of the split, in dataset order."""
    run = run if isinstance(run, Run) else open_run(run)
    evaluate(run, decoder, flip_test, split=split, device=device, progress=progress)
    cfg = run.config
    key = eval_key(decoder or cfg.decoder, cfg.flip_test if flip_test is None else flip_test, split)
    run.evaluation(key)  # the checksums of the json and the npz, again: nothing changed them meanwhile
    with np.load(run.dir / EVAL_DIR / f"{key}.npz") as npz:
        return {name: npz[name] for name in npz.files}


def _cached_data(run: Run, key: str) -> dict | None:
    """The data fingerprint (without paths) a verified cached evaluation records, None when it records none."""
    saved = read_json(run.dir / EVAL_DIR / f"{key}.json")
    data = saved.get("data") if isinstance(saved, dict) else None
    return without_paths(data) if isinstance(data, dict) else None


def _check_same_data(run: Run, cfg: Config) -> dict[str, dict]:
    """Raise ``ValueError`` when the validation files under ``HDM_DATA`` are not those ``run`` was trained and
    validated on (its identity's data fingerprint; runs recorded without one are not checked). Returns the
    validation files' fingerprint (``data_fingerprint(cfg, train=False)``)."""
    now = data_fingerprint(cfg, train=False)
    recorded = run.config_dict.get("identity", {}).get("data")
    if not isinstance(recorded, dict):
        return now
    differ = [role for role in VALIDATION if role in now and without_paths(now)[role] != recorded.get(role)]
    if differ:
        where = ", ".join(now[role]["path"] for role in differ)
        raise ValueError(f"{where}: not the data {run.dir} was validated on (size or SHA-256 of {', '.join(differ)}); "
                         "point HDM_DATA at that run's data (its provenance.json names the files)")
    return now
