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

# before torch and numba are imported, here or in any process a test starts (they read these once, at import)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

#: Files that take longest, started first so that neither worker is left with one of them at the end
#: (``--no-loadscope-reorder`` keeps this order; xdist would otherwise sort files by their number of tests).
FIRST = ("test_notebooks.py", "test_distributed.py", "test_jupyter_server.py", "test_engine.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept
