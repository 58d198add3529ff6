"""Speed of the distribution matching loss, side by side in one run, with ratios.

For one training-sized batch (B=32 images x K=17 joints, 64x48 heatmaps = 544 OT problems) and each family of
heatmaps (:data:`FAMILIES`) it times, in one process:
- ``ours``: ``HDMLoss`` (exact solver) forward + backward;
- ``MSE``: ``HeatmapMSELoss`` forward + backward including the Gaussian targets (what a baseline step pays), and
  ``MSE loss only``: the same with the targets built beforehand (the loss alone, the lower bound of the baseline);
- ``POT loop``: a Python loop over POT's exact ``ot.emd2`` on the same normalised suppliers (cost matrices
  prebuilt, untimed; run once: it is slow);
and prints the ratios POT / ours, ours / MSE and ours / MSE loss only, and the largest |ours - POT| over the 544
values.

``--threads 1 2`` adds a table of thread scaling: the numba kernel alone (``hdm._ssp.solve_grid`` on numpy
arrays) and the whole loss with each number of numba threads (``numba.set_num_threads``; torch's threads are
left as they are). ``--sinkhorn`` adds the entropic solver (slow on the CPU); ``--pot-batch`` POT's batched
log-Sinkhorn ``ot.solve_batch`` (tens of seconds). With ``--device cuda`` (and CUDA available) it also times the
host <-> device copies the exact loss implies for the batch (heatmaps to pinned host memory, gradient back),
with non-blocking copies; on a machine without CUDA that part is skipped with a note.

    python benchmarks/loss_speed.py                          # CPU, every family, thread scaling 1 and 2
    python benchmarks/loss_speed.py --families trained uniform --repeats 5 --skip-pot
    python benchmarks/loss_speed.py --device cuda            # on a GPU (POT and the exact kernel on the CPU)

Times are the minimum over ``--repeats`` runs (other processes may share the CPU; ``--cpu-time`` runs everything
on one thread and times the thread's CPU time, which they disturb far less). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import platform
import time

import numba
import numpy as np
import ot as pot
import torch

from hdm import _ssp
from hdm import ot as hot
from hdm.loss import HDMLoss, HeatmapMSELoss, suppliers
from hdm.targets import demanders, gaussian_heatmaps

BATCH, JOINTS, HEIGHT, WIDTH = 32, 17, 64, 48

FAMILIES = ("untrained", "noisy-blob", "mid-training", "trained", "uniform", "adversarial")
DESCRIPTIONS = {
    "untrained": "an initialised head: N(0, 1e-3) noise, relu keeps half the pixels",
    "noisy-blob": "a Gaussian blob (sigma 2 px, ~0.5 px off) plus N(0, 0.05) noise: many small far masses",
    "mid-training": "a blurred blob (sigma 3 px, ~1.5 px off, peak 0.5) plus N(0, 0.05) noise",
    "trained": "a sharp blob (sigma 2 px, ~0.5 px off) plus N(0, 0.005) noise",
    "uniform": "U(0, 1) everywhere: every cell boundary crosses mass",
    "adversarial": "many tiny masses over the whole map (U(0,1)^4), joints on borders and corners",
}


def make_joints(name: str, rng: np.random.Generator) -> np.ndarray:
    """Joints (B, K, 2) in heatmap px (x, y): uniform in the pixel box, 1/8 on pixel centres (zero bilinear
    weights); for "adversarial", on the borders and corners of the map."""
    upper = np.array([WIDTH - 1, HEIGHT - 1], dtype=np.float64)
    joints = rng.random((BATCH, JOINTS, 2)) * upper
    flat = joints.reshape(-1, 2)
    flat[: len(flat) // 8] = np.round(flat[: len(flat) // 8])
    if name == "adversarial":
        side = rng.integers(0, 6, len(flat))
        for axis in (0, 1):  # sides 0-1: a vertical border, 2-3: a horizontal one, 4-5: a corner
            on = (side // 2 == axis) | (side >= 4)
            flat[on, axis] = np.where(rng.random(on.sum()) < 0.5, 0.0, upper[axis])
    rng.shuffle(flat)
    return joints


def heatmap_family(name: str, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Predicted heatmaps (B, K, H, W) of one kind (see :data:`DESCRIPTIONS`), around ``joints`` (B, K, 2)."""
    shape = joints.shape[:2] + (HEIGHT, WIDTH)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]

    def blob(offset_px: float, sigma: float) -> np.ndarray:
        centre = joints + rng.normal(0, offset_px, joints.shape)
        dx = xs - centre[..., 0, None, None]
        dy = ys - centre[..., 1, None, None]
        return np.exp(-(dx**2 + dy**2) / (2 * sigma**2))

    if name == "untrained":
        return 1e-3 * rng.standard_normal(shape)
    if name == "noisy-blob":
        return blob(0.5, 2.0) + 0.05 * rng.standard_normal(shape)
    if name == "mid-training":
        return blob(1.5, 3.0) * 0.5 + 0.05 * rng.standard_normal(shape)
    if name == "trained":
        return blob(0.5, 2.0) + 0.005 * rng.standard_normal(shape)
    if name == "uniform":
        return rng.random(shape)
    if name == "adversarial":
        return rng.random(shape) ** 4
    raise ValueError(f"family must be one of {FAMILIES}, got {name!r}")


