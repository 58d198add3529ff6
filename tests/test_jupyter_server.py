"""Real Jupyter servers on loopback, as `make lab` users get them.

One test starts `jupyter server` on 127.0.0.1 with a random token, opens a kernel through its REST API, sends each
code cell over the kernel's websocket channel (the path JupyterLab uses), checks every reply is "ok", and shuts the
server down. The notebook runs at smoke scale with its outputs redirected to a temporary folder.

The others start `jupyter lab` with the Makefile's `lab` options (jupyter/jupyter_server_config.py) on a copy of the
repository's layout and save notebooks the way Lab does: GET the model from /api/contents, PUT it back. Lab adds
the kernel's spec and language_info on opening, so an unedited notebook is saved with those; an edited one with
outputs and execution counts.
"""

from __future__ import annotations

import asyncio
import difflib
import filecmp
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat
import pytest

from loopback_server import free_port, request, shut_down

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "theorem1.ipynb"


def _wait_for(base: str, token: str, tries: int, what: str) -> None:
    """Poll the server's status every 0.5 s, ``tries`` times; fail the test if it never answers."""
    for _ in range(tries):
        try:
            request(f"{base}/api/status?token={token}")
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{what} did not start on loopback")


def _message(code: str, session: str) -> dict:
    return {
        "header": {"msg_id": uuid.uuid4().hex, "username": "test", "session": session,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }


async def _run_cells(ws_url: str, cells: list[str], timeout_s: float) -> list[str]:
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(ws_url)
    session, errors = uuid.uuid4().hex, []
    try:
        for code in cells:
            request = _message(code, session)
            connection.write_message(json.dumps(request))
            deadline = time.monotonic() + timeout_s
            while True:
                raw = await asyncio.wait_for(connection.read_message(), max(1.0, deadline - time.monotonic()))
                assert raw is not None, "the kernel's websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                    continue
                if msg["msg_type"] == "error":
                    errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
                if msg["msg_type"] == "execute_reply":
                    if msg["content"]["status"] != "ok":
                        errors.append(f"cell failed: {code[:80]!r}")
                    break
            if errors:
                break
    finally:
        connection.close()
    return errors


@pytest.mark.slow
def test_a_notebook_runs_through_a_jupyter_server_on_loopback(tmp_path):
    if not NOTEBOOK.exists():
        pytest.skip(f"{NOTEBOOK.name} not written yet")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "HDM_RESULTS": str(tmp_path / "results"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
         "--ServerApp.port_retries=0", "--allow-root"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base, token, 120, "jupyter server")
        kernel = request(f"{base}/api/kernels?token={token}", "POST", {"name": "python3"})
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        cells = ["scale = 'smoke'"]  # papermill-style parameter injection, after the parameters cell
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cells.append(cell.source)
                if "parameters" in cell.metadata.get("tags", []):
                    cells.append("scale = 'smoke'")
        ws_url = f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels?token={token}"
        errors = asyncio.run(_run_cells(ws_url, cells, timeout_s=300))
        assert errors == []
        request(f"{base}/api/kernels/{kernel['id']}?token={token}", "DELETE")
    finally:
        shut_down(server, base, token)
    assert server.returncode is not None


# ---------------------------------------------------------------------------------------------------------
# `make lab`: the repository's Jupyter configuration, through a real Lab server

# A copy of the repository's layout: the jupytext configs, one pair, an executed copy and a package module.
LAYOUT = ("jupytext.toml", "notebooks/jupytext.toml", "notebooks/fig1.py", "notebooks/fig1.ipynb",
          "results/notebooks/default/fig1.ipynb", "hdm/paths.py")


def make_lab_options() -> list[str]:
    """The options the Makefile's `lab` recipe passes to `jupyter lab` (paths relative to the repository)."""
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    line = next(line for line in recipe.splitlines() if "jupyter lab" in line)
    return [token for token in shlex.split(line) if token.startswith("--")]


def test_make_lab_is_rooted_at_the_repository_and_opens_on_notebooks():
    options = make_lab_options()
    assert "--config=jupyter/jupyter_server_config.py" in options
    assert "--ServerApp.root_dir=." in options and "--LabApp.default_url=/lab/tree/notebooks" in options


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`jupyter lab` with the Makefile's options, rooted at a copy of LAYOUT; ``lab.url(path)`` for the API."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "repo"
    for name in LAYOUT:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **{var: str(tmp / var.lower()) for var in (
        "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTER_CONFIG_DIR")}}
    options = [o for o in make_lab_options() if not o.startswith("--ServerApp.root_dir=")]
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", *options, f"--ServerApp.root_dir={root}", "--no-browser",
         f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         "--ServerApp.port_retries=0", "--allow-root"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base, token, 240, "jupyter lab")
        yield SimpleNamespace(root=root, base=base, token=token,
                              url=lambda path, query="": f"{base}/{path}?token={token}{query}")
    finally:
        shut_down(server, base, token)


