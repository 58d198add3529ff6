"""Error analyses of a run's predictions: per-joint errors, errors by visibility (Fig. 3), why joints miss, which
joints Fig. 1 and Fig. 3 show, and the exact vs. entropic solver on the same heatmaps (Table 1's solver ablation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from hdm.analysis.stats import check_columns
from hdm.data.keypoints import COCO_FLIP_PAIRS, COCO_JOINTS, MPII_FLIP_PAIRS, MPII_JOINTS
from hdm.loss import HDMLoss
from hdm.targets import target_weight


VISIBILITY = {1: "occluded", 2: "visible"}  # COCO keypoint flags of labelled joints


VISIBLE = 2  # COCO keypoint flag: labelled and visible (1: labelled, occluded; 0: not labelled)


def default_joint_names(num_joints: int) -> tuple[str, ...]:
    """COCO's 17 names (COCO and the synthetic set), MPII's 16, else ``joint<k>``."""
    known = {len(COCO_JOINTS): COCO_JOINTS, len(MPII_JOINTS): MPII_JOINTS}
    return known.get(num_joints, tuple(f"joint{k}" for k in range(num_joints)))


def person_size(predictions: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) person size in original-image px: the longer side of the crop box before padding, 200 * max(scale) / 1.25."""
    return 200.0 * predictions["scale"].max(-1) / 1.25


def joint_errors(predictions: dict[str, np.ndarray], joint_names: list[str] | None = None) -> pd.DataFrame:
    """One row per labelled joint of a run's ``predictions.npz``: its localisation error and visibility.

    Args:
        predictions: arrays ``index, image_coords, image_joints, keypoint_flags, scale`` (N, K, ...) as written
            by the engine. joint_names: K names (default :func:`default_joint_names`).
    Returns:
        columns sample (row in predictions), index (dataset index), joint, name, flag (COCO v: 1 occluded,
        2 visible), visibility ("occluded" / "visible"), error_px (original-image px), error_rel (error / person size, the longer side of the
        crop box before padding: 200 * max(scale) / 1.25).
    """
    flags = predictions["keypoint_flags"]
    num, joints = flags.shape
    names = list(joint_names or default_joint_names(joints))
    if len(names) != joints:
        raise ValueError(f"{len(names)} joint names for {joints} joints")
    errors = np.linalg.norm(predictions["image_coords"] - predictions["image_joints"], axis=-1)
    size = person_size(predictions)
    sample, joint = np.nonzero(flags > 0)
    return pd.DataFrame({
        "sample": sample, "index": predictions["index"][sample], "joint": joint,
        "name": [names[k] for k in joint], "flag": flags[sample, joint],
        "visibility": [VISIBILITY.get(int(f), str(f)) for f in flags[sample, joint]],
        "error_px": errors[sample, joint], "error_rel": errors[sample, joint] / size[sample],
    })


def error_by_visibility(errors: pd.DataFrame, worst_share: float = 0.05, by: str | None = None) -> pd.DataFrame:
    """Errors grouped by visibility flag, and how the worst ``worst_share`` of joints (by ``error_rel``) split.

    Returns one row per flag: joints, share_of_joints, mean/median error_rel and error_px, share_of_worst (the
    fraction of the worst joints that have this flag) and over_representation (share_of_worst / share_of_joints).
    ``by``: a column (e.g. "model") whose groups are analysed separately (worst joints within each group); it is
    kept as a column of the result.
    """
    if errors.empty:
        raise ValueError("no labelled joints to analyse")
    if by is not None:
        return pd.concat([error_by_visibility(group, worst_share).assign(**{by: key})
                          for key, group in errors.groupby(by, sort=False)], ignore_index=True)
    cutoff = errors["error_rel"].quantile(1 - worst_share)
    worst = errors[errors["error_rel"] >= cutoff]
    rows = []
    for flag, group in errors.groupby("flag"):
        share = len(group) / len(errors)
        worst_part = (worst["flag"] == flag).mean()
        rows.append({"flag": int(flag), "visibility": VISIBILITY.get(int(flag), str(flag)),
                     "joints": len(group), "share_of_joints": share,
                     "mean_error_rel": group["error_rel"].mean(), "median_error_rel": group["error_rel"].median(),
                     "mean_error_px": group["error_px"].mean(), "share_of_worst": worst_part,
                     "over_representation": worst_part / share})
    return pd.DataFrame(rows)


