"""Small helpers the training loops share: per-epoch seeds and progress lines."""

from __future__ import annotations

import os
import sys
import time

import numpy as np


def progress_line(text: str) -> None:
    """One progress line for the person running ``hdm.reproduce`` (env ``HDM_PROGRESS=1``): written to the
    process's real stderr, which a notebook kernel shares with the reproduce command."""
    if os.environ.get("HDM_PROGRESS") == "1":
        print(f"  {time.strftime('%H:%M:%S')} {text}", file=sys.__stderr__, flush=True)


def epoch_seed(seed: int, epoch: int, tag: int = 0) -> int:
    """A 63-bit seed determined by (seed, epoch, tag) alone."""
    return int(np.random.SeedSequence([seed, epoch, tag]).generate_state(2, np.uint64)[0] >> np.uint64(1))
