"""What runs: the experiment plans the notebooks follow at each scale (which variants the dynamics notebook
screens and for how long, Table 1's longer baseline, which setting is "our method", which variants are the same
run as ours). They decide what is trained, never a run's numbers (a run's identity is its config)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hdm import paper
from hdm.config import variant_preset


def longer_baseline(scale: str, longer: str | None = "auto") -> str | None:
    """Table 1's ``longer_baseline`` parameter: a variant spec as it is, ``None`` for none, or ``"auto"``: at the long
    scale the Gaussian baseline on twice its schedule (40 epochs, lr x0.1 after 36 and 39), so that its learning
    curve shows where it flattens at lr 1e-3; elsewhere none (the smoke and default budgets)."""
    if longer == "auto":
        return "gaussian+epochs:40+lr_steps:36,39" if scale == "long" else None
    if longer is not None:
        try:
            if not isinstance(longer, str):
                raise TypeError(f"got a {type(longer).__name__}")
            variant_preset(scale, longer)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"notebook parameter longer_baseline={longer!r}: expected None, \"auto\" or a variant "
                             f"spec 'method+key:value' ({exc})") from None
    return longer


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


#: The strict supply mode and the repairs of relu training (issue 19), each a labelled deviation from our method.
STRICT_SCREEN = "hdm+supply_guard:strict"
REPAIRS = {
    "hdm+head_bias:0.1": "head bias 0.1 at the start (every pixel positive)",
    "hdm+mass_weighting:true": "joints weighted by their detached supplier mass",
    "hdm+level_weight:1": "a level term keeping each map's peak at 0.1",
}


def mechanism_screens(scale: str) -> list[str]:
    """Variants the dynamics notebook screens beside the sweep to test the mechanism (issue 19): the strict mode
    (no guard: an all-≤ 0 map gets no loss and no gradient) and the ``REPAIRS``. None at the default scale (its
    20-minute budget); smoke and long screen all of them."""
    return [] if scale == "default" else [STRICT_SCREEN, *REPAIRS]


def dynamics_reference(scale: str) -> list[str]:
    """The neutral reference the dynamics notebook trains beside its relu runs, on the same screen schedule:
    ``["gaussian"]`` at every scale. Its loss (MSE to Gaussian targets) has no relu and no supply guard, so its maps
    are the shift test's neutral case: how the relu-normalised EMD scores maps no relu supplier shaped, and how many
    of them lie all ≤ 0 without any pull of our loss; it is never a candidate for "our method"."""
    return ["gaussian"]


def repair_label(variant: str) -> str:
    """Table 1's label of a repaired variant: ``"ours, repaired: <what>"``, and what else the variant sets in
    brackets (e.g. ``"+epochs:40+lr_steps:36,39"`` -> ``" (epochs 40, lr_steps 36,39)"``)."""
    parts = variant.split("+")
    base, rest = "+".join(parts[:2]), parts[2:]
    if base not in REPAIRS:
        raise ValueError(f"{variant!r} is not one of the repairs {sorted(REPAIRS)}")
    return f"ours, repaired: {REPAIRS[base]}" + (f" ({', '.join(p.replace(':', ' ') for p in rest)})" if rest else "")


def best_repair(summary: pd.DataFrame, accuracy: str, key: str = "variant") -> str | None:
    """The repair (a ``REPAIRS`` key, screened or not) with the highest mean ``accuracy`` in a sweep summary, or
    None when none was screened."""
    base = summary[key].str.split("+epochs:", regex=False).str[0]
    repaired = base.isin(list(REPAIRS))
    if not repaired.any():
        return None
    rows = summary[repaired].assign(_base=base[repaired])
    return str(rows.sort_values(f"{accuracy}_mean", ascending=False, kind="stable")["_base"].iloc[0])


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


def variant_value(spec: str, name: str, default: str) -> str:
    """The value a variant spec ``"method+key:value+..."`` sets for ``name``, else ``default``."""
    for part in spec.split("+")[1:]:
        key, _, value = part.partition(":")
        if key == name:
            return value
    return default


def sweep_accuracy(summary: pd.DataFrame) -> str:
    """The accuracy a sweep summary (:func:`hdm.analysis.sweep_summary`) ranks by: its first ``<name>_mean`` column."""
    return next(c[: -len("_mean")] for c in summary.columns if c.endswith("_mean"))


def best_relu_variant(summary: pd.DataFrame, accuracy: str, key: str = "variant", exact_only: bool = True) -> str:
    """The relu-supplier variant of :func:`sweep_summary` with the highest mean ``accuracy`` (the paper's
    suppliers: the only candidates for "our method"); with ``exact_only``, short entropic/epoch-limited runs
    (variants setting ``epochs``) are left out. The mechanism screens (``STRICT_SCREEN`` and the ``REPAIRS``,
    screened or not) never count: they are labelled deviations from our method, not settings of it."""
    base = summary[key].str.split("+epochs:", regex=False).str[0]
    screens = base.isin([STRICT_SCREEN, *REPAIRS])
    rows = summary[(summary["supplier"] == "relu") & summary[key].str.startswith("hdm") & ~screens]
    if exact_only:
        rows = rows[~rows[key].str.contains("epochs:") & ~rows[key].str.startswith("hdm_")]
    if rows.empty:
        raise ValueError("no relu-supplier variant of our method in the sweep")
    return str(rows.sort_values(f"{accuracy}_mean", ascending=False, kind="stable")[key].iloc[0])


def distinct_from_ours(scale: str, variants: list[str], ours: str, dataset: str | None = None) -> list[str]:
    """``variants`` without those whose configuration at ``scale`` equals our method's (``ours``): the same run,
    which the notebooks already train as "our method"."""
    our_config = variant_preset(scale, ours, dataset=dataset)
    return [v for v in variants if variant_preset(scale, v, dataset=dataset) != our_config]


def our_setting(ours: str, sweep_table) -> str:
    """Table 1's "our method": ``ours`` itself, or for ``"auto"`` the best relu setting in the dynamics notebook's
    sweep table (``hdm_dynamics_sweep_<scale>.csv``, written before Table 1 by ``hdm.reproduce``); plain ``"hdm"``
    when that table does not exist."""
    if ours != "auto":
        return ours
    path = Path(sweep_table)
    if not path.is_file():
        return "hdm"
    summary = pd.read_csv(path)
    accuracy = sweep_accuracy(summary)
    return best_relu_variant(summary, accuracy)


# ---------------------------------------------------------------------------------------------------------
# Table 1's plan (issue 19): the split it reports, the models beside the paper's three, the decoders chosen on
# validation, the longer schedule and the paper's heatmap size.

#: Every decoder a model is tried with on validation (its supplier's centre of mass added for softplus/softmax).
DECODER_CANDIDATES = ("argmax_shift", "local_com3", "local_com", "local_com7")
#: The paper's operating point: 256 x 192 crops and 64 x 48 heatmaps, from the 128 x 96 pretraining (same start).
PAPER_RESOLUTION = "+input_hw:256,192+heatmap_hw:64,48+pretrain_hw:128,96"
#: The longer schedule of ``longer_baseline`` (40 epochs, lr x0.1 after 36 and 39).
LONGER = "+epochs:40+lr_steps:36,39"


def report_split(dataset: str | None, split: str = "auto") -> str:
    """The split Table 1 reports: "test" (held out, never used for a choice) for the synthetic data, "val" for
    coco and mpii (no labelled test split here); or ``split`` as given ("val" | "test")."""
    if split == "auto":
        return "test" if dataset is None else "val"
    if split not in ("val", "test"):
        raise ValueError(f'notebook parameter report_split={split!r}: expected "auto", "val" or "test"')
    return split


def table1_extra_models(scale: str, extra="auto", sweep_table=None) -> list[str]:
    """Distribution-matching models Table 1 trains on its seeds beside the paper's three: ``extra`` as given (a
    list of variant specs), or ``"auto"``: none at the default scale (its 20-minute budget); elsewhere softplus
    suppliers (the ablation that trains) and the best repair of the dynamics screens (``best_repair`` on the
    sweep table, when it screened any)."""
    if extra != "auto":
        if not isinstance(extra, (list, tuple)) or not all(isinstance(s, str) for s in extra):
            raise ValueError(f"notebook parameter extra_models={extra!r}: expected \"auto\" or a list of variant specs")
        return list(extra)
    if scale == "default":
        return []
    models = ["hdm+supplier:softplus"]
    path = Path(sweep_table) if sweep_table is not None else None
    if path is not None and path.is_file():
        summary = pd.read_csv(path)
        accuracy = sweep_accuracy(summary)
        repair = best_repair(summary, accuracy)
        if repair is not None:
            models.append(repair)
    return models


def decoder_candidates(spec: str, scale: str, decoders="auto") -> list[str]:
    """The decoders variant ``spec`` is tried with on validation (the best becomes its Table 1 decoder):
    ``decoders`` as given, or ``"auto"``: argmax + shift and the local centre of mass (3, 5 and 7 px windows),
    and for softplus or softmax suppliers their own centre of mass; at the default scale argmax + shift and
    local_com only (its 20-minute budget)."""
    if decoders != "auto":
        return list(decoders)
    if scale == "default":
        return ["argmax_shift", "local_com"]
    supplier = variant_value(spec, "supplier", "relu") if spec.startswith("hdm") else "relu"
    return list(DECODER_CANDIDATES) + ([f"{supplier}_com"] if supplier in ("softplus", "softmax") else [])


def choose_decoders(rows: pd.DataFrame, metric: str = "AP", own: dict[str, str] | None = None) -> dict[str, str]:
    """Per model, the decoder with the highest mean ``metric`` over seeds in ``rows`` (validation: one row per
    model, seed, decoder); a tie goes to the model's own decoder (``own``), then to the first listed."""
    means = rows.groupby(["model", "decoder"], sort=False)[metric].mean().reset_index()
    chosen = {}
    for model, group in means.groupby("model", sort=False):
        best = group[group[metric] == group[metric].max()]["decoder"].tolist()
        chosen[model] = (own or {}).get(model) if (own or {}).get(model) in best else best[0]
    return chosen