def error_summary(errors: pd.DataFrame, by: list[str], value: str = "error_rel",
                  thresholds: tuple[float, ...] = (0.05, 0.1)) -> pd.DataFrame:  # fmt: skip
    """Per group of ``by``: labelled joints, median, mean and 90th percentile of ``value``, and for each threshold t
    the share of joints with ``value <= t`` (with ``error_rel``, a PCK at t over labelled joints, occluded ones too)."""
    check_columns(errors, [*by, value])
    grouped = errors.groupby(by, sort=False)[value]
    table = pd.DataFrame({"joints": grouped.size(), "median": grouped.median(), "mean": grouped.mean(),
                          "p90": grouped.quantile(0.9)})
    for t in thresholds:
        table[f"within_{t:g}"] = grouped.apply(lambda v, t=t: float((v <= t).mean()))
    return table.reset_index()


def stack_joint_errors(predictions: dict, key_names: tuple[str, ...] = ("method", "seed"),
                       joint_names: list[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """:func:`joint_errors` of several runs in one frame, with one column per name in ``key_names`` from the keys
    of ``predictions`` (key -> a run's ``predictions()``)."""
    frames = []
    for key, arrays in predictions.items():
        key = key if isinstance(key, tuple) else (key,)
        frames.append(joint_errors(arrays, joint_names).assign(**dict(zip(key_names, key))))
    if not frames:
        raise ValueError("no runs' predictions")
    return pd.concat(frames, ignore_index=True)


def miss_breakdown(predictions: dict[str, np.ndarray], flip_pairs=None, threshold: float = 0.1) -> dict[str, float]:
    """Why labelled joints miss: of a run's labelled joints, the share whose error exceeds ``threshold`` × the
    person size (:func:`joint_errors`'s ``error_rel``), and the share of those lying nearer their left/right
    twin's true position than their own (an identity error: the model found the wrong side) rather than being
    poorly localised. ``flip_pairs`` default: COCO's twins for 17 joints, MPII's for 16, none otherwise.

    Returns ``{"joints", "missed", "missed_as_twin", "missed_localisation"}`` (counts, then shares of labelled
    joints; the last two add up to ``missed``)."""
    flags, coords, truth = predictions["keypoint_flags"], predictions["image_coords"], predictions["image_joints"]
    num_joints = flags.shape[1]
    if flip_pairs is None:
        flip_pairs = {len(COCO_JOINTS): COCO_FLIP_PAIRS, len(MPII_JOINTS): MPII_FLIP_PAIRS}.get(num_joints, ())
    twin = np.arange(num_joints)
    for i, j in flip_pairs:
        twin[i], twin[j] = j, i
    size = person_size(predictions)[:, None]
    labelled = flags > 0
    own = np.linalg.norm(coords - truth, axis=-1) / size
    other = np.linalg.norm(coords - truth[:, twin], axis=-1) / size
    twin_labelled = labelled[:, twin] & (twin != np.arange(num_joints))
    missed = labelled & (own > threshold)
    as_twin = missed & twin_labelled & (other < own)
    count = max(int(labelled.sum()), 1)
    return {"joints": int(labelled.sum()), "missed": missed.sum() / count, "missed_as_twin": as_twin.sum() / count,
            "missed_localisation": (missed & ~as_twin).sum() / count}


def pick_joints(predictions: dict[str, np.ndarray], n: int, seed: int = 0, flag: int = VISIBLE) -> list[tuple[int, int]]:
    """``n`` distinct (dataset index, joint) pairs drawn uniformly, without replacement, among the joints whose
    keypoint flag is ``flag`` (visible by default) in a run's predictions; the same ``seed`` gives the same picks."""
    sample, joint = np.nonzero(np.asarray(predictions["keypoint_flags"]) == flag)
    if not 0 < n <= len(sample):
        raise ValueError(f"cannot pick {n} joints among the {len(sample)} with flag {flag}")
    chosen = np.random.default_rng(seed).choice(len(sample), n, replace=False)
    return [(int(predictions["index"][sample[c]]), int(joint[c])) for c in chosen]


def worst_joints(errors: pd.DataFrame, n: int, by: str = "error_rel") -> pd.DataFrame:
    """The ``n`` rows of :func:`joint_errors` with the largest ``by`` (error relative to the person size), worst
    first; ties go to the earlier (sample, joint), so the choice is deterministic."""
    check_columns(errors, ["sample", "joint", by])
    if errors.empty or n < 1:
        raise ValueError(f"need n >= 1 and at least one labelled joint, got n={n} and {len(errors)} joints")
    ordered = errors.sort_values([by, "sample", "joint"], ascending=[False, True, True], kind="stable")
    return ordered.head(n).reset_index(drop=True)


def split_picks(picks) -> tuple[list[int], list[tuple[int, int]]]:
    """(dataset index, joint) picks -> the dataset indices to predict (``predict_samples``) and the (row, joint)
    panels of ``plots.qualitative_grid`` over those predictions. ``picks``: pairs, or a frame with ``index`` and
    ``joint`` columns (:func:`worst_joints`)."""
    if isinstance(picks, pd.DataFrame):
        picks = list(zip(picks["index"], picks["joint"]))
    pairs = [(int(index), int(joint)) for index, joint in picks]
    if not pairs:
        raise ValueError("no picks")
    return [index for index, _ in pairs], [(row, joint) for row, (_, joint) in enumerate(pairs)]


def first_indices(predictions: dict[str, np.ndarray], n: int) -> np.ndarray:
    """The dataset indices of a run's first ``n`` validation samples (all of them when there are fewer)."""
    return np.asarray(predictions["index"])[:n]


def solver_agreement(heatmaps: torch.Tensor, joints: torch.Tensor, visibility: torch.Tensor,
                     eps_values: tuple[float, ...] = (0.5, 0.1, 0.05)) -> pd.DataFrame:  # fmt: skip
    """Exact EMD vs. entropic (Sinkhorn) ``HDMLoss`` on the same heatmaps, per regularisation ``eps``.

    Args:
        heatmaps: (N, K, H, W) predicted maps. joints: (N, K, 2) heatmap px. visibility: (N, K). Tensors or
            arrays (e.g. the fields of ``predict_samples``), compared in float64.
        eps_values: Sinkhorn regularisations, heatmap px.
    Returns:
        one row per eps: ``eps``; ``joints`` (the counted joints); ``exact_loss`` and ``sinkhorn_loss`` (mean EMD
        per joint, heatmap px); ``relative_excess`` (mean of (sinkhorn - exact) / exact); ``gradient_cosine``
        (mean, and ``gradient_cosine_min``, over joints of the cosine between the two losses' gradients w.r.t.
        the joint's map).
    """
    heatmaps, joints, visibility = (torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a,
                                                    dtype=torch.float64) for a in (heatmaps, joints, visibility))
    height, width = heatmaps.shape[-2:]
    weight = target_weight(joints, visibility, (height, width))
    used = weight > 0
    if not used.any():
        raise ValueError("no joint counts (all invisible or outside the heatmap): nothing to compare")

    def value_and_gradient(loss_fn):
        pred = heatmaps.detach().clone().requires_grad_(True)
        values = loss_fn(pred, joints, weight)
        values.sum().backward()
        return values.detach()[used], pred.grad[used].flatten(1)

    exact, exact_grad = value_and_gradient(HDMLoss(reduction="none"))
    rows = []
    for eps in eps_values:
        entropic, entropic_grad = value_and_gradient(HDMLoss(solver="sinkhorn", sinkhorn_eps=eps, reduction="none"))
        cosine = torch.nn.functional.cosine_similarity(entropic_grad, exact_grad, dim=1)
        rows.append({
            "eps": eps, "joints": int(used.sum()), "exact_loss": exact.mean().item(),
            "sinkhorn_loss": entropic.mean().item(),
            "relative_excess": ((entropic - exact) / exact.clamp_min(1e-12)).mean().item(),
            "gradient_cosine": cosine.mean().item(), "gradient_cosine_min": cosine.min().item(),
        })  # fmt: skip
    return pd.DataFrame(rows)
