"""Speed of the exact grid OT (:func:`hdm.ot.emd_grid`) against a loop of POT's ``ot.emd2``, per input family.

    .venv/bin/python benchmarks/_ssp_profile.py                          # all families, N = 544, 64x48
    .venv/bin/python benchmarks/_ssp_profile.py --families trained --repeats 20 --pot-repeats 1
    .venv/bin/python benchmarks/_ssp_profile.py --baseline HEAD --threads 1 --pot-repeats 0  # vs a git revision

Input families: those of ``benchmarks/loss_speed.py`` (N problems = 32 images x 17 joints, the relu suppliers of
the loss, demanders of the joints), at 64x48 unless ``--size`` (other sizes: the same generators on that grid).

Prints per family, in ms (minimum over repeats: other processes may share the CPU; with ``--threads 1`` the CPU
time of the thread, which other processes disturb far less than wall time): ``emd_grid`` (the public call, input
checks included), ``kernel`` (``hdm._ssp.solve_grid`` alone, on numpy arrays), optionally the baseline kernel
(timed in turns with ours) and POT's loop, the ratio POT / kernel and the largest value difference to POT.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import ot as pot
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from any directory without installing
from hdm import _ssp, ot  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import loss_speed  # noqa: E402

FAMILIES = loss_speed.FAMILIES


def make_problems(family: str, n: int, height: int, width: int, seed: int = 0):
    """Suppliers (n, H, W) summing to 1 and demanders: positions (n, 4, 2) int64 (x, y), masses (n, 4)."""
    saved = loss_speed.HEIGHT, loss_speed.WIDTH, loss_speed.BATCH, loss_speed.JOINTS
    loss_speed.HEIGHT, loss_speed.WIDTH, loss_speed.BATCH, loss_speed.JOINTS = height, width, n, 1
    try:
        rng = np.random.default_rng([seed, FAMILIES.index(family)])
        joints = loss_speed.make_joints(family, rng)
        heat = torch.tensor(loss_speed.heatmap_family(family, joints, rng), dtype=torch.float32)
        supply, positions, masses = loss_speed.grid_problems(heat, torch.tensor(joints, dtype=torch.float32))
    finally:
        loss_speed.HEIGHT, loss_speed.WIDTH, loss_speed.BATCH, loss_speed.JOINTS = saved
    return torch.from_numpy(supply).view(n, height, width), positions, masses


def best_time(fn, repeats: int, clock=time.perf_counter) -> float:
    """Minimum time of fn() over repeats, in ms (after one untimed call: compilation, caches)."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return 1e3 * min(times)


def interleaved(fns, repeats: int, clock=time.perf_counter) -> list[float]:
    """Minimum time (ms) of each fn over repeats, the fns taking turns (a change of load hits them alike)."""
    for fn in fns:
        fn()
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            best[i] = min(best[i], clock() - start)
    return [1e3 * t for t in best]


def load_baseline(rev: str):
    """hdm/_ssp.py as of git revision ``rev``, imported as a separate module (numba cache in a temp dir)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:hdm/_ssp.py"], check=True, capture_output=True,
                            text=True).stdout
    folder = tempfile.mkdtemp(prefix="ssp_baseline_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / "ssp_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("ssp_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kernel_call(module, heat, positions, masses):
    """A closure running module.solve_grid on the problems, as :func:`hdm.ot.emd_grid` would call it."""
    n, height, width = heat.shape
    supply = np.ascontiguousarray(heat.reshape(n, -1).numpy())
    demand = masses.numpy().copy()
    pos = positions.numpy().astype(np.int64)
    table = ot._offset_cost_table((height - 1) ** 2 + (width - 1) ** 2, "euclidean")
    a, b, value = np.empty_like(supply), np.empty_like(demand), np.empty(n)
    chunks = ot._n_chunks(n)
    return lambda: module.solve_grid(supply, width, pos, demand, table, a, b, value, chunks)


def pot_loop(heat, positions, masses):
    n, height, width = heat.shape
    cost = ot.grid_cost(height, width, positions).numpy()
    supply = heat.reshape(n, -1).numpy()
    demand = masses.numpy()
    return lambda: np.array([pot.emd2(supply[i], demand[i], cost[i]) for i in range(n)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--n", type=int, default=544, help="problems per batch (32 images x 17 joints)")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 48), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of emd_grid / the kernels")
    parser.add_argument("--pot-repeats", type=int, default=1, help="timed POT loops (0: no POT)")
    parser.add_argument("--baseline", metavar="REV", help="also time hdm/_ssp.py of this git revision (interleaved)")
    parser.add_argument("--threads", type=int, help="numba threads (default: numba's); 1 times CPU time of the thread")
    args = parser.parse_args(argv)
    height, width = args.size
    if args.threads:
        numba.set_num_threads(args.threads)
    # one thread: CPU time of this thread (robust to other processes); more: wall time
    clock = time.thread_time if numba.get_num_threads() == 1 else time.perf_counter
    baseline = load_baseline(args.baseline) if args.baseline else None
    print(f"N = {args.n}, {height}x{width}, {numba.get_num_threads()} numba threads; times in ms "
          f"({'thread CPU time' if clock is time.thread_time else 'wall time'}, min of {args.repeats})")
    for family in args.families:
        heat, positions, masses = make_problems(family, args.n, height, width)
        ours_ms = best_time(lambda: ot.emd_grid(heat, positions, masses), args.repeats, clock)
        fns = [kernel_call(_ssp, heat, positions, masses)]
        if baseline is not None:
            fns.append(kernel_call(baseline, heat, positions, masses))
        times = interleaved(fns, args.repeats, clock)
        kernel_ms = times[0]
        base = f"  {args.baseline} kernel {times[1]:6.1f} (x{times[1] / kernel_ms:4.2f})" if baseline else ""
        pot = ""
        if args.pot_repeats:
            run_pot = pot_loop(heat, positions, masses)
            pot_ms = best_time(run_pot, args.pot_repeats, clock)
            error = np.abs(ot.emd_grid(heat, positions, masses)[0].numpy() - run_pot()).max()
            flag = "" if error < 1e-9 else "  <-- MISMATCH"
            pot = f"  POT {pot_ms:7.0f}  POT/kernel x{pot_ms / kernel_ms:5.0f}  max|diff| {error:.0e}{flag}"
        print(f"{family:12s} emd_grid {ours_ms:6.1f}  kernel {kernel_ms:6.1f}{base}{pot}")


if __name__ == "__main__":
    main()
