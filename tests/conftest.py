"""Settings shared by every test file: one thread per process, and the longest files first.

``make test`` runs the suite on two pytest-xdist workers, each taking whole files (``--dist loadfile``), so a file's
module fixtures (a trained smoke run, the smoke reproduction, a Lab server) are built once. Each worker, and every
process a test starts (notebook kernels, Lab servers, torchrun ranks), runs torch and Numba on one thread: with two
threads each, two workers and their subprocesses oversubscribe two cores, and the threads' spin-waiting at every
parallel kernel then costs many times the work (a smoke HDM run that takes 1 s alone took 4.5 s beside one busy
process and 96 s in the two-worker suite; with one Numba thread, 1.1 s beside the busy process).
``test_ot.py::test_the_parallel_kernels_give_the_same_numbers_on_one_and_two_threads`` still runs the parallel
kernels on two threads, in a process of its own. ``OMP_NUM_THREADS`` / ``NUMBA_NUM_THREADS`` set by the caller win.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# before torch and numba are imported, here or in any process a test starts (they read these once, at import)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

#: Files that take longest, started first so that neither worker is left with one of them at the end
#: (``--no-loadscope-reorder`` keeps this order; xdist would otherwise sort files by their number of tests).
FIRST = ("test_distributed.py", "test_jupyter_server.py", "test_engine.py")
#: Files that wait for the smoke reproduction, which runs beside the others from the start: they come last.
LAST = ("test_notebooks.py",)

#: ``python -m hdm.reproduce`` at the smoke scale, as README's "Two commands" give it (with two seeds, to see the
#: parameter reach the notebooks), run once per session from another working directory into temporary results and
#: runs folders (``smoke_results``).
SMOKE_REPRODUCE = [sys.executable, "-m", "hdm.reproduce", "--scale", "smoke", "--param", "seeds=[0, 1]"]
SMOKE_TIMEOUT_S = 1500
_smoke_process: subprocess.Popen | None = None


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST) + (name in LAST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept


def _smoke_folder(config) -> Path:
    """Where the smoke reproduction of this session runs: a folder all its processes share (pytest-xdist's workers
    have their temporary folders side by side in it), new for each session."""
    base = config._tmp_path_factory.getbasetemp()
    return (base.parent if hasattr(config, "workerinput") else base) / "smoke-reproduce"


def _start_smoke_reproduce(config) -> None:
    """Start the smoke reproduction in the background unless a process of this session already did; a thread
    writes its exit status to ``returncode`` when it ends."""
    global _smoke_process
    folder = _smoke_folder(config)
    try:
        folder.mkdir()  # the one process that creates it starts the run
    except FileExistsError:
        return
    (folder / "cwd").mkdir()
    env = {**os.environ, "HDM_RESULTS": str(folder / "results"), "HDM_RUNS": str(folder / "runs")}
    with open(folder / "output.txt", "wb") as output:
        _smoke_process = subprocess.Popen(SMOKE_REPRODUCE, cwd=folder / "cwd", env=env, stdout=output,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)  # its own group: stopped with its kernels

    def record(process=_smoke_process):
        code = process.wait()
        (folder / "returncode.tmp").write_text(str(code))
        (folder / "returncode.tmp").rename(folder / "returncode")

    threading.Thread(target=record, daemon=True).start()


def pytest_collection_finish(session):
    """As soon as the tests are known: the smoke reproduction starts if one of them needs it, and runs beside the
    other tests (with pytest-xdist, beside both workers) until ``smoke_results`` waits for it."""
    if session.config.option.collectonly:
        return
    if any("smoke_results" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_smoke_reproduce(session.config)


def pytest_sessionfinish(session, exitstatus):
    """The xdist worker that started the smoke reproduction waits for it (the other worker may still need it),
    unless the session was interrupted; a single pytest process, whose tests are done, stops it."""
    if _smoke_process is None or _smoke_process.poll() is not None:
        return
    worker = hasattr(session.config, "workerinput")
    if worker and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not session.shouldstop:
        try:
            _smoke_process.wait(SMOKE_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(_smoke_process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def smoke_results(pytestconfig) -> Path:
    """The results folder of ``python -m hdm.reproduce --scale smoke --param "seeds=[0, 1]"``, run once per session
    from another working directory (``HDM_RESULTS`` and ``HDM_RUNS`` in temporary folders), started when the tests
    were collected."""
    _start_smoke_reproduce(pytestconfig)  # a no-op when it was started
    folder = _smoke_folder(pytestconfig)
    deadline = time.monotonic() + SMOKE_TIMEOUT_S
    while not (folder / "returncode").exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the smoke reproduction did not end in {SMOKE_TIMEOUT_S} s: {folder / 'output.txt'}")
        time.sleep(0.5)
    output = (folder / "output.txt").read_text(errors="replace")
    assert (folder / "returncode").read_text() == "0", output[-6000:]
    return folder / "results"
