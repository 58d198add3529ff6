"""Run folders: one folder per experiment, named by the hash of its config, holding everything the run produced.

A run's identity is the hash of the part of its resolved config that changes results (``Config.identity()`` in
``hdm.experiment``): asking twice for the same experiment finds the same folder, so a finished run is returned
from the cache and an interrupted one resumes from its last checkpoint.

Layout of ``runs_root()/<method>-<scale>-<hash12>/``:

===================  ===================================================================================
file                 content
===================  ===================================================================================
config.json          the full resolved config, plus its ``hash``
provenance.json      seed, package versions, python, git commit (+ dirty flag), and one entry per session
                     (host, device, world size, start/end time, first epoch): a resumed run has several
metrics.csv          one row per finished epoch (rewritten from the checkpoint's history after each epoch)
last.pt              resumable checkpoint, written after every epoch (model, optimiser, scheduler, epoch,
                     RNG states, metrics history)
final.pt             the final model (``{"model": state_dict, "epoch": int}``), written at the end
predictions.npz      the final epoch's per-sample validation predictions (see ``hdm.experiment``)
results.json         the final epoch's COCO results (COCO-format datasets only)
eval/                cached ``evaluate()`` results, one json (+ npz) per (decoder, flip test)
train.log            the per-epoch log lines of every session
done                 marker written last: the run is complete
.lock                present while a process trains the run (pid and host inside)
===================  ===================================================================================

Every file is written atomically (temporary file, then ``os.replace``), so a run killed at any moment leaves
either the previous or the new version of each file, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hdm.paths import REPO_ROOT, runs_root

# Bump when the training engine changes results for an unchanged config: it is part of every run's hash.
ENGINE_VERSION = 1

CONFIG = "config.json"
PROVENANCE = "provenance.json"
METRICS = "metrics.csv"
LAST = "last.pt"
FINAL = "final.pt"
PREDICTIONS = "predictions.npz"
RESULTS = "results.json"
EVAL_DIR = "eval"
LOG = "train.log"
DONE = "done"
LOCK = ".lock"

#: Packages whose versions provenance.json records (distribution names).
PACKAGES = ("torch", "numpy", "numba", "pot", "pycocotools", "scipy", "opencv-python-headless", "pandas")


# ---------------------------------------------------------------------------------------------------------
# Identity


def config_hash(identity: dict) -> str:
    """12 hex digits of the SHA-256 of ``identity`` (a json-able dict) as canonical json, with ENGINE_VERSION.

    Key order does not matter; tuples and lists hash alike (json has only lists).
    """
    payload = json.dumps({"engine": ENGINE_VERSION, **identity}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def run_name(method: str, scale: str, digest: str) -> str:
    """Folder name ``<method>-<scale>-<hash12>``."""
    return f"{method}-{scale}-{digest}"


# ---------------------------------------------------------------------------------------------------------
# Atomic files


def _atomic(path: Path, write) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file onto ``path`` (same folder, so the move is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return _atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, obj) -> Path:
    """Write ``obj`` as indented json atomically (NaN is written as ``NaN``, which python's json reads back)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def save_torch(path: Path, obj) -> Path:
    """``torch.save`` atomically (the bytes go to a temporary file first)."""

    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        tmp.write_bytes(buffer.getvalue())

    return _atomic(path, write)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``numpy.savez_compressed`` atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return _atomic(path, write)


def write_metrics(path: Path, rows: list[dict]) -> Path:
    """Write the metrics history (one dict per epoch) as csv; floats keep every bit (shortest round-trip repr)."""
    return write_text(path, pd.DataFrame(rows).to_csv(index=False))


# ---------------------------------------------------------------------------------------------------------
# Provenance


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding this package."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(packages=PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None where it is missing."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    """Local time, ISO 8601 with offset, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def device_name(device: torch.device) -> str:
    """A readable name of ``device``: the GPU model, or the CPU."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def start_session(run_dir: Path, seed: int, device: torch.device, world_size: int, first_epoch: int) -> dict:
    """Create or extend ``provenance.json`` with a new session; returns the provenance dict (already written)."""
    path = Path(run_dir) / PROVENANCE
    prov = read_json(path) if path.is_file() else {
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
        "created": now(),
        "finished": None,
        "sessions": [],
    }  # fmt: skip
    prov["sessions"].append({
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": device_name(device),
        "world_size": world_size,
        "first_epoch": first_epoch,
        "start": now(),
        "end": None,
        "torch": torch.__version__,
        "git": git_state(),
    })  # fmt: skip
    write_json(path, prov)
    return prov


def end_session(run_dir: Path, finished: bool) -> None:
    """Stamp the end time of the current (last) session, and the run's finish time when ``finished``."""
    path = Path(run_dir) / PROVENANCE
    prov = read_json(path)
    prov["sessions"][-1]["end"] = now()
    if finished:
        prov["finished"] = prov["sessions"][-1]["end"]
    write_json(path, prov)


# ---------------------------------------------------------------------------------------------------------
# Lock


class RunLockedError(RuntimeError):
    """Another live process is training this run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive claim on a run folder while one process trains it (``with RunLock(dir): ...``).

    The lock file holds the owner's pid and host. A lock left by a dead process on this host (a killed run) is
    taken over; a lock held by a live process, or by another host, raises ``RunLockedError``.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    owner = {}
                if owner.get("host") == me["host"] and isinstance(owner.get("pid"), int) and not _alive(owner["pid"]):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise RunLockedError(
                    f"{self.path.parent} is being trained by pid {owner.get('pid')} on {owner.get('host')} "
                    f"(lock file {self.path}). Wait for it to finish, or delete the lock file if that process is gone."
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunLockedError(f"could not take the lock {self.path}: another process keeps recreating it")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------------
# Run


@dataclass(frozen=True)
class Run:
    """A run folder (finished or not). Everything is read lazily from the files.

    Attributes:
        dir: the folder ``runs_root()/<method>-<scale>-<hash12>``.
    """

    dir: Path

    def __post_init__(self):
        object.__setattr__(self, "dir", Path(self.dir))

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def config_dict(self) -> dict:
        """config.json as saved (the resolved config and its ``hash``)."""
        path = self.dir / CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{self.dir} is not a run folder: it has no {CONFIG}")
        return read_json(path)

    @property
    def config(self):
        """The run's ``hdm.experiment.Config``."""
        from hdm.experiment import Config

        saved = self.config_dict
        return Config.from_dict({k: v for k, v in saved.items() if k != "hash"})

    @property
    def hash(self) -> str:
        return self.config_dict["hash"]

    @property
    def done(self) -> bool:
        """True once training finished and every output is written."""
        return (self.dir / DONE).is_file()

    @property
    def metrics(self) -> pd.DataFrame:
        """metrics.csv as a DataFrame (one row per finished epoch; empty before the first one)."""
        path = self.dir / METRICS
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    @property
    def accuracy_column(self) -> str | None:
        """The headline accuracy column of metrics.csv: "AP" (COCO format), else "PCKh" (MPII), else "PCK"."""
        columns = set(self.metrics.columns)
        return next((c for c in ("AP", "PCKh", "PCK") if c in columns), None)

    @property
    def checkpoint(self) -> Path:
        """final.pt once done, else last.pt (which may not exist yet)."""
        return self.dir / (FINAL if self.done else LAST)

    @property
    def provenance(self) -> dict:
        path = self.dir / PROVENANCE
        return read_json(path) if path.is_file() else {}

    def predictions(self) -> dict[str, np.ndarray]:
        """predictions.npz of the final epoch as a dict of arrays (keys documented in ``hdm.experiment``)."""
        path = self.dir / PREDICTIONS
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the run is not finished (done={self.done})")
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def results(self) -> list[dict]:
        """results.json: the final epoch's COCO results (COCO-format datasets only)."""
        path = self.dir / RESULTS
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the run is unfinished or its dataset is not COCO-format")
        return read_json(path)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model weights of ``checkpoint`` (on the CPU)."""
        path = self.checkpoint
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the run has no checkpoint yet")
        return torch.load(path, map_location="cpu", weights_only=True)["model"]

    def load_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The run's model with the weights of ``checkpoint``, in eval mode, on ``device``."""
        from hdm.models import get_model

        state = self.state_dict()
        model = get_model(self.config.model, num_joints=state["final_layer.weight"].shape[0])
        model.load_state_dict(state)
        return model.to(device).eval()

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, done={self.done})"


def open_run(path: Path | str) -> Run:
    """The run in folder ``path`` (a path, or a folder name under ``runs_root()``); raises if it is not one."""
    path = Path(path)
    if not path.is_dir() and (runs_root() / path).is_dir():
        path = runs_root() / path
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(
            f"{path} is not a run folder (no {CONFIG}); runs live under {runs_root()} as <method>-<scale>-<hash12>/"
        )
    return Run(path)


def list_runs(root: Path | str | None = None) -> list[Run]:
    """Every run folder under ``root`` (default ``runs_root()``), sorted by name."""
    root = Path(root) if root is not None else runs_root()
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if (p / CONFIG).is_file()]
