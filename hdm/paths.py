"""Every path the project writes or reads, resolved from the repository root (not the working directory).

Override the results, data and run folders with the environment variables ``HDM_RESULTS``, ``HDM_DATA`` and
``HDM_RUNS`` (tests use them to keep the repository's committed results untouched).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("HDM_RESULTS", REPO_ROOT / "results"))
FIGURES = RESULTS / "figures"
TABLES = RESULTS / "tables"
DOCS = REPO_ROOT / "docs"


def data_root() -> Path:
    """Folder holding datasets (real ones placed by the user, synthetic ones generated): ``$HDM_DATA`` or ``data/``."""
    return Path(os.environ.get("HDM_DATA", REPO_ROOT / "data"))


def runs_root() -> Path:
    """Folder holding training runs, one sub-folder per config hash: ``$HDM_RUNS`` or ``results/runs/``."""
    return Path(os.environ.get("HDM_RUNS", RESULTS / "runs"))
