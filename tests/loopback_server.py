"""Helpers for the tests that talk to a Jupyter server on loopback: a free port, JSON requests that never go
through a proxy, and a clean shutdown."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: never through a proxy


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, method: str = "GET", body: dict | None = None, timeout: float = 60) -> dict:
    """A JSON request to ``url`` (loopback, no proxy); the parsed reply ({} when empty)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with _DIRECT.open(req, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else {}


def shut_down(server: subprocess.Popen, base: str, token: str) -> None:
    """Ask the server at ``base`` to shut down, then wait for its process (killed after 30 s)."""
    try:
        request(f"{base}/api/shutdown?token={token}", "POST")
    except OSError:
        pass
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
