"""Statistics over runs and seeds: how a loss tracks accuracy (Fig. 2), seed summaries, paired differences.

Fig. 2's claim is that our loss tracks localisation accuracy more consistently than pixel-wise MSE does. We
quantify "consistently" per run, over the plotted epochs:

- ``spearman``: Spearman rank correlation between the validation loss and the accuracy over epochs. A loss that
  tracks accuracy perfectly gives -1 (loss down <=> accuracy up).
- ``inconsistent_epochs``: epochs in which the loss fell while the accuracy did not rise (the pattern Fig. 2a
  shows for MSE), and its share among the epochs in which the loss fell.

Over several seeds these become mean ± std (:func:`summarise_over_seeds`); Table 1's paired difference ours −
Gaussian by seed (:func:`paired_difference`); a learning curve's slope (:func:`window_gains`); orders of methods
(:func:`rank_order`, :func:`strictly_ordered`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from scipy.stats import t as student_t

from hdm.experiments import variant_value


def check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    """Raise ``KeyError`` naming the ``columns`` that ``frame`` lacks."""
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
    check_columns(metrics, ["epoch", loss, accuracy])
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
    check_columns(table, by + values)
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


def stack_metrics(metrics: dict[tuple[str, int], pd.DataFrame]) -> pd.DataFrame:
    """Every run's per-epoch table in one frame, with ``method`` and ``seed`` columns from the (method, seed) keys."""
    if not metrics:
        raise ValueError("no runs to stack")
    return pd.concat([table.assign(method=method, seed=seed) for (method, seed), table in metrics.items()],
                     ignore_index=True)


def epoch_window(metrics: pd.DataFrame, first_epoch: int = 2) -> tuple[int, int]:
    """(first, last) epochs to plot and compare: from ``first_epoch`` (the supplementary's Fig. 2 starts at 2) to the
    last epoch, moved earlier when the runs are too short to have two epochs from there (smoke runs train 2)."""
    check_columns(metrics, ["epoch"])
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
        check_columns(table, ["epoch", *columns])
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


def evaluation_rows(runs: dict, decoders: dict[str, list[str]], evaluate, columns: list[str], split: str = "val") -> pd.DataFrame:
    """One row per (model, seed, decoder) of ``runs`` ((model, seed) -> run) evaluated on ``split`` with each of
    ``decoders[model]``: model, seed, decoder, split and the ``columns`` of ``evaluate(run, decoder=..., split=...)``
    (cached in the run, so a second call reads files)."""
    rows = [{"model": model, "seed": seed, "decoder": decoder, "split": split,
             **{c: result[c] for c in columns}}
            for (model, seed), run in runs.items() for decoder in decoders[model]
            for result in [evaluate(run, decoder=decoder, split=split)]]  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "seed", "decoder", "split", *columns])


def resolution_table(runs: dict, labels: dict[str, str], columns: list[str]) -> pd.DataFrame:
    """The heatmap-size screen: one row per (model, size) of ``runs`` ((model, size) -> run), with the model's label,
    the run's input and heatmap sizes ("HxW"), its epochs and its final epoch's ``columns`` (validation)."""
    rows = []
    for (model, size), run in runs.items():
        cfg, last = run.config, run.metrics.sort_values("epoch", kind="stable").iloc[-1]
        rows.append({"model": labels.get(model, model), "size": size, "input": "x".join(map(str, cfg.input_hw)),
                     "heatmap": "x".join(map(str, cfg.heatmap_hw)), "epochs": int(last["epoch"]),
                     **last[columns].to_dict()})  # fmt: skip
    return pd.DataFrame(rows)


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


def window_gains(metrics: pd.DataFrame, column: str, window: int = 5) -> pd.DataFrame:
    """How much ``column`` rose from one checkpoint epoch to the next of one run (a learning curve's slope).

    Checkpoints are the first epoch, every multiple of ``window`` after it, and the last epoch.

    Args:
        metrics: one row per epoch, columns ``epoch`` (1-based), ``lr`` and ``column`` (e.g. "AP").
    Returns:
        one row per pair of consecutive checkpoints: from_epoch, to_epoch, lr (the learning rate of epochs
        from_epoch + 1 .. to_epoch, or "mixed" where it changed among them), start, end, gain = end - start.
    """
    check_columns(metrics, ["epoch", "lr", column])
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


def training_stability(per_epoch: pd.DataFrame, accuracy: str, keys: tuple[str, ...] = ("method", "seed")) -> pd.DataFrame:
    """Whether each run's optimisation settled: does its training loss rise again after its minimum, does its
    validation ``accuracy`` fall from its best epoch, and how erratic is the head's gradient from epoch to epoch.

    Args:
        per_epoch: one row per (run, epoch) (:func:`stack_metrics`), columns ``keys``, ``epoch``, ``train_loss``,
            ``accuracy`` and optionally ``head_grad`` (the epoch's mean gradient norm of the head).
    Returns:
        one row per run: ``keys``, epochs, train_loss_first / _min / _last, min_epoch (first epoch at the minimum),
        loss_rise = last / min − 1 (0: the loss ended at its minimum), best (``accuracy``'s highest value),
        best_epoch, last, drop = best − last, and head_grad_median and head_grad_spread = max / median over epochs
        (NaN without a positive ``head_grad``: losses that do not log it).
    """
    check_columns(per_epoch, [*keys, "epoch", "train_loss", accuracy])
    rows = []
    for key, run in per_epoch.sort_values("epoch", kind="stable").groupby(list(keys), sort=False):
        loss, value = run["train_loss"].to_numpy(float), run[accuracy].to_numpy(float)
        epochs = run["epoch"].to_numpy(int)
        grad = run["head_grad"].to_numpy(float) if "head_grad" in run else np.array([np.nan])
        grad = grad[np.isfinite(grad) & (grad > 0)]
        median = float(np.median(grad)) if len(grad) else float("nan")
        rows.append({**dict(zip(keys, key)), "epochs": int(epochs[-1]), "train_loss_first": float(loss[0]),
                     "train_loss_min": float(loss.min()), "min_epoch": int(epochs[loss.argmin()]),
                     "train_loss_last": float(loss[-1]), "loss_rise": float(loss[-1] / loss.min() - 1),
                     "best": float(value.max()), "best_epoch": int(epochs[value.argmax()]), "last": float(value[-1]),
                     "drop": float(value.max() - value[-1]), "head_grad_median": median,
                     "head_grad_spread": float(grad.max() / median) if len(grad) else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


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


#: The diagnostics every run records per epoch (``hdm.engine.diagnostics``, ``hdm.engine.training``).
DYNAMICS_COLUMNS = ("supplier_mass", "dead_share", "head_grad", "train_loss", "val_hdm")


def sweep_summary(final: pd.DataFrame, accuracy: str, key: str = "variant") -> pd.DataFrame:
    """Seed means of the final epoch per variant, best ``accuracy`` first, with a ``supplier`` column (relu
    unless the variant sets another) so that the faithful (relu) settings can be told apart."""
    values = [c for c in (accuracy, "err_hm", *DYNAMICS_COLUMNS) if c in final.columns]
    summary = summarise_over_seeds(final, [key], values)
    summary["supplier"] = [variant_value(v, "supplier", "relu" if v.startswith("hdm") else "-") for v in summary[key]]
    return summary.sort_values(f"{accuracy}_mean", ascending=False, kind="stable").reset_index(drop=True)
