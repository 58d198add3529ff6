"""Numbers behind Fig. 2 and Table 1, computed from runs' per-epoch metric tables (pandas).

Fig. 2's claim is that our loss tracks localisation accuracy more consistently than pixel-wise MSE does. We
quantify "consistently" per run, over the plotted epochs:

- ``spearman``: Spearman rank correlation between the validation loss and the accuracy over epochs. A loss that
  tracks accuracy perfectly gives -1 (loss down <=> accuracy up).
- ``inconsistent_epochs``: epochs in which the loss fell while the accuracy did not rise (the pattern Fig. 2a
  shows for MSE), and its share among the epochs in which the loss fell.

Over several seeds these become mean ± std (:func:`summarise_over_seeds`). Table 1's solver ablation without
training: :func:`solver_agreement` compares the exact and the entropic loss on the same heatmaps.

Everything a notebook decides rather than draws lives here, so that it is unit-tested rather than only smoke-run:
which joints Fig. 1 and Fig. 3 show (:func:`pick_joints`, :func:`worst_joints`), how Table 1 is assembled beside
the paper (:func:`final_epoch_table`, :func:`table1_beside_paper`, :func:`decoder_ablation`), and the
"Reading" paragraph under each figure (:func:`fig2_reading`, :func:`table1_reading`, :func:`theorem1_reading`,
:func:`fig1_reading`, :func:`fig3_reading`): functions of the numbers that return Markdown, whose verdict
("holds" / "does not hold") is computed, never typed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from scipy.stats import t as student_t

from hdm import paper
from hdm.data.keypoints import COCO_JOINTS, MPII_JOINTS
from hdm.loss import HDMLoss
from hdm.targets import target_weight


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"metrics table lacks columns {missing}; it has {list(frame.columns)}")


def loss_accuracy_consistency(
    metrics: pd.DataFrame, loss: str, accuracy: str, first_epoch: int = 2, last_epoch: int | None = None
) -> dict:
    """How consistently ``loss`` tracks ``accuracy`` over epochs ``first_epoch..last_epoch`` (inclusive).

    Args:
        metrics: one row per epoch with an ``epoch`` column (1-based) and the two named columns.
        loss, accuracy: column names (e.g. "val_mse" and "AP"). first_epoch, last_epoch: Fig. 2 plots 2..15.
    Returns:
        dict with spearman (float, NaN if either series is constant), epochs (int), loss_fell (int),
        inconsistent_epochs (int), inconsistent_share (float, NaN if the loss never fell).
    """
    _check_columns(metrics, ["epoch", loss, accuracy])
    keep = metrics["epoch"] >= first_epoch
    if last_epoch is not None:
        keep &= metrics["epoch"] <= last_epoch
    window = metrics[keep].sort_values("epoch")
    if len(window) < 2:
        raise ValueError(f"need at least 2 epochs in [{first_epoch}, {last_epoch}] to compare, got {len(window)}")
    loss_values = window[loss].to_numpy(float)
    acc_values = window[accuracy].to_numpy(float)
    if np.ptp(loss_values) == 0 or np.ptp(acc_values) == 0:
        rho = float("nan")
    else:
        rho = float(spearmanr(loss_values, acc_values).statistic)
    fell = np.diff(loss_values) < 0
    not_up = np.diff(acc_values) <= 0
    inconsistent = int((fell & not_up).sum())
    return {
        "spearman": rho,
        "epochs": len(window),
        "loss_fell": int(fell.sum()),
        "inconsistent_epochs": inconsistent,
        "inconsistent_share": inconsistent / fell.sum() if fell.any() else float("nan"),
    }


def consistency_table(runs: dict[tuple[str, int], pd.DataFrame], losses: dict[str, str], accuracy: str, **window) -> pd.DataFrame:
    """One row per (method, seed, loss): :func:`loss_accuracy_consistency` of every run against every loss.

    Args:
        runs: (method, seed) -> metrics table. losses: label -> column, e.g. {"MSE": "val_mse", "ours": "val_hdm"}.
        accuracy: accuracy column. window: first_epoch / last_epoch.
    """
    rows = []
    for (method, seed), metrics in runs.items():
        for label, column in losses.items():
            rows.append({"method": method, "seed": seed, "loss": label,
                         **loss_accuracy_consistency(metrics, column, accuracy, **window)})
    return pd.DataFrame(rows)


def summarise_over_seeds(table: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Mean and std (ddof=1; NaN for one seed) of ``values`` grouped by ``by``, plus the seed count ``n``."""
    _check_columns(table, by + values)
    grouped = table.groupby(by, sort=False)[values]
    summary = grouped.agg(["mean", "std"])
    summary.columns = [f"{value}_{stat}" for value, stat in summary.columns]
    summary["n"] = grouped.size()
    return summary.reset_index()


