"""Compile the exact solver's Numba kernels into their on-disk cache, once per checkout.

The kernels are compiled with ``cache=True``: the first process that calls them compiles them (~25 s on a 2-core
CPU) and writes the machine code next to the sources (``hdm/__pycache__``); every later process loads it in a
fraction of a second. ``make venv`` runs this module, so that neither the first test worker, nor the first notebook
kernel of ``make reproduce``, nor a researcher's first loss call pays the compilation (several processes starting
at once would each compile). Editing a kernel's source makes Numba compile it again, on first use.

    python -m hdm.jit
"""

from __future__ import annotations

import time

import torch

from hdm import ot
from hdm.loss import HDMLoss


def compile_kernels() -> float:
    """Call every path of the exact solver once on tiny inputs (the fused relu, softplus and softmax losses, their
    gradients, ``emd`` and ``emd_grid``); returns the seconds it took."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):  # training's float32 and the tests' float64 take different paths
        heatmaps = torch.randn(2, 3, 8, 6, generator=generator, dtype=dtype, requires_grad=True)
        joints = torch.rand(2, 3, 2, generator=generator, dtype=dtype) * torch.tensor([5.0, 7.0], dtype=dtype)
        weight = torch.ones(2, 3, dtype=dtype)
        for supplier in ("relu", "softplus", "softmax"):
            HDMLoss(supplier=supplier)(heatmaps, joints, weight).backward()
    supply = torch.softmax(torch.randn(4, 12, generator=generator, dtype=torch.float64), -1)
    demand = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    ot.emd(supply, demand, torch.rand(4, 12, 3, generator=generator, dtype=torch.float64))
    positions = torch.stack((torch.randint(0, 4, (4, 3), generator=generator),  # (x, y) pixels of a 3 x 4 map
                             torch.randint(0, 3, (4, 3), generator=generator)), dim=-1)
    ot.emd_grid(supply.view(4, 3, 4), positions, demand)
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"hdm.jit: the solver's kernels compiled or loaded from their cache in {compile_kernels():.1f} s")
