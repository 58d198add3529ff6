"""Throughput of the pose models on the CPU, with 2 torch threads.

    .venv/bin/python benchmarks/model_speed.py                 # every preset
    .venv/bin/python benchmarks/model_speed.py --models hrnet_tiny --iters 20

``hrnet_tiny``: training step (forward, MSE loss against a zero target, backward) at batch 32, input
128x96 (h x w), heatmaps 32x24. ``hrnet_w32`` / ``hrnet_w48``: inference only (eval mode, no grad) at
batch 2, input 256x192. Prints images/s (median over timed iterations, after warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any directory without installing
from hdm.models import get_model  # noqa: E402

# name: (mode, batch, input (h, w))
SETTINGS = {
    "hrnet_tiny": ("train", 32, (128, 96)),
    "hrnet_w32": ("infer", 2, (256, 192)),
    "hrnet_w48": ("infer", 2, (256, 192)),
}


def time_model(name: str, iters: int, warmup: int, num_joints: int = 17) -> tuple[float, int, tuple[int, ...]]:
    """Median seconds per iteration of ``name`` in its SETTINGS mode; also the batch and output shape."""
    mode, batch, (h, w) = SETTINGS[name]
    torch.manual_seed(0)
    model = get_model(name, num_joints)
    x = torch.randn(batch, 3, h, w)
    times = []
    if mode == "train":
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        target = torch.zeros(batch, num_joints, h // 4, w // 4)
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            out = model(x)
            loss = torch.nn.functional.mse_loss(out, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    else:
        model.eval()
        with torch.inference_mode():
            for i in range(warmup + iters):
                t0 = time.perf_counter()
                out = model(x)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
    return statistics.median(times), batch, tuple(out.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models:
        mode, batch, (h, w) = SETTINGS[name]
        sec, batch, shape = time_model(name, args.iters, args.warmup)
        what = "forward+backward+Adam" if mode == "train" else "forward (inference)"
        print(f"{name:11s} {what:22s} batch {batch:2d} input {h}x{w} -> {shape}: "
              f"{sec * 1e3:8.1f} ms/iter, {batch / sec:7.1f} images/s")


if __name__ == "__main__":
    main()