def mean_std_strings(summary: pd.DataFrame, values: list[str], scale: float = 1.0, digits: int = 1) -> pd.DataFrame:
    """Format ``<v>_mean`` / ``<v>_std`` columns as "m ± s" strings (std omitted when NaN), values × ``scale``."""
    out = pd.DataFrame(index=summary.index)
    for value in values:
        mean, std = summary[f"{value}_mean"] * scale, summary[f"{value}_std"] * scale
        out[value] = [f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(mean, std)]
    return out


# ---------------------------------------------------------------------------------------------------------
# Fig. 3: where the model fails


VISIBILITY = {1: "occluded", 2: "visible"}  # COCO keypoint flags of labelled joints


def default_joint_names(num_joints: int) -> tuple[str, ...]:
    """COCO's 17 names (COCO and the synthetic set), MPII's 16, else ``joint<k>``."""
    known = {len(COCO_JOINTS): COCO_JOINTS, len(MPII_JOINTS): MPII_JOINTS}
    return known.get(num_joints, tuple(f"joint{k}" for k in range(num_joints)))


def _person_size(predictions: dict[str, np.ndarray]) -> np.ndarray:
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
    size = _person_size(predictions)
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


# ---------------------------------------------------------------------------------------------------------
# Collecting the runs' numbers

VISIBLE = 2  # COCO keypoint flag: labelled and visible (1: labelled, occluded; 0: not labelled)


def stack_metrics(metrics: dict[tuple[str, int], pd.DataFrame]) -> pd.DataFrame:
    """Every run's per-epoch table in one frame, with ``method`` and ``seed`` columns from the (method, seed) keys."""
    if not metrics:
        raise ValueError("no runs to stack")
    return pd.concat([table.assign(method=method, seed=seed) for (method, seed), table in metrics.items()],
                     ignore_index=True)


def epoch_window(metrics: pd.DataFrame, first_epoch: int = 2) -> tuple[int, int]:
    """(first, last) epochs to plot and compare: from ``first_epoch`` (the supplementary's Fig. 2 starts at 2) to the
    last epoch, moved earlier when the runs are too short to have two epochs from there (smoke runs train 2)."""
    _check_columns(metrics, ["epoch"])
    last = int(metrics["epoch"].max())
    if last < 2:
        raise ValueError(f"need at least 2 epochs to compare, the runs have {last}")
    return max(1, min(first_epoch, last - 1)), last


def tracking_accuracy(accuracy_column: str | None, requested: str | None = None) -> str:
    """Fig. 2's accuracy column: ``requested`` if given, else PCKh where runs have it (MPII, as the paper), else box
    PCK (AP, the headline of COCO-format runs, stays near 0 in short runs). ``accuracy_column``: ``Run.accuracy_column``."""
    return requested or ("PCKh" if accuracy_column == "PCKh" else "PCK")


def final_epoch_table(metrics: dict[tuple, pd.DataFrame], columns: list[str],
                      keys: tuple[str, ...] = ("method", "seed")) -> pd.DataFrame:  # fmt: skip
    """One row per run: its key (one column per name in ``keys``) and ``columns`` of its last epoch."""
    rows = []
    for key, table in metrics.items():
        _check_columns(table, ["epoch", *columns])
        last = table.sort_values("epoch", kind="stable").iloc[-1]
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), **last[columns].to_dict()})
    return pd.DataFrame(rows, columns=[*keys, *columns])


def decoder_ablation(runs: dict, columns: list[str], evaluate, decoders: tuple[str, ...] = ("argmax_shift", "local_com"),
                     cross=()) -> pd.DataFrame:  # fmt: skip
    """Table 1's decoder ablation: one row per (model, seed, decoder).

    Args:
        runs: (model, seed) -> run (``.metrics``, ``.config.decoder``); each appears with its own decoder and its
            final epoch's ``columns``. evaluate: ``evaluate(run, decoder=...)`` -> mapping holding ``columns``.
        cross: keys of the runs also evaluated with every other decoder in ``decoders`` (each decoder on each model).
    """
    def own_decoder(run) -> str:  # a config's "auto" decoder is the method's default
        cfg = run.config
        return (cfg.resolved() if hasattr(cfg, "resolved") else cfg).decoder

    rows = []
    for (model, seed), run in runs.items():
        last = run.metrics.sort_values("epoch", kind="stable").iloc[-1]
        rows.append({"model": model, "seed": seed, "decoder": own_decoder(run), **last[columns].to_dict()})
    for key in cross:
        run = runs[key]
        for decoder in decoders:
            if decoder != own_decoder(run):
                result = evaluate(run, decoder=decoder)
                rows.append({"model": key[0], "seed": key[1], "decoder": decoder, **{c: result[c] for c in columns}})
    return pd.DataFrame(rows, columns=["model", "seed", "decoder", *columns])


