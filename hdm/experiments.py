"""What runs: the experiment plans the notebooks follow at each scale (which variants the dynamics notebook
screens and for how long, Table 1's longer baseline, which setting is "our method", which variants are the same
run as ours). They decide what is trained, never a run's numbers (a run's identity is its config)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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


def repair_label(variant: str) -> str:
    """Table 1's label of a repaired variant: ``"ours, repaired: <what>"``."""
    base = variant.split("+epochs:")[0]
    if base not in REPAIRS:
        raise ValueError(f"{variant!r} is not one of the repairs {sorted(REPAIRS)}")
    return f"ours, repaired: {REPAIRS[base]}"


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
    accuracy = next(c[: -len("_mean")] for c in summary.columns if c.endswith("_mean"))
    return best_relu_variant(summary, accuracy)
