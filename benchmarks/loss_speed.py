"""Speed of the distribution matching loss, side by side in one run, with ratios.

For one training-sized batch (B=32 images x K=17 joints, 64x48 heatmaps = 544 OT problems) it times:
- ``HDMLoss`` forward + backward, exact solver (ours) and entropic solver;
- a Python loop over POT's exact ``ot.emd2`` on the same normalised suppliers (cost matrices prebuilt, untimed);
- POT's batched ``ot.solve_batch`` with log-Sinkhorn (reg 0.05), unless ``--skip-pot-batch``;
- ``HeatmapMSELoss`` forward + backward including the Gaussian targets (the baseline a training step pays),
and checks that the exact values agree with POT (max abs difference), for several families of heatmaps:
untrained network output, mid-training and trained-like blobs, and uniform maps (worst case).

    python benchmarks/loss_speed.py                 # CPU, every family
    python benchmarks/loss_speed.py --device cuda   # the same on a GPU (POT still on the CPU)

Times are the minimum over ``--repeats`` runs (the POT loop runs once: it is slow). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import platform
import time

import numba
import numpy as np
import ot as pot
import torch

from hdm import ot as hot
from hdm.loss import HDMLoss, HeatmapMSELoss, suppliers
from hdm.targets import demanders, gaussian_heatmaps

BATCH, JOINTS, HEIGHT, WIDTH = 32, 17, 64, 48


def heatmap_family(name: str, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Predicted heatmaps (B, K, H, W) of one kind, around ``joints`` (B, K, 2) heatmap px."""
    shape = (BATCH, JOINTS, HEIGHT, WIDTH)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]

    def blob(offset_px: float, sigma: float) -> np.ndarray:
        centre = joints + rng.normal(0, offset_px, joints.shape)
        dx = xs - centre[..., 0, None, None]
        dy = ys - centre[..., 1, None, None]
        return np.exp(-(dx**2 + dy**2) / (2 * sigma**2))

    if name == "untrained":  # an initialised HRNet head: small zero-mean noise
        return 1e-3 * rng.standard_normal(shape)
    if name == "mid-training":  # a blurred blob ~1.5 px off, plus noise
        return blob(1.5, 3.0) * 0.5 + 0.05 * rng.standard_normal(shape)
    if name == "trained":  # a sharp blob ~0.5 px off, faint noise
        return blob(0.5, 2.0) + 0.005 * rng.standard_normal(shape)
    if name == "uniform":
        return rng.random(shape)
    raise ValueError(name)


FAMILIES = ("untrained", "mid-training", "trained", "uniform")


def best_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def run_family(name: str, args, rng, device) -> dict:
    joints_np = rng.random((BATCH, JOINTS, 2)) * [WIDTH - 1, HEIGHT - 1]
    pred = torch.tensor(heatmap_family(name, joints_np, rng), dtype=torch.float32, device=device)
    joints = torch.tensor(joints_np, dtype=torch.float32, device=device)
    visible = torch.ones(BATCH, JOINTS, device=device)
    weight = torch.ones(BATCH, JOINTS, device=device)

    def step(loss_fn):
        def run():
            p = pred.clone().requires_grad_(True)
            loss_fn(p).backward()
        return run

    exact = HDMLoss()
    entropic = HDMLoss(solver="sinkhorn", sinkhorn_eps=0.05)
    mse = HeatmapMSELoss()

    def mse_loss(p):
        target, target_weight = gaussian_heatmaps(joints, visible, (HEIGHT, WIDTH))
        return mse(p, target, target_weight)

    step(lambda p: exact(p, joints, weight))()  # compile / warm up
    row = {"family": name}
    row["hdm_exact_ms"] = 1e3 * best_time(step(lambda p: exact(p, joints, weight)), args.repeats, device)
    row["hdm_sinkhorn_ms"] = 1e3 * best_time(step(lambda p: entropic(p, joints, weight)), max(1, args.repeats // 3), device)
    row["mse_ms"] = 1e3 * best_time(step(mse_loss), args.repeats, device)

    # POT on exactly the same problems, float64, cost matrices prebuilt outside the timing.
    supply = suppliers(pred.double().flatten(0, 1)).flatten(1).cpu().numpy()
    positions, masses = demanders(joints.double().cpu().flatten(0, 1)[None], (HEIGHT, WIDTH))
    positions, masses = positions[0], masses[0]
    cost = hot.grid_cost(HEIGHT, WIDTH, positions).numpy()
    start = time.perf_counter()
    pot_values = np.array([pot.emd2(supply[i], masses[i].numpy(), cost[i]) for i in range(len(supply))])
    row["pot_emd2_loop_ms"] = 1e3 * (time.perf_counter() - start)
    ours, _, _ = hot.emd_grid(torch.from_numpy(supply).view(-1, HEIGHT, WIDTH), positions, masses)
    row["max_abs_diff_vs_pot"] = float(np.abs(ours.numpy() - pot_values).max())
    if not args.skip_pot_batch:
        start = time.perf_counter()
        result = pot.solve_batch(cost, reg=0.05, a=supply, b=masses.numpy(), method="log_sinkhorn", max_iter=1000, tol=1e-5)
        row["pot_solve_batch_ms"] = 1e3 * (time.perf_counter() - start)
        row["pot_batch_max_abs_err"] = float(np.abs(np.asarray(result.value_linear) - pot_values).max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--skip-pot-batch", action="store_true", help="skip POT's solve_batch (tens of seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)
    print(
        f"# B={BATCH} K={JOINTS} heatmap {HEIGHT}x{WIDTH}; device {device}; torch threads "
        f"{torch.get_num_threads()}, numba threads {numba.get_num_threads()}; {platform.processor() or platform.machine()}"
    )
    rows = [run_family(name, args, rng, device) for name in args.families]
    header = (
        f"{'family':13s} {'ours ms':>8s} {'MSE ms':>7s} {'ours/MSE':>8s} {'POT loop ms':>11s} {'POT/ours':>8s}"
        f" {'sinkhorn ms':>11s} {'POT batch ms':>12s} {'max|diff|':>9s}"
    )
    print(header)
    for r in rows:
        batch = f"{r['pot_solve_batch_ms']:12.0f}" if "pot_solve_batch_ms" in r else f"{'-':>12s}"
        print(
            f"{r['family']:13s} {r['hdm_exact_ms']:8.1f} {r['mse_ms']:7.2f} {r['hdm_exact_ms'] / r['mse_ms']:8.1f}"
            f" {r['pot_emd2_loop_ms']:11.0f} {r['pot_emd2_loop_ms'] / r['hdm_exact_ms']:8.0f}"
            f" {r['hdm_sinkhorn_ms']:11.1f} {batch} {r['max_abs_diff_vs_pot']:9.1e}"
        )


if __name__ == "__main__":
    main()
