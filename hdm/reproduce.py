"""Run every notebook with papermill at one scale: the project's main job (``make reproduce``).

    python -m hdm.reproduce                 # default scale, every notebook, into results/ (= make reproduce)
    python -m hdm.reproduce --scale smoke   # what CI runs
    python -m hdm.reproduce --only fig2 table1
    python -m hdm.reproduce --scale paper --param "seeds=[0]" --param "ablations=[]"
    python -m hdm reproduce ...             # the same through the hdm command line
    python -m hdm.reproduce --check         # after a rerun: its tables against the committed ones (= make check)

Executed notebooks go to ``results/notebooks/<scale>/``; each notebook writes its own figures and tables under
``results/`` (paths from :mod:`hdm.paths`; smoke-scale ones are git-ignored). Training runs are cached, so a second
call only re-plots.
``--param KEY=VALUE`` (VALUE in YAML) sets a parameter in every notebook that declares it; a key that no
chosen notebook declares is an error listing the keys each one declares. Parameters are checked before any
notebook runs (``hdm.config.check_parameters``, as each notebook's first cell does): a bad one prints one line,
``hdm reproduce: error: ...``, and exits with status 2. Progress: a line when each notebook and each training run
starts and ends, and one per epoch (``HDM_PROGRESS=1`` in the kernels' environment). At the default, long and
paper scales the verdict table and the README's result tables are then rebuilt from ``results/tables/``
(``hdm.analysis.verdicts``: ``results/verdicts.md``, ``results/readme/``). ``--check`` runs no notebook: it compares
the scale's tables with the committed ones (``hdm.analysis.check``) and exits with status 1 only when a verdict
changes or a deterministic number differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import yaml

from hdm.config import SCALES, check_parameters
from hdm.machine import machine_info
from hdm import paths
from hdm.paths import REPO_ROOT, RESULTS

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
# Order matters only for speed: the first notebooks that need training runs create them for the others.
NOTEBOOKS = ("theorem1", "hdm_dynamics", "fig2", "table1", "fig1", "fig3")


class ParamError(SystemExit):
    """A bad ``--param`` (one-line message). ``main`` prints it as ``hdm reproduce: error: ...`` and exits with
    status 2; raised elsewhere it ends the process with the message, as any ``SystemExit`` with text does."""


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no notebook {path}; available: {sorted(p.stem for p in NOTEBOOKS_DIR.glob('*.ipynb'))}")
    return path


def run_notebook(name: str, scale: str = "default", parameters: dict | None = None, output_dir: Path | None = None) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with papermill; returns the executed copy's path. ``parameters`` the
    notebook does not declare in its parameters cell are left out."""
    import papermill

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    declared = declared_parameters(name)
    parameters = {k: v for k, v in (parameters or {}).items() if k in declared}
    output_dir = Path(output_dir or RESULTS / "notebooks" / scale)
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / f"{name}.ipynb"
    os.environ.setdefault("HDM_PROGRESS", "1")  # the kernel inherits it: training prints progress lines
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbclient's transport/deprecation warnings are noise here
        papermill.execute_notebook(
            str(notebook_path(name)),
            str(output),
            parameters={"scale": scale, **parameters},
            cwd=str(REPO_ROOT),
            kernel_name="python3",
            progress_bar=False,
            # the kernel's own log: errors only (not its "running over TCP without encryption" warning on loopback)
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    _as_jupyter_writes_it(output)
    return output


#: Progress on stderr that a rerun changes: ``hdm`` training lines ("  HH:MM:SS ...") and tqdm bars.
_PROGRESS = re.compile(r"^  \d\d:\d\d:\d\d .*$|^.*\r.*$|^.*\|[^|]*\| *\d+/\d+ \[.*\]$")
#: Execution metadata a rerun changes: papermill's and nbclient's times.
_TIMINGS = ("start_time", "end_time", "duration")


def _as_jupyter_writes_it(path: Path) -> None:
    """Rewrite an executed copy as Jupyter's server saves notebooks (papermill leaves out the final newline), and
    unpaired: opening and saving it in `make lab` then changes no byte and creates no .py beside it. What changes
    from one execution to the next is left out — execution times, the clone's absolute paths, training progress and
    progress bars on stderr — so that rerunning ``make reproduce`` on the machine that produced the committed
    results leaves ``git status`` clean (the per-epoch numbers are in each run's metrics.csv)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.get("jupytext", {}).pop("formats", None)  # the source's pairing is notebooks/jupytext.toml's
    run = notebook.metadata.get("papermill", {})
    for key in _TIMINGS:
        run.pop(key, None)
    for key in ("input_path", "output_path"):
        if key in run:
            run[key] = os.path.relpath(run[key], REPO_ROOT) if Path(run[key]).is_absolute() else run[key]
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"  # papermill gives the cell it inserts a random id
        cell.metadata.pop("execution", None)
        for key in _TIMINGS:
            cell.metadata.get("papermill", {}).pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in map(_without_progress, cell.outputs) if o is not None]
    nbformat.write(notebook, path)


def _without_progress(output):
    """A stream output without its progress lines (None when nothing else is left); other outputs as they are."""
    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return output
    lines = [line for line in output["text"].split("\n") if not _PROGRESS.match(line)]
    text = "\n".join(lines)
    if not text.strip():
        return None
    output["text"] = text
    return output


def declared_parameters(name: str) -> dict:
    """The parameters notebook ``name`` declares in its ``parameters`` cell (papermill's inspection)."""
    import papermill

    return papermill.inspect_notebook(str(notebook_path(name)))


def check_params(parameters: dict, names) -> None:
    """Refuse (SystemExit, one line) parameters that none of the notebooks ``names`` declares."""
    declared = {name: set(declared_parameters(name)) - {"scale"} for name in names}
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(parameters) - known)
    if unknown:
        listing = "; ".join(f"{name}: {', '.join(sorted(keys))}" for name, keys in declared.items())
        raise ParamError(f"--param {', '.join(unknown)}: declared by none of the notebooks run ({listing})")


def parse_params(pairs: list[str]) -> dict:
    """``["seeds=[0, 1]", "ablations=[]"]`` -> ``{"seeds": [0, 1], "ablations": []}`` (values parsed as YAML)."""
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ParamError(f"--param expects KEY=VALUE with a Python name as KEY, got {pair!r}")
        if key.strip() == "scale":
            raise ParamError("set the scale with --scale, not --param")
        try:
            parameters[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            reason = " ".join(str(getattr(error, "problem", None) or error).split())
            raise ParamError(
                f"--param {key}: VALUE must be YAML (e.g. 'seeds=[0, 1]'), got {value!r}: {reason}"
            ) from None
    return parameters


def record_machine(path: Path, names: list[str]) -> dict:
    """Write what produced a scale's tables (named by ``--check``) to ``path``: ``machine_info()`` and the notebooks
    run. A call with only some notebooks on the same machine and settings adds them to those already recorded (in
    ``NOTEBOOKS`` order); on another machine or with other settings the record starts anew. No date: a rerun on the
    same machine rewrites the same file (git log says when it was committed). Returns the record."""
    info = machine_info()
    record = {**info, "notebooks": list(names)}
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = {}
    if isinstance(before, dict) and {k: v for k, v in before.items() if k != "notebooks"} == info:
        ran = set(before.get("notebooks", [])) | set(names)
        record["notebooks"] = [name for name in NOTEBOOKS if name in ran]
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hdm reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="default", choices=SCALES)
    parser.add_argument("--only", nargs="+", choices=NOTEBOOKS, help="run only these notebooks")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="notebook parameter, VALUE in YAML (e.g. 'seeds=[0, 1]'); repeatable")
    parser.add_argument("--check", action="store_true",
                        help="run no notebook: compare the scale's tables in results/tables/ with the committed ones; "
                             "exit 1 only when a verdict changes or a deterministic number differs")
    parser.add_argument("--against", default="HEAD", metavar="REF",
                        help="with --check: the git revision (default HEAD) or folder of tables to compare with")
    args = parser.parse_args(argv)
    if args.check:
        if args.only or args.param:
            parser.error("--check runs no notebook: it takes --scale and --against only")
        from hdm.analysis import check

        return check.main(["--scale", args.scale, "--against", args.against])
    names = args.only or [n for n in NOTEBOOKS if (NOTEBOOKS_DIR / f"{n}.ipynb").exists()]
    try:
        parameters = parse_params(args.param)
        check_params(parameters, names)
        check_parameters(**parameters)  # what each notebook's first cell checks, before any notebook runs
    except (ParamError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(error).split())}\n")
    total = time.perf_counter()
    for name in names:
        start = time.perf_counter()
        print(f"{time.strftime('%H:%M:%S')} {name}: start ({args.scale})", file=sys.stderr, flush=True)
        try:
            output = run_notebook(name, args.scale, parameters)
        except Exception as exc:  # papermill's PapermillExecutionError names the cell and the error
            cell = f" in cell {exc.exec_count}" if getattr(exc, "exec_count", None) else ""
            error = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", None) else f"{type(exc).__name__}: {exc}"
            raise SystemExit(f"{parser.prog}: {name} failed after {time.perf_counter() - start:.0f} s{cell}: "
                             f"{' '.join(error.split())[:500]} (the executed notebook, with its traceback: "
                             f"{RESULTS / 'notebooks' / args.scale / (name + '.ipynb')})") from None
        print(f"{time.strftime('%H:%M:%S')} {name}: done in {time.perf_counter() - start:.1f} s -> {output}",
              file=sys.stderr, flush=True)
    print(f"reproduce ({args.scale}): {len(names)} notebooks in {time.perf_counter() - total:.1f} s")
    from hdm.analysis import tables, verdicts

    if args.scale in tables.RESULT_SCALES:
        record_machine(paths.RESULTS / f"machine_{args.scale}.json", names)
        written = verdicts.write_results()
        print(f"verdicts: {written[0]} and {len(written) - 1} README tables under {written[0].parent / 'readme'}; "
              f"against the committed results: python -m hdm.reproduce --check --scale {args.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