def _fresh_pair(lab, name: str = "fig1") -> dict[str, bytes]:
    """Put the committed pair back in the server's root; returns its files' bytes."""
    files = {}
    for suffix in (".py", ".ipynb"):
        shutil.copy(ROOT / "notebooks" / f"{name}{suffix}", lab.root / "notebooks" / f"{name}{suffix}")
        files[suffix] = (lab.root / "notebooks" / f"{name}{suffix}").read_bytes()
    return files


def _opened_in_lab(lab, path: str) -> dict:
    """The notebook model as Lab holds it once its kernel started: the kernel's spec, and its language_info where
    none is recorded (an executed copy records the one of the kernel that ran it)."""
    notebook = request(lab.url(f"api/contents/{path}"))["content"]
    spec = request(lab.url("api/kernelspecs"))["kernelspecs"]["python3"]["spec"]
    notebook["metadata"]["kernelspec"] = {"display_name": spec["display_name"], "language": "python", "name": "python3"}
    notebook["metadata"].setdefault("language_info", {"name": "python", "version": sys.version.split()[0],
                                                      "mimetype": "text/x-python", "file_extension": ".py"})
    return notebook


def _save(lab, path: str, notebook: dict) -> None:
    request(lab.url(f"api/contents/{path}"), "PUT", {"type": "notebook", "format": "json", "content": notebook})


def _changed_lines(before: bytes, after: bytes) -> list[str]:
    diff = difflib.unified_diff(before.decode().splitlines(), after.decode().splitlines(), n=0, lineterm="")
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


@pytest.mark.slow
def test_opening_a_notebook_and_saving_it_unedited_changes_no_byte(lab):
    for path in ("notebooks/fig1.ipynb", "notebooks/fig1.py"):  # the .py opens as a notebook too (Lab's default)
        committed = _fresh_pair(lab)
        _save(lab, path, _opened_in_lab(lab, path))
        for suffix, content in committed.items():
            assert (lab.root / "notebooks" / f"fig1{suffix}").read_bytes() == content, f"saving {path} changed {suffix}"


@pytest.mark.slow
def test_an_edited_parameter_is_the_only_change_and_no_output_is_saved(lab):
    committed = _fresh_pair(lab)
    notebook = _opened_in_lab(lab, "notebooks/fig1.ipynb")
    parameters = next(c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert 'scale = "default"' in parameters["source"]
    parameters["source"] = parameters["source"].replace('scale = "default"', 'scale = "smoke"')
    for count, cell in enumerate(c for c in notebook["cells"] if c["cell_type"] == "code"):  # as after Run All
        cell.update(execution_count=count + 1, outputs=[{"output_type": "stream", "name": "stdout", "text": "ran\n"}])
        cell["metadata"]["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00Z"}
    _save(lab, "notebooks/fig1.ipynb", notebook)
    for suffix, before in committed.items():
        changed = _changed_lines(before, (lab.root / "notebooks" / f"fig1{suffix}").read_bytes())
        assert len(changed) == 2 and changed[0][1:].replace("default", "smoke", 1) == changed[1][1:], (suffix, changed)
    saved = nbformat.read(lab.root / "notebooks" / "fig1.ipynb", as_version=4)
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None and set(c.metadata) <= {"tags"} for c in code)
    assert set(saved.metadata) == {"jupytext", "kernelspec"}


