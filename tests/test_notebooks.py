"""Every notebook executes at smoke scale with papermill and writes well-formed figures and tables.

The notebooks run once per session, as ``python -m hdm.reproduce --scale smoke`` from another working directory
(``smoke_results``, tests/conftest.py: started as soon as the tests are collected, beside the other tests). Outputs go
to a temporary results folder (HDM_RESULTS) and runs to a shared temporary cache (HDM_RUNS), so the committed
default-scale results are never touched. Also checks the committed notebooks: each is a jupytext pair,
``notebooks/<name>.py`` (percent format, what is reviewed and linted) and ``notebooks/<name>.ipynb`` (what papermill
and JupyterLab run), with the same cells, no outputs and one cell tagged "parameters"; the pairing is
notebooks/jupytext.toml's, not the notebooks' metadata, so executed copies are not paired; ``jupytext --sync`` leaves
them unchanged; cells define no functions (logic lives in ``hdm.analysis`` / ``hdm.plots``, where it is unit-tested).
Smoke-scale outputs are git-ignored. Saving through `make lab`'s server: tests/test_jupyter_server.py.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("theorem1", "hdm_dynamics", "fig2", "table1", "fig1", "fig3")
PAIRING = "ipynb,py:percent"
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"  # what Lab writes for the python3 kernel: opening changes nothing
EXPECTED = {
    "theorem1": {"figures": ["theorem1_eq5_violation_smoke"],
                 "tables": ["theorem1_eq6_steps_smoke", "theorem1_numeric_smoke", "theorem1_eq5_violation_smoke"]},
    "hdm_dynamics": {"figures": ["hdm_dynamics_suppliers_smoke", "hdm_dynamics_sweep_smoke", "hdm_dynamics_mechanism_smoke"],
                     "tables": ["hdm_dynamics_epochs_smoke", "hdm_dynamics_sweep_smoke", "hdm_dynamics_solver_smoke",
                                "hdm_dynamics_shift_smoke"]},
    "fig2": {"figures": ["fig2_smoke", "fig2_all_losses_smoke"],
             "tables": ["fig2_consistency_smoke", "fig2_consistency_runs_smoke"]},
    "table1": {"figures": ["table1_joint_errors_smoke", "table1_learning_curves_smoke", "table1_finding_placing_smoke"],
               "tables": ["table1_smoke", "table1_summary_smoke", "table1_ablations_smoke", "table1_runs_smoke",
                          "table1_paired_difference_smoke", "table1_misses_smoke",
                          "table1_solver_agreement_smoke", "table1_joint_errors_smoke", "table1_decoders_smoke",
                          "table1_paired_all_smoke", "table1_finding_placing_smoke",
                          "table1_finding_placing_paired_smoke", "table1_resolution_64x48_smoke"]},
    "fig1": {"figures": ["fig1_smoke"], "tables": ["fig1_coordinates_smoke"]},
    "fig3": {"figures": ["fig3_smoke", "fig3_joint_errors_smoke"],
             "tables": ["fig3_error_by_visibility_smoke", "fig3_coordinates_smoke"]},
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean_and_parameterised(name):
    notebook = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "strip outputs before committing: `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`")
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "scale = " in tagged[0].source


def _cells(path: Path) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in jupytext.read(path).cells]


def test_every_notebook_is_a_pair_and_nothing_else_is_there():
    assert {p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")} == set(NOTEBOOKS)
    assert {p.stem for p in NOTEBOOK_DIR.glob("*.py")} == set(NOTEBOOKS)  # no generator script beside them


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_py_and_ipynb_of_a_pair_hold_the_same_cells(name):
    py, ipynb = NOTEBOOK_DIR / f"{name}.py", NOTEBOOK_DIR / f"{name}.ipynb"
    assert _cells(py) == _cells(ipynb), f"{py.name} and {ipynb.name} differ: run `jupytext --sync {py}`"
    assert jupytext.config.load_jupytext_config(str(py)).default_formats(str(py)) == PAIRING  # notebooks/jupytext.toml
    for path in (py, ipynb):
        metadata = jupytext.read(path).metadata
        assert "formats" not in metadata["jupytext"], f"{path.name}: the pairing belongs in notebooks/jupytext.toml"
        assert metadata["kernelspec"] == {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": "python3"}
    assert set(nbformat.read(ipynb, as_version=4).metadata) == {"jupytext", "kernelspec"}  # no language_info
    header = re.search(r"jupytext_version: (\S+)", py.read_text()).group(1)
    assert header == jupytext.__version__, f"{py.name} was written by jupytext {header}, the pin is {jupytext.__version__}"


def test_jupytext_sync_is_a_no_op_on_the_committed_pairs(tmp_path):
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    tmp_path = tmp_path / "notebooks"
    tmp_path.mkdir()
    for path in NOTEBOOK_DIR.iterdir():
        if path.suffix in (".py", ".ipynb", ".toml"):
            shutil.copy(path, tmp_path / path.name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    now = time.time()
    for newer in (".py", ".ipynb"):  # a fresh checkout may leave either file of a pair the more recent
        for path in tmp_path.iterdir():
            os.utime(path, (now, now + 10 if path.suffix == newer else now))
        command = [sys.executable, "-m", "jupytext", "--sync", *sorted(str(p) for p in tmp_path.glob("*.py"))]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, completed.stderr
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, completed.stderr


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_cells_only_call_plot_and_display(name):
    """Logic that a test should reach (functions, lambdas, classes) lives in hdm, not in cells."""
    tree = ast.parse((NOTEBOOK_DIR / f"{name}.py").read_text())  # jupytext comments out the %magics
    defined = [type(node).__name__ for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))]
    assert not defined, f"{name}.py defines {defined}: move the logic into hdm.analysis or hdm.plots"
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules <= {"hdm", "matplotlib", "pandas", "numpy", "torch", "IPython"}


def test_executed_notebooks_are_not_paired():
    """Opening an executed copy in `make lab` must not create a .py beside it (jupytext pairs what its metadata says)."""
    executed = sorted((ROOT / "results" / "notebooks").glob("*/*.ipynb"))
    assert executed
    for path in executed:
        assert "formats" not in nbformat.read(path, as_version=4).metadata.get("jupytext", {}), path


def test_smoke_outputs_are_git_ignored_and_committed_scales_are_not():
    smoke = [f"results/{kind}/{name}.{ext}" for names in EXPECTED.values() for kind, exts in
             (("figures", ("png", "pdf")), ("tables", ("csv", "md"))) for name in names[kind] if name.endswith("_smoke")
             for ext in exts]
    smoke += [f"results/notebooks/smoke/{name}.ipynb" for name in NOTEBOOKS] + ["results/machine_smoke.json"]
    smoke += ["out.ipynb"]  # papermill's executed copy, when written to the repository root
    committed = [p.replace("_smoke", "_default").replace("/smoke/", "/default/") for p in smoke[:-1]]
    committed += [f"notebooks/{name}.ipynb" for name in NOTEBOOKS]
    committed += ["results/machine_long.json", "results/machine_paper.json"]  # machine_default.json: from smoke's
    local = [f"results/reproduction_check_{scale}.md" for scale in ("default", "long")]  # `hdm.reproduce --check`'s
    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT,
                          input="\n".join(smoke + local + committed), capture_output=True, text=True, timeout=60)
    if done.returncode == 128:
        pytest.skip(f"no git repository: {done.stderr.strip()}")
    assert sorted(done.stdout.split()) == sorted(smoke + local)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_outputs_exist_and_are_well_formed(smoke_results, name):
    path = smoke_results / "notebooks" / "smoke" / f"{name}.ipynb"
    executed = nbformat.read(path, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # as Jupyter's server saves it (opening it in `make lab` changes no byte), and not a jupytext pair
    assert path.read_text() == nbformat.writes(executed) + "\n"
    assert "formats" not in executed.metadata.get("jupytext", {})
    for figure in EXPECTED[name]["figures"]:
        assert (smoke_results / "figures" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (smoke_results / "figures" / f"{figure}.pdf").read_bytes()[:5] == b"%PDF-"
    for table in EXPECTED[name]["tables"]:
        frame = pd.read_csv(smoke_results / "tables" / f"{table}.csv")
        assert len(frame) > 0 and len(frame.columns) > 1
        markdown = (smoke_results / "tables" / f"{table}.md").read_text().splitlines()
        assert markdown[0].startswith("|") and set(markdown[1]) <= set("|:- ")
        assert len(markdown) == len(frame) + 2


@pytest.mark.slow
def test_params_reach_the_notebooks_that_declare_them(smoke_results):
    def injected(name):
        cells = nbformat.read(smoke_results / "notebooks" / "smoke" / f"{name}.ipynb", as_version=4).cells
        return next(c.source for c in cells if "injected-parameters" in c.metadata.get("tags", []))

    assert "seeds = [0, 1]" in injected("fig2") and "seeds = [0, 1]" in injected("table1")
    assert "seeds" not in injected("theorem1")  # declares only `seed`
    runs = pd.read_csv(smoke_results / "tables" / "table1_runs_smoke.csv")
    assert sorted(runs["seed"].unique()) == [0, 1]


def test_bad_params_are_clear_errors():
    from hdm.reproduce import parse_params

    assert parse_params(["seeds=[0, 1]", 'ablations=["hdm+supplier:softplus"]', "n_samples=4"]) == {
        "seeds": [0, 1], "ablations": ["hdm+supplier:softplus"], "n_samples": 4}
    for bad in (["seeds"], ["1x=2"], ["scale=paper"], ["seeds=[0, 1"]):
        with pytest.raises(SystemExit):
            parse_params(bad)


@pytest.mark.slow
def test_table1_reports_every_method_beside_the_paper(smoke_results):
    table = pd.read_csv(smoke_results / "tables" / "table1_smoke.csv")
    assert set(table["source"]) == {"ours (smoke, test)", "paper (COCO, W48)"}  # reported on the held-out split
    ours, theirs = (table[table["source"] == s]["method"].tolist() for s in ("ours (smoke, test)", "paper (COCO, W48)"))
    assert theirs == ["Gaussian-smoothed heatmap", "dot-annotated heatmap", "Our method"]
    assert ours[:3] == theirs and len(ours) == 5  # then softplus suppliers and the best repair, labelled as such
    assert ours[3] == "Our method (supplier softplus)" and ours[4].startswith("ours, repaired: ")
    paper_ap = table[table["source"].str.startswith("paper")].set_index("method")["AP"].astype(float)
    assert paper_ap["Our method"] == 78.8 and paper_ap["dot-annotated heatmap"] == 46.6


@pytest.mark.slow
def test_a_bad_parameter_stops_the_notebook_before_it_writes_anything(tmp_path):
    """papermill -p scale huge: the check cell right after the parameters cell fails, naming the parameter, and no
    figure or table is written."""
    results = tmp_path / "results"
    env = {**os.environ, "HDM_RESULTS": str(results), "HDM_RUNS": str(tmp_path / "runs")}
    command = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "table1.ipynb"), str(tmp_path / "out.ipynb"),
               "-p", "scale", "huge"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "notebook parameter scale='huge'" in done.stdout + done.stderr
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]  # papermill adds markdown cells around errors
    failed = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.get("outputs", []))]
    tagged = [i for i, c in enumerate(code) if "injected-parameters" in c.metadata.get("tags", [])]
    assert failed == [tagged[0] + 1]  # the first code cell after the (injected) parameters
    assert not results.exists() or not any(results.rglob("*.csv"))


def test_unknown_reproduce_params_are_refused_with_the_declared_keys():
    from hdm.reproduce import check_params

    check_params({"seeds": [0], "n_picks": 2}, ["fig2", "fig1"])  # each declared by one of them
    with pytest.raises(SystemExit, match=r"--param seedz: declared by none.*fig2: .*seeds"):
        check_params({"seedz": [0]}, ["fig2"])
    with pytest.raises(SystemExit, match="n_picks"):
        check_params({"n_picks": 2}, ["fig2"])  # fig1's, not fig2's


def test_an_executed_copy_keeps_what_a_rerun_reproduces_and_drops_times_paths_and_progress(tmp_path):
    # what papermill writes into an executed copy: its times, nbclient's, absolute paths, and the kernel's stderr
    # carrying training progress and tqdm bars beside a real warning
    from hdm.reproduce import REPO_ROOT, _as_jupyter_writes_it

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["papermill"] = {"start_time": "2026-12-07T22:56:26", "end_time": "2026-12-07T22:56:33",
                                      "duration": 6.8, "input_path": str(REPO_ROOT / "notebooks" / "fig1.ipynb"),
                                      "output_path": "results/notebooks/default/fig1.ipynb", "version": "2.7.0"}
    injected = nbformat.v4.new_code_cell("scale = 'default'", metadata={"tags": ["injected-parameters"]})
    cell = nbformat.v4.new_code_cell("train(...)")
    cell.metadata["papermill"] = {"start_time": "x", "end_time": "y", "duration": 1.4, "status": "completed"}
    cell.metadata["execution"] = {"iopub.status.busy": "2026-12-07T22:56:27.171489Z"}
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="our method: hdm\n"),
        nbformat.v4.new_output("stream", name="stderr", text="  22:46:44 train dot-default-8ce3: start of 10\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\rsynthetic test:  26%|██▌       | 78/300 [00:01<00:02]"),
        nbformat.v4.new_output("stream", name="stderr",
                               text="  22:47:19   epoch 3/10  PCK 0.2 (12 s)\nUserWarning: a real warning\n"),
    ]
    notebook.cells = [injected, cell]
    path = tmp_path / "executed.ipynb"
    nbformat.write(notebook, path)
    _as_jupyter_writes_it(path)
    again = nbformat.read(path, as_version=4)
    assert again.metadata["papermill"] == {"input_path": "notebooks/fig1.ipynb",
                                           "output_path": "results/notebooks/default/fig1.ipynb", "version": "2.7.0"}
    assert again.cells[0].id == "injected-parameters"  # papermill's random id, made stable
    assert again.cells[1].metadata == {"papermill": {"status": "completed"}}
    assert [(o.name, o.text) for o in again.cells[1].outputs] == [("stdout", "our method: hdm\n"),
                                                                  ("stderr", "UserWarning: a real warning\n")]
    before = path.read_text()
    _as_jupyter_writes_it(path)  # idempotent: a second pass changes no byte
    assert path.read_text() == before
