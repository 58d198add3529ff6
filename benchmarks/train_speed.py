"""Speed of one training step of each method at the default scale, side by side in one run.

A step is what ``hdm.engine.training.training_step`` does: forward, the method's target + loss, backward, Adam step.
Every method starts from the same initial weights and sees the same batches (taken from the default-scale
training loader of epoch 0 and held in memory, so data loading is not timed). Methods take turns batch by
batch, so that a change in the machine's load hits them alike; each time is the median over the timed steps.

Columns: images/s of the whole step; ms of the step and of its parts (forward, loss = target + loss forward,
backward through loss and model, optimiser); ``loss f+b``: the loss alone, forward + backward on the same
heatmaps as a leaf tensor; ``loss share`` = loss f+b / step; ``vs gaussian`` = step time / gaussian step time.

    python benchmarks/train_speed.py                      # every method, CPU
    python benchmarks/train_speed.py --methods gaussian,hdm --steps 20
    python benchmarks/train_speed.py --device cuda

Nothing here is a test; the project's goal is an hdm step within 10 % of the gaussian step.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from hdm.distributed import DistInfo
from hdm.config import preset
from hdm.engine import build_data
from hdm.engine.training import train_loader
from hdm.methods import METHODS, method_loss
from hdm.models import get_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(model, loss_fn, optimizer, batch, device) -> dict[str, float]:
    """One training step split into its parts (seconds), plus the loss alone on a copy of the heatmaps."""
    images, joints, visibility = (batch[k].to(device) for k in ("image", "joints", "visibility"))
    _sync(device)
    t0 = time.perf_counter()
    heatmaps = model(images)
    _sync(device)
    t1 = time.perf_counter()
    loss = loss_fn(heatmaps, joints, visibility)
    _sync(device)
    t2 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _sync(device)
    t3 = time.perf_counter()
    optimizer.step()
    _sync(device)
    t4 = time.perf_counter()
    leaf = heatmaps.detach().requires_grad_(True)
    loss_fn(leaf, joints, visibility).backward()
    _sync(device)
    t5 = time.perf_counter()
    return {"step": t4 - t0, "forward": t1 - t0, "loss": t2 - t1, "backward": t3 - t2, "optimiser": t4 - t3,
            "loss f+b": t5 - t4}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: all)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per method (distinct batches)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per method first (numba compiles)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    device = torch.device(args.device)

    cfg = preset("default", "gaussian")
    data = build_data(cfg)
    loader = train_loader(data.train, cfg, DistInfo(), device)
    data.train.dataset.set_epoch(0)
    loader.sampler.set_epoch(0)
    needed = args.warmup + args.steps
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == needed:
            break
    if len(batches) < needed:
        raise SystemExit(f"the default-scale epoch has {len(batches)} batches; ask for at most that many steps")

    torch.manual_seed(0)
    initial = get_model(cfg.model, data.num_joints).state_dict()
    setups = {}
    for method in methods:
        model = get_model(cfg.model, data.num_joints)
        model.load_state_dict(initial)
        model.to(device).train()
        setups[method] = (model, method_loss(method, cfg), torch.optim.Adam(model.parameters(), cfg.lr))
    times: dict[str, list[dict]] = {m: [] for m in methods}
    for i, batch in enumerate(batches):
        for method in methods:  # take turns, batch by batch
            t = timed_step(*setups[method], batch, device)
            if i >= args.warmup:
                times[method].append(t)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"default scale: {cfg.model}, input {cfg.input_hw[0]}x{cfg.input_hw[1]} (h x w), batch {cfg.batch_size}, "
          f"{args.steps} timed steps per method after {args.warmup} warm-up; device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
          f"1-min load average {load:.1f}")  # fmt: skip
    parts = ("step", "forward", "loss", "backward", "optimiser", "loss f+b")
    header = f"{'method':<13} {'img/s':>7} " + " ".join(f"{p + ' ms':>11}" for p in parts) + f" {'loss share':>10} {'vs gaussian':>11}"
    print(header)
    print("-" * len(header))
    medians = {m: {p: statistics.median(t[p] for t in times[m]) for p in parts} for m in methods}
    base = medians.get("gaussian", {}).get("step")
    for method in methods:
        med = medians[method]
        ratio = f"{med['step'] / base:>10.2f}x" if base else f"{'-':>11}"
        print(f"{method:<13} {cfg.batch_size / med['step']:>7.1f} " + " ".join(f"{1e3 * med[p]:>11.1f}" for p in parts)
              + f" {med['loss f+b'] / med['step']:>10.1%} {ratio}")  # fmt: skip


if __name__ == "__main__":
    main()
