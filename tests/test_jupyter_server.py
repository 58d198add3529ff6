"""A real Jupyter server on loopback executes one of our notebooks cell by cell, as `make lab` users do.

The test starts `jupyter server` on 127.0.0.1 with a random token, opens a kernel through its REST API, sends each
code cell over the kernel's websocket channel (the path JupyterLab uses), checks every reply is "ok", and shuts the
server down. The notebook runs at smoke scale with its outputs redirected to a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from loopback_server import free_port, request, shut_down

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "theorem1.ipynb"


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
        for _ in range(120):
            try:
                request(f"{base}/api/status?token={token}")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("jupyter server did not start on loopback")
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