# ---------------------------------------------------------------------------------------------------------
# Which joints Fig. 1 and Fig. 3 show


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
    _check_columns(errors, ["sample", "joint", by])
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
    from hdm.data.keypoints import COCO_FLIP_PAIRS, MPII_FLIP_PAIRS

    flags, coords, truth = predictions["keypoint_flags"], predictions["image_coords"], predictions["image_joints"]
    num_joints = flags.shape[1]
    if flip_pairs is None:
        flip_pairs = {len(COCO_JOINTS): COCO_FLIP_PAIRS, len(MPII_JOINTS): MPII_FLIP_PAIRS}.get(num_joints, ())
    twin = np.arange(num_joints)
    for i, j in flip_pairs:
        twin[i], twin[j] = j, i
    size = _person_size(predictions)[:, None]
    labelled = flags > 0
    own = np.linalg.norm(coords - truth, axis=-1) / size
    other = np.linalg.norm(coords - truth[:, twin], axis=-1) / size
    twin_labelled = labelled[:, twin] & (twin != np.arange(num_joints))
    missed = labelled & (own > threshold)
    as_twin = missed & twin_labelled & (other < own)
    count = max(int(labelled.sum()), 1)
    return {"joints": int(labelled.sum()), "missed": missed.sum() / count, "missed_as_twin": as_twin.sum() / count,
            "missed_localisation": (missed & ~as_twin).sum() / count}


def error_summary(errors: pd.DataFrame, by: list[str], value: str = "error_rel",
                  thresholds: tuple[float, ...] = (0.05, 0.1)) -> pd.DataFrame:  # fmt: skip
    """Per group of ``by``: labelled joints, median, mean and 90th percentile of ``value``, and for each threshold t
    the share of joints with ``value <= t`` (with ``error_rel``, a PCK at t over labelled joints, occluded ones too)."""
    _check_columns(errors, [*by, value])
    grouped = errors.groupby(by, sort=False)[value]
    table = pd.DataFrame({"joints": grouped.size(), "median": grouped.median(), "mean": grouped.mean(),
                          "p90": grouped.quantile(0.9)})
    for t in thresholds:
        table[f"within_{t:g}"] = grouped.apply(lambda v, t=t: float((v <= t).mean()))
    return table.reset_index()


# ---------------------------------------------------------------------------------------------------------
# Table 1 beside the paper


