"""Speed of the exact grid OT (:func:`hdm.ot.emd_grid`) against a loop of POT's ``ot.emd2``, per input family.

    .venv/bin/python benchmarks/_ssp_profile.py                          # all families, N = 544, 64x48
    .venv/bin/python benchmarks/_ssp_profile.py --families blob --repeats 20 --pot-repeats 1
    .venv/bin/python benchmarks/_ssp_profile.py --baseline HEAD          # also time hdm/_ssp.py of a git revision

Input families (N problems = 32 images x 17 joints, heatmaps H x W, joints uniform in the pixel box, 1/8 of
them on pixel centres so that some bilinear weights are 0):
- ``noise``: relu(randn), an untrained network's heatmap;
- ``mid``: a Gaussian blob (sigma 2 px) 0.5-1.5 px off the joint, plus small noise, then relu (mid-training);
- ``blob``: a clean Gaussian blob (sigma 2 px) on the joint (trained network);
- ``uniform``: a constant map (every cell boundary crosses mass).

Prints per family, in ms (minimum over repeats: other processes may share the CPU): ``emd_grid`` (the public
call, input checks included), ``kernel`` (``hdm._ssp.solve_grid`` alone, on numpy arrays), optionally the
baseline kernel, and POT's loop; the ratio POT / emd_grid; and the largest value difference to POT (< 1e-6).
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

import numpy as np
import ot as pot
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from any directory without installing
from hdm import _ssp, ot  # noqa: E402
from hdm.targets import demanders  # noqa: E402

FAMILIES = ("noise", "mid", "blob", "uniform")
SIGMA = 2.0  # px, the blob's standard deviation


def make_problems(family: str, n: int, height: int, width: int, seed: int = 0):
    """Heatmaps (n, H, W) summing to 1 and demanders: positions (n, 4, 2) int64 (x, y), masses (n, 4)."""
    rng = np.random.default_rng(seed)
    joints = rng.random((n, 2)) * [width - 1, height - 1]
    joints[: n // 8] = np.round(joints[: n // 8])  # some joints on pixel centres: zero bilinear weights
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    if family == "noise":
        heat = np.maximum(rng.standard_normal((n, height, width)), 0.0)
    elif family in ("mid", "blob"):
        centre = joints.copy()
        if family == "mid":
            angle = rng.random(n) * 2 * np.pi
            centre += np.stack([np.cos(angle), np.sin(angle)], 1) * rng.uniform(0.5, 1.5, (n, 1))
        sq = (xs[None] - centre[:, 0, None, None]) ** 2 + (ys[None] - centre[:, 1, None, None]) ** 2
        heat = np.exp(-sq / (2 * SIGMA**2))
        if family == "mid":
            heat = np.maximum(heat + 0.02 * rng.standard_normal(heat.shape), 0.0)
    elif family == "uniform":
        heat = np.ones((n, height, width))
    else:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    heat[heat.reshape(n, -1).sum(1) == 0, 0, 0] = 1.0
    heat /= heat.sum((1, 2), keepdims=True)
    positions, masses = demanders(torch.from_numpy(joints)[:, None], (height, width))
    return torch.from_numpy(heat), positions[:, 0], masses[:, 0]


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of fn() over repeats, in ms (after one untimed call: compilation, caches)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


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
    parser.add_argument("--pot-repeats", type=int, default=1, help="timed POT loops")
    parser.add_argument("--baseline", metavar="REV", help="also time hdm/_ssp.py of this git revision")
    args = parser.parse_args(argv)
    height, width = args.size
    baseline = load_baseline(args.baseline) if args.baseline else None
    print(f"N = {args.n}, {height}x{width}, {torch.get_num_threads()} torch / numba threads; times in ms")
    for family in args.families:
        heat, positions, masses = make_problems(family, args.n, height, width)
        ours_ms = best_time(lambda: ot.emd_grid(heat, positions, masses), args.repeats)
        kernel_ms = best_time(kernel_call(_ssp, heat, positions, masses), args.repeats)
        base = ""
        if baseline is not None:
            base_ms = best_time(kernel_call(baseline, heat, positions, masses), max(1, args.repeats // 3))
            base = f"  {args.baseline} kernel {base_ms:7.1f} (x{base_ms / kernel_ms:4.1f} slower)"
        run_pot = pot_loop(heat, positions, masses)
        pot_ms = best_time(run_pot, args.pot_repeats)
        error = np.abs(ot.emd_grid(heat, positions, masses)[0].numpy() - run_pot()).max()
        flag = "" if error < 1e-6 else "  <-- MISMATCH"
        print(f"{family:8s} emd_grid {ours_ms:6.1f}  kernel {kernel_ms:6.1f}  POT {pot_ms:8.0f}"
              f"  POT/emd_grid x{pot_ms / ours_ms:6.1f}  POT/kernel x{pot_ms / kernel_ms:6.1f}  "
              f"max|diff| {error:.0e}{flag}{base}")


if __name__ == "__main__":
    main()