@pytest.mark.slow
def test_lab_edits_reach_both_files_and_text_edits_reach_lab(lab):
    _fresh_pair(lab)
    py_path = lab.root / "notebooks" / "fig1.py"
    notebook = _opened_in_lab(lab, "notebooks/fig1.ipynb")
    notebook["cells"][-1]["source"] += "\nprint('edited in Lab')"
    notebook["cells"].append({"cell_type": "markdown", "id": "added-in-lab", "metadata": {},
                              "source": "A note added in Lab."})
    _save(lab, "notebooks/fig1.ipynb", notebook)
    py = py_path.read_text()
    assert "print('edited in Lab')" in py and "# A note added in Lab." in py
    cells = [[(c.cell_type, c.source, c.metadata.get("tags")) for c in jupytext.read(lab.root / "notebooks" / f)
              .cells] for f in ("fig1.py", "fig1.ipynb")]
    assert cells[0] == cells[1]
    # an edit of the .py in a text editor is what Lab shows next time it opens the notebook
    py_path.write_text(py.replace("n_picks = 4", "n_picks = 5"))
    later = time.time() + 10
    os.utime(py_path, (later, later))
    sources = [cell["source"] for cell in request(lab.url("api/contents/notebooks/fig1.ipynb"))["content"]["cells"]]
    assert any("n_picks = 5" in source for source in sources)


@pytest.mark.slow
def test_executed_copies_are_saved_as_they_are_and_never_paired(lab):
    path = "results/notebooks/default/fig1.ipynb"
    _save(lab, path, _opened_in_lab(lab, path))
    assert sorted(p.name for p in (lab.root / path).parent.iterdir() if not p.name.startswith(".")) == ["fig1.ipynb"]
    assert (lab.root / path).read_bytes() == (ROOT / path).read_bytes()  # outputs and all


@pytest.mark.slow
def test_package_modules_do_not_open_as_notebooks(lab):
    """Lab opens .py files with jupytext's viewer; outside notebooks/ jupytext refuses them (so an autosave can never
    rewrite a module), and they open in the editor as plain text."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        request(lab.url("api/contents/hdm/paths.py", "&type=notebook"))
    assert refused.value.code == 400
    assert request(lab.url("api/contents/hdm/paths.py"))["type"] == "file"
    assert (lab.root / "hdm" / "paths.py").read_bytes() == (ROOT / "hdm" / "paths.py").read_bytes()


@pytest.mark.slow
def test_lab_settings_and_start_page(lab):
    def default(plugin, key):
        return request(lab.url(f"lab/api/settings/{plugin}"))["schema"]["properties"][key]["default"]

    assert default("@jupyterlab/docmanager-extension:plugin", "defaultViewers") == {"python": "Jupytext Notebook"}
    assert default("@jupyterlab/apputils-extension:notification", "fetchNews") == "false"

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), Stay)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(lab.url(""), timeout=60)
    assert redirect.value.headers["Location"].split("?")[0].endswith("/lab/tree/notebooks")


def test_papermill_kernels_do_not_warn_about_tcp_on_loopback(tmp_path):
    """`make venv` installs jupyter/ipython_kernel_config.py, which drops the kernel's "running over TCP without
    encryption" warning on loopback, so a user's own `papermill` call is as quiet as `make reproduce`."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("the kernel config is installed by `make venv` into .venv")
    installed = Path(sys.prefix) / "etc" / "ipython" / "ipython_kernel_config.py"
    assert filecmp.cmp(ROOT / "jupyter" / "ipython_kernel_config.py", installed, shallow=False), "run make venv"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nbformat.write(notebook, tmp_path / "in.ipynb")
    done = subprocess.run([sys.executable, "-m", "papermill", "in.ipynb", "out.ipynb"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "without encryption" not in done.stdout + done.stderr