def table1_beside_paper(summary: pd.DataFrame, reported: pd.DataFrame | None = None,
                        methods: tuple[str, ...] = ("gaussian", "dot", "hdm"), source: str = "ours",
                        paper_source: str = "paper (COCO, W48)", scale: float = 100.0, digits: int = 1,
                        labels: dict[str, str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Our rows ("mean ± std" of the paper's metrics × ``scale``, from :func:`summarise_over_seeds` by ``method``)
    and the paper's rows (``reported``, default ``paper.TABLE1``, indexed by method), as strings.

    Rows follow ``methods`` (the paper's order), ours before the paper's for each; a method that one side lacks has
    only the other side's row. Columns: method (readable label), source, then the paper's metric columns.
    """
    reported = paper.TABLE1 if reported is None else reported
    labels = paper.METHOD_LABELS if labels is None else labels
    metrics = list(reported.columns)
    ours = pd.concat([summary[["method"]], mean_std_strings(summary, metrics, scale=scale, digits=digits)], axis=1)
    ours = ours.set_index("method")
    rows = []
    for method in methods:
        label = labels.get(method, method)
        if method in ours.index:
            rows.append({"method": label, "source": source, **ours.loc[method, metrics].to_dict()})
        if method in reported.index:
            rows.append({"method": label, "source": paper_source,
                         **{m: f"{reported.loc[method, m]:.{digits}f}" for m in metrics}})
    return pd.DataFrame(rows, columns=["method", "source", *metrics])


def rank_order(values: dict[str, float], labels: dict[str, str] | None = None, digits: int | None = None) -> str:
    """"a > b = c": keys by decreasing value; values equal after rounding to ``digits`` (if given) are ties."""
    labels = labels or {}
    rounded = {k: round(float(v), digits) if digits is not None else float(v) for k, v in values.items()}
    ordered = sorted(rounded, key=lambda k: -rounded[k])
    text = labels.get(ordered[0], ordered[0])
    for prev, key in zip(ordered, ordered[1:]):
        text += (" = " if rounded[key] == rounded[prev] else " > ") + labels.get(key, key)
    return text


def strictly_ordered(values: dict[str, float], order: list[str], digits: int | None = None) -> bool:
    """Whether ``values[order[0]] > values[order[1]] > ...`` (after rounding to ``digits``, if given)."""
    v = [round(float(values[k]), digits) if digits is not None else float(values[k]) for k in order]
    return all(a > b for a, b in zip(v, v[1:]))


# ---------------------------------------------------------------------------------------------------------
# The "Reading" paragraphs: computed verdicts, in Markdown

_SHORT = {"gaussian": "Gaussian", "dot": "dot", "hdm": "ours"}


def _verdict(ok: bool | None, yes: str = "holds", no: str = "does not hold", unknown: str = "cannot be judged") -> str:
    return f"**{unknown if ok is None else yes if ok else no}**"


def _pm(mean: float, std: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} (± {std:.{digits}f})"


def fig2_claim_holds(reference: pd.Series, ours: pd.Series) -> bool | None:
    """Fig. 2's claim on two rows of the seed summary: our loss tracks accuracy better than MSE does, i.e. a mean
    Spearman ρ closer to −1 *and* fewer inconsistent epochs on average. None when a ρ is undefined (NaN)."""
    if np.isnan(reference["spearman_mean"]) or np.isnan(ours["spearman_mean"]):
        return None
    return bool(ours["spearman_mean"] < reference["spearman_mean"]
                and ours["inconsistent_epochs_mean"] < reference["inconsistent_epochs_mean"])


def fig2_reading(summary: pd.DataFrame, accuracy: str, scale: str, n_seeds: int, epochs: tuple[int, int],
                 reference: tuple[str, str] = ("gaussian", "pixel-wise MSE"),
                 ours: tuple[str, str] = ("hdm", "ours (EMD)")) -> str:  # fmt: skip
    """Fig. 2's reading from :func:`summarise_over_seeds` of :func:`consistency_table` (by method and loss).

    ``reference`` and ``ours``: the (method, loss label) rows of panels (a) and (b). ``epochs``: the (first, last)
    epochs compared; fewer than three cannot judge the claim.
    """
    def row(method, loss):
        found = summary[(summary["method"] == method) & (summary["loss"] == loss)]
        if found.empty:
            raise KeyError(f"no summary row for method {method!r} and loss {loss!r}")
        return found.iloc[0]

    a, b = row(*reference), row(*ours)
    holds = fig2_claim_holds(a, b)
    why = " (a correlation is undefined: the loss or the accuracy is constant)" if holds is None else ""
    if epochs[1] - epochs[0] < 2:  # two epochs: ρ is ±1 and at most one step can be inconsistent, whatever the loss
        holds, why = None, f" with only {epochs[1] - epochs[0] + 1} epochs (ρ over two points is ±1)"
    return (
        f"**Reading ({scale} scale, {n_seeds} seed{'s' * (n_seeds != 1)}, epochs {epochs[0]}–{epochs[1]}).** "
        f"Panel (a), {reference[1]} of the {_SHORT.get(reference[0], reference[0])}-trained model: Spearman "
        f"ρ(loss, {accuracy}) = {_pm(a.spearman_mean, a.spearman_std)}; the loss fell while {accuracy} did "
        f"not rise in {a.inconsistent_epochs_mean:.1f} epochs on average. Panel (b), {ours[1]} for our model: "
        f"ρ = {_pm(b.spearman_mean, b.spearman_std)}, {b.inconsistent_epochs_mean:.1f} such epochs. The "
        f"paper's claim ((b) tracks accuracy better than (a): ρ closer to −1 and fewer inconsistent epochs) "
        f"{_verdict(holds)} here{why}."
    )


def table1_reading(summary: pd.DataFrame, scale: str, n_seeds: int, reported: pd.DataFrame | None = None,
                   metric: str = "AP", secondary: str | None = "PCK", solver: pd.DataFrame | None = None) -> str:
    """Table 1's reading: our ``metric`` per method (× 100, one decimal, as the paper prints it) and whether the
    paper's order of the methods (strict, from ``reported``, default ``paper.TABLE1``) is reproduced; differences
    below the printed 0.1 count as ties. ``secondary``: a metric whose order is compared with the paper's too (box
    PCK, informative where AP is near 0). ``solver``: :func:`solver_agreement` rows with a ``model`` column."""
    reported = paper.TABLE1 if reported is None else reported
    means = summary.set_index("method")
    methods = [m for m in reported.index if m in means.index]
    if len(methods) < 2:
        raise ValueError(f"need at least two of the paper's methods {list(reported.index)}, got {list(means.index)}")
    theirs = reported.loc[methods, metric].astype(float).to_dict()
    paper_order = sorted(methods, key=lambda m: -theirs[m])
    ours = {m: 100 * float(means.loc[m, f"{metric}_mean"]) for m in methods}
    reproduced = strictly_ordered(ours, paper_order, digits=1)
    text = (
        f"**Reading ({scale} scale, {n_seeds} seed{'s' * (n_seeds != 1)}).** {metric}: "
        + ", ".join(f"{_SHORT.get(m, m)} {ours[m]:.1f}" for m in methods)
        + f" (order {rank_order(ours, _SHORT, digits=1)}). The paper reports "
        + " / ".join(f"{theirs[m]:.1f}" for m in methods)
        + f" ({rank_order(theirs, _SHORT)}) on COCO with HRNet-W48; its ordering "
        + _verdict(reproduced, "is reproduced", "is not reproduced") + " here."
    )
    if secondary and f"{secondary}_mean" in means.columns:
        second = {m: 100 * float(means.loc[m, f"{secondary}_mean"]) for m in methods}
        agrees = strictly_ordered(second, paper_order, digits=1)
        text += (f" By {secondary} (%): " + ", ".join(f"{_SHORT.get(m, m)} {second[m]:.1f}" for m in methods)
                 + f", order {rank_order(second, _SHORT, digits=1)}, which "
                 + _verdict(agrees, "agrees", "does not agree") + f" with the paper's {metric} order.")
    if solver is not None and not solver.empty:
        finest = solver[solver["eps"] == solver["eps"].min()]
        parts = [f"{r.model}: Sinkhorn exceeds the exact loss by {r.relative_excess:.1%}, gradient cosine "
                 f"{r.gradient_cosine:.3f}" for r in finest.itertuples()]
        text += f" Exact vs. entropic solver at ε = {finest['eps'].iloc[0]:g} px: " + "; ".join(parts) + "."
    return text


def theorem1_reading(symbolic: dict, eq5_holds: dict, eq5_fails: dict, dataset: dict, tol: float = 1e-9) -> str:
    """Theorem 1's reading.

    Args:
        symbolic: ``theory.symbolic_check()``. eq5_holds, eq5_fails: ``theory.theorem1_terms`` with HRNet targets
            (Gaussian peak 1 at the dot: eq. 5 holds) and with sub-pixel-centred Gaussians (eq. 5 fails).
        dataset: ``theory.dataset_eq5_violation``. tol: relative residual below which eq. 4 holds numerically.
    """
    factor = symbolic["factor"]
    algebra = bool(symbolic["residual_is_factor_times_gap"] and symbolic["zero_under_eq5"])
    holds = eq5_holds["relative_residual"] < tol
    fails = eq5_fails["relative_residual"] >= tol
    gap = eq5_fails["eq5_gap"]
    ratio = eq5_fails["residual"] / (float(factor) * gap) if gap else float("nan")
    return (
        f"**Reading.** sympy finds lhs − rhs = {factor} × (‖H_dot‖² − ⟨H_Gau, H_dot⟩), so eq. 4 holds exactly "
        f"when eq. 5 does: this {_verdict(algebra, 'is confirmed', 'is not confirmed')} symbolically. On real "
        f"predictions with HRNet targets (eq. 5 holds) eq. 4 {_verdict(holds)} numerically (relative residual "
        f"{eq5_holds['relative_residual']:.1e}). With sub-pixel-centred Gaussians eq. 5 fails (mean gap per joint "
        f"{dataset['mean_gap_per_joint']:.4f}, max {dataset['max_gap']:.4f}; {dataset['uniform_reference']:.4f} for a "
        f"joint uniform over its pixel) and eq. 4 {_verdict(not fails, 'still holds', 'fails')}: relative residual "
        f"{eq5_fails['relative_residual']:.1e}, {ratio:.3f} × the predicted {factor} × gap, an eq. 4 residual of "
        f"{dataset['eq4_residual_per_image']:.3f} per image over the dataset."
    )


def paper_qualitative_rows(rows: dict | None = None) -> pd.DataFrame:
    """The supplementary's Fig. 1 (default) or Fig. 3 rows (``paper.FIG1_ROWS`` / ``FIG3_ROWS``: joint -> (baseline,
    ours, GT) image px) with each prediction's error in px, as the columns ``plots.qualitative_grid`` returns."""
    rows = paper.FIG1_ROWS if rows is None else rows
    return pd.DataFrame([{"joint": joint, "baseline (x, y)": f"({b[0]:.1f}, {b[1]:.1f})",
                          "ours (x, y)": f"({o[0]:.1f}, {o[1]:.1f})", "GT (x, y)": f"({g[0]:.1f}, {g[1]:.1f})",
                          "baseline error px": float(np.hypot(*np.subtract(b, g))),
                          "ours error px": float(np.hypot(*np.subtract(o, g)))}
                         for joint, (b, o, g) in rows.items()])  # fmt: skip


def fig1_reading(coords: pd.DataFrame, reported: pd.DataFrame | None = None) -> str:
    """Fig. 1's reading: mean error of the baseline and ours over the picks (``plots.qualitative_grid``'s table),
    how many picks ours gets closer, and whether the direction agrees with the paper's rows
    (:func:`paper_qualitative_rows`)."""
    reported = paper_qualitative_rows() if reported is None else reported
    base, ours = coords["baseline error px"], coords["ours error px"]
    paper_base, paper_ours = reported["baseline error px"].mean(), reported["ours error px"].mean()
    ours_better, paper_better = ours.mean() < base.mean(), paper_ours < paper_base
    return (
        f"**Reading.** Mean error over these {len(coords)} picks: baseline {base.mean():.2f} px, ours "
        f"{ours.mean():.2f} px; ours is closer on {int((ours < base).sum())} of {len(coords)}. The paper's rows: "
        f"{paper_base:.1f} vs {paper_ours:.1f} px (ours {'closer' if paper_better else 'not closer'}, "
        f"{int((reported['ours error px'] < reported['baseline error px']).sum())} of {len(reported)}). The direction "
        f"{_verdict(ours_better == paper_better, 'agrees', 'does not agree')} with the paper's "
        f"(a few picks illustrate, they do not measure: Table 1 does)."
    )


#: Fig. 3: occluded joints "concentrate" among the worst when their share there is at least this many times their
#: share among all labelled joints (a ratio near 1 is what chance gives).
CONCENTRATION = 1.25


def fig3_reading(split: pd.DataFrame, worst_share: float, model: str = "ours", baseline: str = "baseline") -> str:
    """Fig. 3's reading from :func:`error_by_visibility` of both models (a ``model`` column): do our model's worst
    ``worst_share`` of joints concentrate on occluded joints (a share at least ``CONCENTRATION`` times their share
    among all labelled joints)?"""
    def occluded(label):
        row = split[(split["model"] == label) & (split["visibility"] == "occluded")]
        return None if row.empty else row.iloc[0]

    ours = occluded(model)
    if ours is None:
        return ("**Reading.** No joint is labelled occluded (visibility 1) here, so whether failures concentrate on "
                f"occluded joints {_verdict(None, unknown='cannot be tested')} (the supplementary's Fig. 3 shows "
                "failures under severe occlusion).")
    ratio = ours["share_of_worst"] / ours["share_of_joints"] if ours["share_of_joints"] > 0 else float("nan")
    concentrate = None if np.isnan(ratio) else bool(ratio >= CONCENTRATION)
    text = (f"**Reading.** Occluded joints are {ours['share_of_joints']:.0%} of the labelled joints and "
            f"{ours['share_of_worst']:.0%} of our model's worst {worst_share:.0%} ({ratio:.2f}× their share; we call "
            f"≥ {CONCENTRATION:g}× a concentration): here failures {_verdict(concentrate, 'do', 'do not')} "
            "concentrate on occluded joints")
    base = occluded(baseline)
    if base is not None:
        text += f" (baseline: {base['share_of_worst']:.0%} of its worst)"
    return text + " — the supplementary's Fig. 3 shows failures under severe occlusion."


# ---------------------------------------------------------------------------------------------------------
# Table 1: the paired difference ours − Gaussian


def paired_difference(final: pd.DataFrame, metrics: list[str], ours: str = "hdm", reference: str = "gaussian",
                      confidence: float = 0.95, key: str = "method") -> pd.DataFrame:  # fmt: skip
    """Per metric, ``ours − reference`` paired by seed (same seed = same data order, same start): the per-seed
    differences, their mean, std (ddof=1) and the two-sided Student-t ``confidence`` interval of the mean (NaN
    with fewer than two seeds). ``final``: one row per (``key``, seed) with the metric columns."""
    a = final[final[key] == ours].set_index("seed")
    b = final[final[key] == reference].set_index("seed")
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        raise ValueError(f"no seed has both {ours!r} and {reference!r} runs")
    rows = []
    for metric in metrics:
        diff = (a.loc[seeds, metric] - b.loc[seeds, metric]).to_numpy(dtype=float)
        n, mean = len(diff), float(diff.mean())
        std = float(diff.std(ddof=1)) if n > 1 else float("nan")
        half = float(student_t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
        rows.append({"metric": metric, "n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half,
                     "per_seed": " ".join(f"{d:+.4f}" for d in diff)})  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# Table 1: where the Gaussian baseline's learning curve flattens


def longer_baseline(scale: str, longer: str | None = "auto") -> str | None:
    """Table 1's ``longer_baseline`` parameter: a variant spec as it is, ``None`` for none, or ``"auto"``: at the long
    scale the Gaussian baseline on twice its schedule (40 epochs, lr x0.1 after 36 and 39), so that its learning
    curve shows where it flattens at lr 1e-3; elsewhere none (the smoke and default budgets)."""
    if longer == "auto":
        return "gaussian+epochs:40+lr_steps:36,39" if scale == "long" else None
    if longer is not None:
        from hdm.config import variant_preset

        try:
            if not isinstance(longer, str):
                raise TypeError(f"got a {type(longer).__name__}")
            variant_preset(scale, longer)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"notebook parameter longer_baseline={longer!r}: expected None, \"auto\" or a variant "
                             f"spec 'method+key:value' ({exc})") from None
    return longer


def window_gains(metrics: pd.DataFrame, column: str, window: int = 5) -> pd.DataFrame:
    """How much ``column`` rose from one checkpoint epoch to the next of one run (a learning curve's slope).

    Checkpoints are the first epoch, every multiple of ``window`` after it, and the last epoch.

    Args:
        metrics: one row per epoch, columns ``epoch`` (1-based), ``lr`` and ``column`` (e.g. "AP").
    Returns:
        one row per pair of consecutive checkpoints: from_epoch, to_epoch, lr (the learning rate of epochs
        from_epoch + 1 .. to_epoch, or "mixed" where it changed among them), start, end, gain = end - start.
    """
    _check_columns(metrics, ["epoch", "lr", column])
    if window < 1:
        raise ValueError(f"window must be >= 1 epoch, got {window}")
    table = metrics.sort_values("epoch").set_index("epoch")
    if len(table) < 2:
        raise ValueError(f"need at least 2 epochs for a gain, got {len(table)}")
    first, last = int(table.index[0]), int(table.index[-1])
    checkpoints = sorted({first, last, *range(window * (first // window + 1), last, window)})
    rows = []
    for a, b in zip(checkpoints, checkpoints[1:]):
        lrs = table.loc[a + 1:b, "lr"].unique()
        rows.append({"from_epoch": a, "to_epoch": b, "lr": float(lrs[0]) if len(lrs) == 1 else "mixed",
                     "start": float(table.loc[a, column]), "end": float(table.loc[b, column]),
                     "gain": float(table.loc[b, column] - table.loc[a, column])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# Our loss's training dynamics (notebooks/hdm_dynamics)

#: The diagnostics every run records per epoch (``hdm.engine.diagnostics``, ``hdm.engine.training``).
DYNAMICS_COLUMNS = ("supplier_mass", "dead_share", "head_grad", "train_loss", "val_hdm")


def dynamics_suppliers(scale: str) -> list[str]:
    """The supplier activations the dynamics notebook compares at ``scale``: relu (the paper's) and softplus at the
    default scale (its 20-minute budget), relu, softplus and softmax elsewhere."""
    return ["relu", "softplus"] if scale == "default" else ["relu", "softplus", "softmax"]


def dynamics_sweep(scale: str) -> tuple[list[str], list[str]]:
    """(sweep, entropic) variants of the dynamics notebook at ``scale``: what the main paper would have fixed and
    we cannot read (learning rate, head initialisation, warm-up) with relu suppliers, and the entropic solver
    beside the exact one over the same few epochs. The default scale sweeps nothing (its 20-minute budget);
    smoke and long sweep everything."""
    lrs = ["hdm+lr:3e-4", "hdm+lr:1e-4"]
    rest = ["hdm+head_init_std:0.01", "hdm+warmup_steps:500"]
    if scale == "default":
        return [], []
    if scale == "smoke":
        return lrs + rest, ["hdm_sinkhorn", "hdm"]
    return lrs + rest, ["hdm_sinkhorn+epochs:2+max_train_samples:2000", "hdm+epochs:2+max_train_samples:2000"]


def dynamics_screen_epochs(scale: str, screen_epochs: int | str | None = "auto") -> int | None:
    """Epochs of every run of the dynamics notebook at ``scale``, from its ``screen_epochs`` parameter: an
    integer >= 1 as it is, ``None`` for the scale's own schedule, ``"auto"`` for ``None`` except at the long scale,
    where 5 of its 20 epochs (all at the initial learning rate) rank the settings within its budget; Table 1 then
    trains the pick on the full schedule."""
    if screen_epochs == "auto":
        return 5 if scale == "long" else None
    if screen_epochs is None or (isinstance(screen_epochs, int) and not isinstance(screen_epochs, bool)
                                 and screen_epochs >= 1):  # fmt: skip
        return screen_epochs
    raise ValueError(f'notebook parameter screen_epochs={screen_epochs!r}: expected None, "auto" or an integer >= 1')


def screened(variant: str, epochs: int | None) -> str:
    """``variant`` trained for ``epochs`` (a screening run), or as it is for ``None``."""
    return variant if epochs is None else f"{variant}+epochs:{epochs}"


def sweep_summary(final: pd.DataFrame, accuracy: str, key: str = "variant") -> pd.DataFrame:
    """Seed means of the final epoch per variant, best ``accuracy`` first, with a ``supplier`` column (relu
    unless the variant sets another) so that the faithful (relu) settings can be told apart."""
    values = [c for c in (accuracy, "err_hm", *DYNAMICS_COLUMNS) if c in final.columns]
    summary = summarise_over_seeds(final, [key], values)
    summary["supplier"] = [_variant_value(v, "supplier", "relu" if v.startswith("hdm") else "-") for v in summary[key]]
    return summary.sort_values(f"{accuracy}_mean", ascending=False, kind="stable").reset_index(drop=True)


def _variant_value(spec: str, name: str, default: str) -> str:
    for part in spec.split("+")[1:]:
        key, _, value = part.partition(":")
        if key == name:
            return value
    return default


def best_relu_variant(summary: pd.DataFrame, accuracy: str, key: str = "variant", exact_only: bool = True) -> str:
    """The relu-supplier variant of :func:`sweep_summary` with the highest mean ``accuracy`` (the paper's
    suppliers: the only candidates for "our method"); with ``exact_only``, short entropic/epoch-limited runs
    (variants setting ``epochs``) are left out."""
    rows = summary[(summary["supplier"] == "relu") & summary[key].str.startswith("hdm")]
    if exact_only:
        rows = rows[~rows[key].str.contains("epochs:") & ~rows[key].str.startswith("hdm_")]
    if rows.empty:
        raise ValueError("no relu-supplier variant of our method in the sweep")
    return str(rows.sort_values(f"{accuracy}_mean", ascending=False, kind="stable")[key].iloc[0])


def dynamics_reading(per_epoch: pd.DataFrame, summary: pd.DataFrame, accuracy: str, scale: str,
                     key: str = "variant") -> str:  # fmt: skip
    """The mechanism paragraph, from the numbers: after the first epoch and at the end, relu vs softplus (and
    softmax where run): dead share near the joints, supplier mass, head gradient, accuracy; then the best relu
    setting of the sweep against the default. Each comparison is stated as the numbers have it."""
    def at(variant, epoch, column):
        rows = per_epoch[(per_epoch[key] == variant) & (per_epoch["epoch"] == epoch)]
        return float(rows[column].mean()) if len(rows) else float("nan")

    last = int(per_epoch["epoch"].max())
    relu, soft = "hdm", "hdm+supplier:softplus"
    if not {relu, soft} <= set(per_epoch[key]):
        raise ValueError(f"the reading compares {relu!r} with {soft!r}: run both")
    dead = {v: (at(v, 1, "dead_share"), at(v, last, "dead_share")) for v in (relu, soft)}
    mass = {v: (at(v, 1, "supplier_mass"), at(v, last, "supplier_mass")) for v in (relu, soft)}
    grad = {v: at(v, 1, "head_grad") for v in (relu, soft)}
    acc = {v: at(v, last, accuracy) for v in (relu, soft)}
    deader = dead[relu][0] > dead[soft][0]
    weaker = acc[relu] < acc[soft]
    best = best_relu_variant(summary, accuracy, key)
    by_variant = summary.set_index(key)
    best_acc, base_acc = float(by_variant.loc[best, f"{accuracy}_mean"]), float(by_variant.loc[relu, f"{accuracy}_mean"])
    text = (
        f"**Mechanism ({scale} scale).** After epoch 1, {100 * dead[relu][0]:.0f} % of the pixels within 2 px of a "
        f"joint are ≤ 0 in the relu-trained model's maps (softplus-trained: {100 * dead[soft][0]:.0f} %); relu gives "
        f"those pixels no gradient, so the loss can raise the map around a joint only through pixels already "
        f"positive. The relu suppliers' mass Σ relu(h) per joint is {mass[relu][0]:.3g} after epoch 1 and "
        f"{mass[relu][1]:.3g} at epoch {last} (softplus-trained maps: {mass[soft][0]:.3g} → {mass[soft][1]:.3g}); "
        f"the head's gradient norm in epoch 1 is {grad[relu]:.3g} with relu and {grad[soft]:.3g} with softplus. "
        f"At epoch {last}, {accuracy} is {100 * acc[relu]:.1f} with relu and {100 * acc[soft]:.1f} with softplus: "
        f"relu's maps {'are' if deader else 'are not'} deader near the joints and relu "
        f"{'trains worse' if weaker else 'does not train worse'} here. "
    )
    if best == relu:
        text += f"No swept setting beats relu's defaults ({accuracy} {100 * base_acc:.1f})."
    else:
        text += (f"The best relu setting of the sweep is `{best}` ({accuracy} {100 * best_acc:.1f} against "
                 f"{100 * base_acc:.1f} with the defaults); Table 1 uses it as our method.")
    return text


def distinct_from_ours(scale: str, variants: list[str], ours: str, dataset: str | None = None) -> list[str]:
    """``variants`` without those whose configuration at ``scale`` equals our method's (``ours``): the same run,
    which the notebooks already train as "our method"."""
    from hdm.config import variant_preset

    our_config = variant_preset(scale, ours, dataset=dataset)
    return [v for v in variants if variant_preset(scale, v, dataset=dataset) != our_config]


def our_setting(ours: str, sweep_table) -> str:
    """Table 1's "our method": ``ours`` itself, or for ``"auto"`` the best relu setting in the dynamics notebook's
    sweep table (``hdm_dynamics_sweep_<scale>.csv``, written before Table 1 by ``hdm.reproduce``); plain ``"hdm"``
    when that table does not exist."""
    from pathlib import Path

    if ours != "auto":
        return ours
    path = Path(sweep_table)
    if not path.is_file():
        return "hdm"
    summary = pd.read_csv(path)
    accuracy = next(c[: -len("_mean")] for c in summary.columns if c.endswith("_mean"))
    return best_relu_variant(summary, accuracy)