def grid_problems(pred: torch.Tensor, joints: torch.Tensor):
    """The loss's OT problems in float64 numpy: supply (N, P), positions (N, 4, 2), demand (N, 4)."""
    supply = suppliers(pred.detach().double().cpu().flatten(0, 1)).flatten(1).numpy()
    positions, masses = demanders(joints.detach().double().cpu().flatten(0, 1)[None], (HEIGHT, WIDTH))
    return np.ascontiguousarray(supply), positions[0], masses[0]


CLOCK = time.perf_counter  # --cpu-time: time.thread_time (one torch and one numba thread)


def best_time(fn, repeats: int, device: torch.device) -> float:
    """Minimum time of fn() over repeats, in ms (wall time, or the thread's CPU time with --cpu-time)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = CLOCK()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(CLOCK() - start)
    return 1e3 * min(times)


def kernel_call(supply: np.ndarray, positions: torch.Tensor, masses: torch.Tensor):
    """A closure running the numba kernel on the problems, as :func:`hdm.ot.emd_grid` calls it."""
    pos = positions.numpy().astype(np.int64)
    demand = masses.numpy().copy()
    table = hot._offset_cost_table((HEIGHT - 1) ** 2 + (WIDTH - 1) ** 2, "euclidean")
    a, b, value = np.empty_like(supply), np.empty_like(demand), np.empty(len(supply))

    def run():
        _ssp.solve_grid(supply, WIDTH, pos, demand, table, a, b, value, hot._n_chunks(len(supply)))
    return run


def transfer_ms(pred: torch.Tensor, repeats: int) -> tuple[float, float] | None:
    """Copies the exact loss implies on a GPU: heatmaps device -> pinned host, gradient host (pinned) -> device,
    non-blocking, one synchronisation each; None without CUDA."""
    if pred.device.type != "cuda" or not torch.cuda.is_available():
        return None
    host = torch.empty(pred.shape, dtype=pred.dtype, pin_memory=True)
    grad_host = torch.empty(pred.shape, dtype=pred.dtype, pin_memory=True)
    grad_device = torch.empty_like(pred)
    down = best_time(lambda: host.copy_(pred, non_blocking=True), repeats, pred.device)
    up = best_time(lambda: grad_device.copy_(grad_host, non_blocking=True), repeats, pred.device)
    return down, up


def run_family(name: str, args, rng: np.random.Generator, device: torch.device) -> dict:
    joints_np = make_joints(name, rng)
    pred = torch.tensor(heatmap_family(name, joints_np, rng), dtype=torch.float32, device=device)
    joints = torch.tensor(joints_np, dtype=torch.float32, device=device)
    visible = torch.ones(BATCH, JOINTS, device=device)
    weight = torch.ones(BATCH, JOINTS, device=device)
    exact, mse = HDMLoss(), HeatmapMSELoss()

    def step(loss_fn):
        def run():
            p = pred.clone().requires_grad_(True)
            loss_fn(p).backward()
        return run

    def mse_loss(p):
        target, target_weight = gaussian_heatmaps(joints, visible, (HEIGHT, WIDTH))
        return mse(p, target, target_weight)

    target, target_weight = gaussian_heatmaps(joints, visible, (HEIGHT, WIDTH))
    steps = {
        "ours_ms": step(lambda p: exact(p, joints, weight)),
        "mse_ms": step(mse_loss),
        "mse_only_ms": step(lambda p: mse(p, target, target_weight)),
    }
    for run in steps.values():
        run()  # compile / warm up
    row = {"family": name}
    # ours and the MSE take turns, so that a change in the machine's load hits them alike
    times = {key: [] for key in steps}
    for _ in range(args.repeats):
        for key, run in steps.items():
            times[key].append(best_time(run, 1, device))
    row.update({key: min(values) for key, values in times.items()})
    ours_step = steps["ours_ms"]

    supply, positions, masses = grid_problems(pred, joints)
    kernel = kernel_call(supply, positions, masses)
    threads = numba.get_num_threads()
    for t in args.threads:
        numba.set_num_threads(t)
        kernel()
        row[f"kernel_{t}"] = best_time(kernel, args.repeats, device)
        row[f"ours_{t}"] = best_time(ours_step, args.repeats, device)
    numba.set_num_threads(threads)
    if args.sinkhorn:
        entropic = HDMLoss(solver="sinkhorn", sinkhorn_eps=0.05)
        row["sinkhorn_ms"] = best_time(step(lambda p: entropic(p, joints, weight)), 1, device)
    copies = transfer_ms(pred, args.repeats) if args.device.startswith("cuda") else None
    if copies is not None:
        row["d2h_ms"], row["h2d_ms"] = copies

    ours, _, _ = hot.emd_grid(torch.from_numpy(supply).view(-1, HEIGHT, WIDTH), positions, masses)
    if not args.skip_pot:
        cost = hot.grid_cost(HEIGHT, WIDTH, positions).numpy()
        demand = masses.numpy()
        start = CLOCK()
        pot_values = np.array([pot.emd2(supply[i], demand[i], cost[i]) for i in range(len(supply))])
        row["pot_ms"] = 1e3 * (CLOCK() - start)
        row["max_diff"] = float(np.abs(ours.numpy() - pot_values).max())
        if args.pot_batch:
            start = time.perf_counter()
            pot.solve_batch(cost, reg=0.05, a=supply, b=demand, method="log_sinkhorn", max_iter=1000, tol=1e-5)
            row["pot_batch_ms"] = 1e3 * (time.perf_counter() - start)
    return row


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_tables(rows: list[dict], args) -> None:
    extra = []
    if args.sinkhorn:
        extra.append(("Sinkhorn ε=0.05 ms", "sinkhorn_ms", ".0f"))
    if args.pot_batch:
        extra.append(("POT solve_batch ms", "pot_batch_ms", ".0f"))
    head = ["heatmaps", "ours ms", "MSE ms", "ours / MSE", "MSE loss only ms", "ours / MSE loss only", "POT `emd2` loop ms",
            "POT / ours", "max \\|ours − POT\\|"]
    print("| " + " | ".join(head + [e[0] for e in extra]) + " |")
    print("|" + "---|" * (len(head) + len(extra)))
    for r in rows:
        pot_ms = r.get("pot_ms")
        cells = [
            r["family"], f"{r['ours_ms']:.1f}", f"{r['mse_ms']:.1f}", f"{r['ours_ms'] / r['mse_ms']:.2f}",
            f"{r['mse_only_ms']:.1f}", f"{r['ours_ms'] / r['mse_only_ms']:.2f}",
            _fmt(pot_ms, ".0f"), _fmt(None if pot_ms is None else pot_ms / r["ours_ms"], ".0f") + ("×" if pot_ms else ""),
            _fmt(r.get("max_diff"), ".1e"),
        ]
        cells += [_fmt(r.get(key), spec) for _, key, spec in extra]
        print("| " + " | ".join(cells) + " |")
    if args.threads:
        print()
        head = ["heatmaps"] + [f"kernel {t} thr ms" for t in args.threads] + [f"ours {t} thr ms" for t in args.threads]
        if len(args.threads) > 1:
            head += [f"kernel ×{args.threads[0]}→{args.threads[-1]}", f"ours ×{args.threads[0]}→{args.threads[-1]}"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            cells = [r["family"]] + [f"{r[f'kernel_{t}']:.1f}" for t in args.threads]
            cells += [f"{r[f'ours_{t}']:.1f}" for t in args.threads]
            if len(args.threads) > 1:
                first, last = args.threads[0], args.threads[-1]
                cells += [f"{r[f'kernel_{first}'] / r[f'kernel_{last}']:.2f}", f"{r[f'ours_{first}'] / r[f'ours_{last}']:.2f}"]
            print("| " + " | ".join(cells) + " |")
    if args.device.startswith("cuda"):
        print()
        if any("d2h_ms" in r for r in rows):
            for r in rows:
                print(f"# {r['family']}: heatmaps device->pinned host {r['d2h_ms']:.2f} ms, gradient pinned host->device "
                      f"{r['h2d_ms']:.2f} ms (non_blocking, {BATCH}x{JOINTS}x{HEIGHT}x{WIDTH} float32)")
        else:
            print("# host<->device copies: skipped (CUDA is not available)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                        help="numba thread counts for the scaling table (none: no table)")
    parser.add_argument("--skip-pot", action="store_true", help="skip POT's emd2 loop (seconds per family)")
    parser.add_argument("--pot-batch", action="store_true", help="also time POT's solve_batch (tens of seconds)")
    parser.add_argument("--skip-pot-batch", action="store_true", help="(default; kept for old command lines)")
    parser.add_argument("--sinkhorn", action="store_true", help="also time the entropic solver (slow on a CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-time", action="store_true",
                        help="one torch and one numba thread, times in CPU time of the thread (robust to other "
                             "processes on a shared machine; the thread table has the 1-thread column only)")
    args = parser.parse_args(argv)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
        torch.set_num_threads(1)
        numba.set_num_threads(1)
        args.threads = [1]
    args.threads = [t for t in args.threads if 1 <= t <= numba.config.NUMBA_NUM_THREADS]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("# CUDA is not available: running on the CPU, host<->device copies skipped")
        device = torch.device("cpu")
    print(
        f"# B={BATCH} K={JOINTS} heatmap {HEIGHT}x{WIDTH}; device {device}; torch threads {torch.get_num_threads()}, "
        f"numba threads {numba.get_num_threads()}; {platform.processor() or platform.machine()}; min of {args.repeats}; "
        f"{'CPU time of the thread' if args.cpu_time else 'wall time'}"
    )
    rows = []
    for name in args.families:
        print(f"# {name}: {DESCRIPTIONS[name]}", flush=True)
        rng = np.random.default_rng([args.seed, FAMILIES.index(name)])  # the same problems whatever --families
        rows.append(run_family(name, args, rng, device))
    print_tables(rows, args)


if __name__ == "__main__":
    main()
