"""Time the synthetic dataset generator: both splits of a preset, written to a temporary folder (not the cache).

    .venv/bin/python benchmarks/synthetic_speed.py                    # default preset (1200 + 300 images)
    .venv/bin/python benchmarks/synthetic_speed.py --preset smoke

Prints seconds and images/s per split, then the dataset statistics of each split.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any directory without installing
from hdm.data.synthetic import PRESETS, dataset_statistics, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=list(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for split, count in (("train", preset.num_train), ("val", preset.num_val)):
            t0 = time.perf_counter()
            ann_file, _ = generate(Path(tmp), split, count, args.seed, preset.image_size)
            sec = time.perf_counter() - t0
            total += sec
            print(f"{args.preset} {split}: {count} images {preset.image_size[0]}x{preset.image_size[1]} in "
                  f"{sec:.1f} s ({count / sec:.0f} images/s)")
            print("  ", {k: round(v, 3) for k, v in dataset_statistics(ann_file).items()})
    print(f"total {total:.1f} s")


if __name__ == "__main__":
    main()
