"""A rerun's tables against the committed ones: which numbers agree, within what tolerance, and whether a verdict moved.

Every number of ``results/tables/*_<scale>.csv`` (and the scale-free oracle table) is compared by kind:

- **seeds** (a mean over n seeds with its std, or per-seed rows averaged here): agrees when the difference of the
  means lies within the 95 % Welch interval of that difference (its half-width is the tolerance), never below an
  absolute floor (``FLOOR``, in the number's unit; for numbers printed rounded, one unit of the last digit);
- **deterministic** (Theorem 1's algebra and targets, the oracle, the paper's numbers): equal within ``EXACT``
  (absolute and relative); strings and booleans exactly;
- **single run** (seed-0 models, one-seed variants, numbers pooled over seeds): no spread to judge them by, so
  reported with their difference, never failed; **text** (picks, labels) reported; **setting** (seed counts) reported;
- **verdict**: each claim's verdict (:func:`hdm.analysis.claims.verdict_rows`) from both sets of tables.

The check fails (exit status 1) only when a verdict changes or a deterministic number differs: numbers that move
within (or, 1 in 20 by chance, just outside) their seed spread are what another CPU gives.

    python -m hdm.analysis.check --scale default                # results/tables against git's HEAD
    python -m hdm.analysis.check --scale long --against v1.0    # another commit, or a folder of tables
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from hdm import paths
from hdm.analysis.claims import verdict_rows
from hdm.machine import describe, machine_info

#: Absolute floor of a seed tolerance (the number's unit: 1e-3 = 0.1 AP point for fractions).
FLOOR = 1e-3
#: Deterministic numbers agree within this, absolute and relative.
EXACT = 1e-9
CONFIDENCE = 0.95
COLUMNS = ["table", "row", "number", "kind", "committed", "rerun", "tolerance", "agrees", "fails"]


@dataclass(frozen=True)
class Spec:
    """How one table's numbers compare: ``how`` is "summary" (``X_mean``, ``X_std``, ``n`` columns), "per_seed"
    (one row per seed, averaged per ``keys``), "paired" (a ``mean`` with ``std`` and ``n``), "formatted" ("m ± s"
    strings with an ``n`` column), "single" (single-run numbers) or "exact" (deterministic); ``exact`` names the
    deterministic columns of other tables; ``condense``: one line per column (large deterministic tables)."""

    how: str
    keys: tuple[str, ...]
    exact: tuple[str, ...] = ()
    condense: bool = False


#: Per table (name without ``_<scale>``). Tables not listed are not compared (per-epoch curves: their last epochs
#: are in ``hdm_dynamics_sweep``).
SPECS = {
    "table1_summary": Spec("summary", ("method",)),
    "table1_misses": Spec("summary", ("method",)),
    "fig2_consistency": Spec("summary", ("method", "loss")),
    "hdm_dynamics_sweep": Spec("summary", ("variant",)),
    "table1_runs": Spec("per_seed", ("method",)),
    "fig2_consistency_runs": Spec("per_seed", ("method", "loss")),
    "table1_paired_difference": Spec("paired", ("metric",)),
    "table1_paired_all": Spec("paired", ("comparison", "metric")),
    "table1_finding_placing": Spec("per_seed", ("method",), exact=("joints_mean",)),
    "table1_finding_placing_paired": Spec("paired", ("comparison", "metric")),
    "table1_decoders": Spec("summary", ("model", "decoder")),
    "table1_resolution_64x48": Spec("single", ("model", "size")),
    "hdm_dynamics_shift": Spec("single", ("variant", "shift")),
    "table1_ablations": Spec("formatted", ("model", "decoder")),
    "table1": Spec("formatted", ("method", "source")),
    "theorem1_numeric": Spec("single", ("targets",), exact=("C", "eq5_gap", "residual", "residual / (2 x eq.5 gap)")),
    "fig3_error_by_visibility": Spec("single", ("model", "visibility"), exact=("flag", "joints", "share_of_joints")),
    "table1_joint_errors": Spec("single", ("method",), exact=("joints",)),
    "table1_solver_agreement": Spec("single", ("model", "eps"), exact=("joints",)),
    "table1_longer_baseline": Spec("single", ("model", "from_epoch", "to_epoch")),
    "hdm_dynamics_solver": Spec("single", ("variant", "seed")),
    "fig1_coordinates": Spec("single", ("sample index", "joint")),
    "fig3_coordinates": Spec("single", ("sample index", "joint")),
    # Theorem 1's algebra: the same numbers at every scale, written per scale so that a smoke run leaves the
    # committed ones alone
    "theorem1_eq6_steps": Spec("exact", ("step",), condense=True),
    "theorem1_eq5_violation": Spec("exact", ("sigma", "offset_x", "offset_y"), condense=True),
}
#: Tables without a scale: deterministic whatever the machine.
SCALE_FREE = {
    "oracle": Spec("exact", ("dataset", "heatmap", "kind", "decoder", "window"), condense=True),
}
#: Tables committed without a scale before they were written per scale: read under their old name when a folder
#: (an older commit's tables) lacks the ``_<scale>`` one.
FORMERLY_SCALE_FREE = ("theorem1_eq6_steps", "theorem1_eq5_violation")


def welch_tolerance(std_a: float, n_a: int, std_b: float, n_b: int, floor: float = FLOOR,
                    confidence: float = CONFIDENCE) -> float:  # fmt: skip
    """Half-width of the Welch ``confidence`` interval of a difference of two means (std, n each; n >= 2), or
    ``floor`` if larger (both spreads 0 give ``floor``)."""
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    if va + vb == 0:
        return floor
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    return max(float(student_t.ppf(0.5 + confidence / 2, df) * np.sqrt(va + vb)), floor)


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if np.isnan(value) else f"{value:.6g}"
    return str(value)


def _equal(a, b) -> bool:
    """Deterministic equality: numbers within ``EXACT`` (NaN equals NaN), anything else exactly."""
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return (np.isnan(fa) and np.isnan(fb)) or abs(fa - fb) <= EXACT * max(1.0, abs(fa))


def _row(table, row, number, kind, committed, rerun, tolerance="", agrees=None, fails=False) -> dict:
    return dict(zip(COLUMNS, (table, row, number, kind, _fmt(committed), _fmt(rerun), tolerance, agrees, fails)))


def _seed_row(table, row, number, a: tuple, b: tuple, floor: float = FLOOR) -> dict:
    """(mean, std, n) committed and rerun: a seeds row, or a single-run row when either has one seed or no std."""
    (ma, sa, na), (mb, sb, nb) = a, b
    if min(na, nb) < 2 or np.isnan(sa) or np.isnan(sb):
        return _row(table, row, number, "single run", ma, mb, f"Δ {_fmt(mb - ma)}")
    tol = welch_tolerance(sa, na, sb, nb, floor)
    return _row(table, row, number, "seeds", f"{_fmt(ma)} ± {_fmt(sa)} (n={na})", f"{_fmt(mb)} ± {_fmt(sb)} (n={nb})",
                f"±{_fmt(tol)}", bool(abs(mb - ma) <= tol * (1 + 1e-9)))


def _keyed(frame: pd.DataFrame, keys) -> dict:
    """Row label ("a / b" of the key columns; a repeated label gets " #2", " #3", ...) -> the row as a dict."""
    out = {}
    for key, row in zip(frame[list(keys)].itertuples(index=False), frame.to_dict("records")):
        label = base = " / ".join(_fmt(v) for v in key)
        repeat = 1
        while label in out:
            repeat += 1
            label = f"{base} #{repeat}"
        out[label] = row
    return out


def _aggregate(frame: pd.DataFrame, keys) -> pd.DataFrame:
    """Per-seed rows -> ``X_mean``, ``X_std``, ``n`` per ``keys`` (numeric columns other than keys and seed)."""
    values = [c for c in frame.columns if c not in (*keys, "seed") and pd.api.types.is_numeric_dtype(frame[c])]
    grouped = frame.groupby(list(keys), sort=False)[values]
    out = grouped.agg(["mean", "std"])
    out.columns = [f"{v}_{s}" for v, s in out.columns]
    out["n"] = grouped.size()
    return out.reset_index()


def _parse(cell) -> tuple[float, float, float] | None:
    """A formatted cell "m ± s" or "m" -> (m, s or NaN, one unit of its last digit); None if not a number."""
    text = str(cell).replace("−", "-")
    mean, _, std = text.partition(" ± ")
    try:
        m, s = float(mean), float(std) if std else float("nan")
    except ValueError:
        return None
    decimals = len(mean.partition(".")[2])
    return m, s, 10.0**-decimals


def compare_table(name: str, spec: Spec, a: pd.DataFrame | None, b: pd.DataFrame | None) -> list[dict]:
    """The rows of :func:`compare_tables` for one table (``a`` committed, ``b`` rerun; None when missing)."""
    exact_table = spec.how == "exact"
    if a is None or b is None:
        where = "the rerun" if b is None else "the committed results"
        return [_row(name, "", "", "deterministic" if exact_table else "table", "" if a is None else "present",
                     "" if b is None else "present", f"missing in {where}", False, exact_table)]
    if spec.how == "per_seed":
        a, b = _aggregate(a, spec.keys), _aggregate(b, spec.keys)
    ra, rb = _keyed(a, spec.keys), _keyed(b, spec.keys)
    out = [_row(name, key, "", "deterministic" if exact_table else "row", "present" if key in ra else "",
                "present" if key in rb else "", "missing", False, exact_table)
           for key in [*ra, *[k for k in rb if k not in ra]] if key not in ra or key not in rb]
    keys = [k for k in ra if k in rb]
    columns = [c for c in a.columns if c in b.columns and c not in spec.keys]
    if exact_table and spec.condense:
        for column in columns:
            pairs = [(ra[k][column], rb[k][column]) for k in keys]
            differ = sum(not _equal(x, y) for x, y in pairs)
            out.append(_row(name, f"all {len(keys)} rows", column, "deterministic", f"{len(pairs)} values",
                            f"{differ} differ", f"{EXACT:g}", differ == 0, differ > 0))
        return out
    for key in keys:
        x, y = ra[key], rb[key]
        for column in columns:
            out += _compare_cell(name, spec, key, column, x, y)
    return out


def _compare_cell(name, spec, key, column, x, y) -> list[dict]:
    va, vb = x[column], y[column]
    if spec.how == "exact" or column in spec.exact or (spec.how == "formatted" and "paper" in str(x.get("source"))):
        ok = _equal(va, vb)
        return [_row(name, key, column, "deterministic", va, vb, f"{EXACT:g}", ok, not ok)]
    if column == "n":
        return [_row(name, key, column, "setting", va, vb, "", va == vb)]
    if spec.how in ("summary", "per_seed"):
        if column.endswith("_mean"):
            base = column[: -len("_mean")]
            return [_seed_row(name, key, base, (va, x.get(f"{base}_std", np.nan), int(x["n"])),
                              (vb, y.get(f"{base}_std", np.nan), int(y["n"])))]
        if column.endswith("_std"):
            return []
    elif spec.how == "paired":
        if column != "mean":
            return []
        return [_seed_row(name, key, "mean difference", (va, x["std"], int(x["n"])), (vb, y["std"], int(y["n"])))]
    elif spec.how == "formatted":
        pa, pb = _parse(va), _parse(vb)
        if "n" not in x and " ± " in str(va):
            return []  # a printed copy of a seed summary without its seed count (table1_<scale>): compared there
        if pa is not None and pb is not None:
            return [_seed_row(name, key, column, (pa[0], pa[1], int(x.get("n", 1))), (pb[0], pb[1], int(y.get("n", 1))),
                              max(pa[2], pb[2]))]
    if isinstance(va, (int, float, np.number)) and isinstance(vb, (int, float, np.number)):
        return [_row(name, key, column, "single run", va, vb, f"Δ {_fmt(vb - va)}")]
    return [_row(name, key, column, "text", va, vb, "", str(va) == str(vb))]


def compare_tables(committed_dir, rerun_dir, scale: str) -> pd.DataFrame:
    """Every number of the ``scale`` tables (and the scale-free ones), committed vs rerun, and every claim's verdict.

    Returns one row per number: table, row, number, kind (verdict / deterministic / seeds / single run / text /
    setting), committed, rerun, tolerance, agrees (None where nothing is tested), fails (a verdict changed or a
    deterministic number differs)."""
    committed_dir, rerun_dir = Path(committed_dir), Path(rerun_dir)

    def read(folder, name):
        path, base = folder / f"{name}.csv", name.removesuffix(f"_{scale}")
        if not path.is_file() and base in FORMERLY_SCALE_FREE:
            path = folder / f"{base}.csv"
        return pd.read_csv(path) if path.is_file() else None

    rows = []
    for stem, spec in [*((f"{s}_{scale}", spec) for s, spec in SPECS.items()), *SCALE_FREE.items()]:
        a, b = read(committed_dir, stem), read(rerun_dir, stem)
        if a is not None or b is not None:
            rows += compare_table(stem, spec, a, b)
    va = verdict_rows(scale, committed_dir).set_index("claim")
    vb = verdict_rows(scale, rerun_dir).set_index("claim")
    for claim in [*va.index, *[c for c in vb.index if c not in va.index]]:
        was = va.loc[claim, "verdict"] if claim in va.index else "(none)"
        now = vb.loc[claim, "verdict"] if claim in vb.index else "(none)"
        rows.append(_row("verdicts", claim, "verdict", "verdict", was, now, "same", was == now, was != now))
    order = {"verdict": 0, "deterministic": 1, "seeds": 2, "single run": 3, "setting": 4, "text": 5}
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values("kind", key=lambda k: k.map(lambda v: order.get(v, 6)), kind="stable").reset_index(drop=True)


def summary_line(frame: pd.DataFrame) -> str:
    """One line: pass/fail and the counts per kind."""
    count = frame["kind"].value_counts()
    seeds = frame[frame["kind"] == "seeds"]
    outside = int((seeds["agrees"] == False).sum())  # noqa: E712 (None = not tested)
    failed = int(frame["fails"].sum())
    verdict_flips = int((frame["fails"] & (frame["kind"] == "verdict")).sum())
    head = "**FAIL**" if failed else "**pass**"
    return (f"{head}: {verdict_flips} of {count.get('verdict', 0)} verdicts changed, {failed - verdict_flips} "
            f"deterministic numbers differ (of {count.get('deterministic', 0)} checks); {len(seeds)} seed-aggregated "
            f"numbers, {len(seeds) - outside} within their tolerance, {outside} outside (at 95 % about 1 in 20 is "
            f"expected outside by chance; they do not fail the check); {count.get('single run', 0)} single-run "
            f"numbers and {count.get('text', 0)} texts reported, not tested.")


def report(frame: pd.DataFrame, scale: str, against: str, machines: dict | None = None) -> str:
    """The Markdown report: what was compared, the machines (``{"committed": info, "rerun": info}``, see
    ``hdm.machine``), the summary line, then one row per number."""
    lines = [f"# Reproduction check, {scale} scale", ""]
    if machines is not None:
        lines += ["| tables | machine |", "|---|---|"]
        lines += [f"| {name} | {describe(info)} |" for name, info in machines.items()] + [""]
    lines += [
             f"The tables in `results/tables/` against {against}. Seed-aggregated numbers (mean ± std over n seeds) "
             f"agree when their difference lies within the {100 * CONFIDENCE:.0f} % Welch interval of the difference of means "
             f"(the tolerance; at least {FLOOR:g} in the number's unit, or one unit of the last printed digit); "
             f"deterministic numbers (Theorem 1's algebra and targets, the oracle, the paper's numbers) must agree "
             f"within {EXACT:g}; single-run numbers have no spread to be judged by. Written by "
             "`python -m hdm.analysis.check`.", "", summary_line(frame), ""]
    shown = frame.assign(agrees=frame["agrees"].map({True: "yes", False: "**no**", None: ""}).fillna(""))
    shown = shown.drop(columns="fails").astype(str).apply(lambda c: c.str.replace("|", "\\|", regex=False))
    lines.append("| " + " | ".join(shown.columns) + " |")
    lines.append("|" + "---|" * len(shown.columns))
    lines += ["| " + " | ".join(r) + " |" for r in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def committed_tables(ref: str, dest) -> Path:
    """Copy the CSV tables of ``results/tables/`` at git revision ``ref`` into ``dest``; returns ``dest``."""
    dest = Path(dest)
    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", ref, "--", "results/tables/"], cwd=paths.REPO_ROOT,
                             capture_output=True, text=True)
    if listing.returncode != 0:
        raise ValueError(f"git cannot read results/tables at {ref!r}: {listing.stderr.strip()}")
    for name in listing.stdout.split():
        if name.endswith(".csv"):
            shown = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=paths.REPO_ROOT, capture_output=True, check=True)
            (dest / Path(name).name).write_bytes(shown.stdout)
    return dest


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _committed_machine(against: str, scale: str) -> dict | None:
    """The ``results/machine_<scale>.json`` beside the committed tables (a folder's parent, or git's ``against``)."""
    name = f"machine_{scale}.json"
    if Path(against).is_dir():
        return _read_json(Path(against).parent / name)
    shown = subprocess.run(["git", "show", f"{against}:results/{name}"], cwd=paths.REPO_ROOT, capture_output=True,
                           text=True)  # fmt: skip
    try:
        return json.loads(shown.stdout) if shown.returncode == 0 else None
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hdm.analysis.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="default")
    parser.add_argument("--against", default="HEAD", help="a git revision (default HEAD) or a folder of tables")
    parser.add_argument("--tables", type=Path, default=paths.TABLES, help="the rerun's tables (default results/tables)")
    parser.add_argument("--out", type=Path, help="the report (default results/reproduction_check_<scale>.md)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if Path(args.against).is_dir():
            committed, against = Path(args.against), f"`{args.against}`"
        else:
            try:
                committed = committed_tables(args.against, tmp)
            except ValueError as error:
                parser.exit(2, f"{parser.prog}: error: {error}\n")
            rev = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=paths.REPO_ROOT,
                                 capture_output=True, text=True).stdout.strip()
            against = f"git's `{args.against}` ({rev})"
        if not list(committed.glob(f"*_{args.scale}.csv")):
            parser.exit(2, f"{parser.prog}: error: no {args.scale}-scale tables at {against}\n")
        frame = compare_tables(committed, args.tables, args.scale)
        machines = {"committed": _committed_machine(args.against, args.scale),
                    "rerun": _read_json(paths.RESULTS / f"machine_{args.scale}.json") or machine_info()}  # fmt: skip
    text = report(frame, args.scale, against, machines)
    out = args.out or paths.RESULTS / f"reproduction_check_{args.scale}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"{summary_line(frame)}\nreport: {out}", file=sys.stderr)
    return 1 if frame["fails"].any() else 0


if __name__ == "__main__":
    raise SystemExit(main())
