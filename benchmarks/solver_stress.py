"""Exactness of the exact solver on the stress families of ``tests/test_solver_stress.py``, more seeds than the
test: the largest |ours - POT| (absolute and relative to max(1, value)) over emd_grid and the fused relu loss.

    .venv/bin/python benchmarks/solver_stress.py [--seeds 6]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_solver_stress import SUPPLY_EPS, _pot_reference, joints, map_families  # noqa: E402

from hdm import ot  # noqa: E402
from hdm.loss import HDMLoss, suppliers  # noqa: E402
from hdm.targets import demanders  # noqa: E402

SIZES = ((32, 24), (64, 48), (13, 11), (9, 16), (17, 13))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    worst_abs = worst_rel = 0.0
    count = 0
    for height, width in SIZES:
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            maps, points = [], []
            for joint in joints(rng, height, width):
                for heat in map_families(rng, height, width, joint).values():
                    maps.append(heat)
                    points.append(joint)
            heat = torch.from_numpy(np.stack(maps))
            point = torch.tensor(points, dtype=torch.float64).view(1, -1, 2)
            positions, masses = demanders(point, (height, width))
            supply = suppliers(heat, SUPPLY_EPS, "relu")
            expected = _pot_reference(supply.numpy(), positions[0], masses[0])
            grid, _, _ = ot.emd_grid(supply, positions[0], masses[0])
            fused = HDMLoss(supply_eps=SUPPLY_EPS).per_joint(heat[None], point, torch.ones(1, len(maps), dtype=heat.dtype))
            for value in (grid.numpy(), fused[0].numpy()):
                err = np.abs(value - expected)
                worst_abs = max(worst_abs, float(err.max()))
                worst_rel = max(worst_rel, float((err / np.maximum(1.0, expected)).max()))
            count += len(maps)
    print(f"{count} maps x 2 paths: max |ours - POT| {worst_abs:.2g} absolute, {worst_rel:.2g} relative")


if __name__ == "__main__":
    main()