def longer_models(scale: str, longer="auto", candidates: dict[str, float] | None = None, ours: str = "hdm") -> list[str]:
    """Distribution-matching models trained on the longer schedule beside the Gaussian baseline (seed 0):
    ``longer`` as given (variant specs on their own schedule), or ``"auto"``: at the long scale our method and the
    best other distribution-matching model by validation ``candidates`` (spec -> mean validation AP), each with
    ``LONGER``; elsewhere none."""
    if longer != "auto":
        return list(longer or [])
    if scale != "long":
        return []
    best = [max(candidates, key=candidates.get)] if candidates else []
    return [f"{spec}{LONGER}" for spec in [ours, *best]]


def resolution_screen(scale: str, setting="auto") -> str | None:
    """The variant suffix of the heatmap-size screen (5 epochs at the long scale, from the same pretrained start):
    ``setting`` as given, None for none, or ``"auto"``: ``PAPER_RESOLUTION`` at the smoke and long scales, none at
    the default scale (its budget)."""
    if setting == "auto":
        return None if scale == "default" else PAPER_RESOLUTION
    return setting


def model_label(spec: str) -> str:
    """Table 1's name of a model: ``"ours, repaired: <what>"`` for a repair, else ``hdm.paper.label``."""
    return repair_label(spec) if "+".join(spec.split("+")[:2]) in REPAIRS else paper.label(spec)


def table1_pairs(methods: list[str]) -> list[tuple[str, str]]:
    """The paired comparisons of Table 1's ``methods`` (Table 1's keys: "gaussian", "dot", "hdm", then extra
    models by spec): each method against every one listed before it (dot − Gaussian, ours − Gaussian, ours − dot,
    softplus − Gaussian, ..., a repair − softplus)."""
    return [(later, earlier) for n, later in enumerate(methods) for earlier in methods[:n]]
