"""Run folders: one folder per experiment, the only writer of its files; cache, integrity, provenance, resume.

A run's identity is its config's identity (``hdm.config.Config.identity``) plus the version of the code that
trains it (``code_version``: a hash of the training modules' syntax trees, docstrings and comments left out,
and ``ENGINE_VERSION``). Asking twice for the same experiment with the same code finds the same folder: a
finished run is served from the cache once its files verify, an interrupted one resumes from its checkpoint.
Changing the training code changes the identity, so the run is retrained in a new folder; the old folder stays
readable (``hdm runs`` lists it as from other code).

Layout of ``runs_root()/<method>-<scale>-<hash12>/``:

===================  ===================================================================================
file                 content
===================  ===================================================================================
config.json          the full resolved config, its ``hash`` and the ``identity`` that was hashed
provenance.json      seed, package versions, python, git commit (+ dirty flag of the code), code version, and
                     one entry per session (host, device, world size, start/end, first epoch)
metrics.csv          one row per finished epoch (rewritten from the checkpoint's history after each epoch)
last.pt              resumable checkpoint, written after every epoch (model, optimiser, scheduler, epoch,
                     RNG states, metrics history)
final.pt             the final model (``{"model": state_dict, "epoch": int, "hash": str}``)
predictions.npz      the final epoch's per-sample validation predictions (``hdm.engine.prediction``)
results.json         the final epoch's COCO results (COCO-format datasets only)
eval/                cached ``evaluate()`` results, one json (+ npz) per (decoder, flip test)
train.log            the per-epoch log lines of every session
done                 written last: json with the size and SHA-256 of every file above (but last.pt, eval/,
                     train.log); a run is served only when these match
.lock                ``flock``-ed while a process trains the run (pid and host inside); the OS frees it
                     when that process dies, so a killed run is never locked out and never trained twice
===================  ===================================================================================

Every file is written atomically (temporary file, then ``os.replace``), so a run killed at any moment leaves
either the previous or the new version of each file, never half of one.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import logging
import os
import platform
import shutil
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

from hdm.config import Config, digest
from hdm.paths import REPO_ROOT, runs_root

# Bump when results change for an unchanged config and unchanged code (e.g. a data file's meaning changed).
ENGINE_VERSION = 2

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
#: Files whose checksums ``done`` records (results.json only where it exists).
CHECKED = (CONFIG, METRICS, FINAL, PREDICTIONS, RESULTS)

#: Packages whose versions provenance.json records (distribution names).
PACKAGES = ("torch", "numpy", "numba", "pot", "pycocotools", "scipy", "opencv-python-headless", "pandas")

PACKAGE_DIR = Path(__file__).resolve().parent
#: Modules (relative to the package) whose code can change a run's results: their hash is part of its identity.
#: ``tests/test_structure.py`` checks that every module of the package is here or in ``REPORTING_MODULES``.
TRAINING_MODULES = ("__init__.py", "config.py", "methods.py", "loss.py", "ot.py", "_ssp.py", "targets.py",
                    "decode.py", "geometry.py", "metrics.py", "distributed.py", "models/*.py", "data/*.py",
                    "engine/*.py")  # fmt: skip
#: Modules that only read runs, report or launch: editing them never retrains anything.
REPORTING_MODULES = ("runs.py", "paths.py", "analysis.py", "plots.py", "theory.py", "paper.py", "oracle.py",
                     "reproduce.py", "cli.py", "__main__.py")  # fmt: skip

log = logging.getLogger(__name__)


class DamagedRunError(RuntimeError):
    """A run folder whose files do not verify (truncated, edited, missing)."""


class RunLockedError(RuntimeError):
    """Another live process is training this run."""


# ---------------------------------------------------------------------------------------------------------
# Identity


def _syntax(path: Path) -> str:
    """The module's syntax tree without docstrings, as text: comments, formatting and docs do not count."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
            getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):  # fmt: skip
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def training_files(patterns: tuple[str, ...] = TRAINING_MODULES) -> list[Path]:
    """The package files matching ``patterns`` (default ``TRAINING_MODULES``), sorted."""
    return sorted({p for pattern in patterns for p in PACKAGE_DIR.glob(pattern)})


@functools.lru_cache(maxsize=8)
def code_version(patterns: tuple[str, ...] = TRAINING_MODULES) -> str:
    """12 hex digits identifying the training code: SHA-256 over the syntax of ``training_files(patterns)`` and
    ``ENGINE_VERSION``. Editing a docstring or comment keeps it; editing code changes it. A config may name the
    modules its runs execute (``code_modules``, e.g. the pretraining, which never calls the OT solver)."""
    sha = hashlib.sha256(f"engine {ENGINE_VERSION}\n".encode())
    for path in training_files(patterns):
        sha.update(f"{path.relative_to(PACKAGE_DIR).as_posix()}\n".encode())
        sha.update(_syntax(path).encode())
    return sha.hexdigest()[:12]


def run_identity(cfg: Config) -> dict:
    """What a run's hash covers: the config's identity and the version of the code its runs execute."""
    modules = getattr(cfg, "code_modules", None)
    return {"code": code_version(tuple(modules)) if modules else code_version(), **cfg.resolved().identity()}


def run_hash(cfg: Config) -> str:
    """12 hex digits: ``digest(run_identity(cfg))``."""
    return digest(run_identity(cfg))


def run_name(method: str, scale: str, run_digest: str) -> str:
    """Folder name ``<method>-<scale>-<hash12>``."""
    return f"{method}-{scale}-{run_digest}"


def run_dir(cfg: Config) -> Path:
    """``runs_root()/<method>-<scale>-<hash12>`` of ``cfg``."""
    return runs_root() / run_name(cfg.method, cfg.scale, run_hash(cfg))


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
    """``path`` parsed as json; a damaged file raises ``DamagedRunError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedRunError(f"{path} is not valid json ({exc}); delete it (or its run folder) to rebuild it") from None


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


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


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
    """``{"commit": sha or None, "dirty": bool or None}``; dirty means uncommitted changes to the package's
    code (``hdm/``): results, notebooks or docs rewritten by a reproduction do not count."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE_DIR)) if commit else None
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


# ---------------------------------------------------------------------------------------------------------
# Lock


class RunLock:
    """Exclusive claim on a run folder while one process trains it (``with RunLock(dir): ...``).

    An advisory ``flock`` on ``.lock``: the kernel grants it to one process at a time and frees it when the
    holder exits or is killed, so there is no stale lock to take over and no race in taking one. The file
    holds the owner's pid and host for the error message; it is never deleted (deleting a flock-ed file would
    let two processes lock two different files).
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        import fcntl  # POSIX; the project targets Linux (CI, GPUs)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                owner = json.loads(self.path.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            raise RunLockedError(
                f"{self.path.parent} is being trained by pid {owner.get('pid')} on {owner.get('host')}: wait for it "
                "to finish (the lock is freed when that process ends)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------------
# Run


@dataclass(frozen=True)
class Run:
    """A run folder (finished or not): reads lazily from its files, and is the only writer of them.

    Attributes:
        dir: the folder ``runs_root()/<method>-<scale>-<hash12>``.
    """

    dir: Path

    def __post_init__(self):
        object.__setattr__(self, "dir", Path(self.dir))

    @classmethod
    def of(cls, cfg: Config) -> "Run":
        """The run folder of ``cfg`` (which need not exist yet)."""
        return cls(run_dir(cfg))

    # -- reading -----------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def config_dict(self) -> dict:
        """config.json as saved (the resolved config, its ``hash`` and ``identity``)."""
        path = self.dir / CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{self.dir} is not a run folder: it has no {CONFIG}")
        return read_json(path)

    @property
    def config(self) -> Config:
        """The run's ``hdm.config.Config``."""
        saved = self.config_dict
        return Config.from_dict({k: v for k, v in saved.items() if k not in ("hash", "identity")})

    @property
    def hash(self) -> str:
        return self.config_dict["hash"]

    @property
    def done(self) -> bool:
        """True once training finished and every output is written (``verify`` checks them)."""
        return (self.dir / DONE).is_file()

    @property
    def current_code(self) -> bool:
        """True when the run was trained by the code of this checkout (its identity's code version matches)."""
        saved = self.config_dict
        modules = saved.get("code_modules")
        return saved.get("identity", {}).get("code") == (code_version(tuple(modules)) if modules else code_version())

    def verify(self) -> "Run":
        """Check every file ``done`` records (size and SHA-256); returns self.

        Raises:
            DamagedRunError: one line naming the first file that does not match, and the fix.
        """
        manifest = self._manifest()
        for name, expected in manifest["files"].items():
            path = self.dir / name
            problem = None
            if not path.is_file():
                problem = "is missing"
            elif path.stat().st_size != expected["size"]:
                problem = f"has {path.stat().st_size} bytes, {expected['size']} when the run finished"
            elif sha256(path) != expected["sha256"]:
                problem = "differs from the file the run finished with (SHA-256)"
            if problem:
                raise DamagedRunError(f"{path} {problem}: the run is damaged; delete {self.dir} to retrain it")
        return self

    def _manifest(self) -> dict:
        path = self.dir / DONE
        try:
            manifest = json.loads(path.read_text())
            assert isinstance(manifest.get("files"), dict)
        except (OSError, ValueError, AssertionError, AttributeError):
            raise DamagedRunError(
                f"{path} holds no file checksums (damaged, or written by an older hdm); delete {self.dir} to retrain it"
            ) from None
        return manifest

    @property
    def metrics(self) -> pd.DataFrame:
        """metrics.csv as a DataFrame (one row per finished epoch; empty before the first one)."""
        path = self.dir / METRICS
        if not path.is_file():
            return pd.DataFrame()
        try:
            return pd.read_csv(path)
        except (ValueError, pd.errors.ParserError) as exc:
            raise DamagedRunError(f"{path} cannot be parsed ({exc}); delete {self.dir} to retrain it") from None

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
        """predictions.npz of the final epoch as a dict of arrays (keys: ``hdm.engine.prediction``)."""
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
        return self._load(self.checkpoint)["model"]

    def load_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The run's model with the weights of ``checkpoint``, in eval mode, on ``device``."""
        from hdm.models import get_model

        state = self.state_dict()
        model = get_model(self.config.model, num_joints=state["final_layer.weight"].shape[0])
        model.load_state_dict(state)
        return model.to(device).eval()

    def load_checkpoint(self) -> dict | None:
        """last.pt (the resumable state), or None when there is none yet."""
        path = self.dir / LAST
        return self._load(path) if path.is_file() else None

    def _load(self, path: Path) -> dict:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the run has no checkpoint yet")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises EOFError, RuntimeError, UnpicklingError... for damaged files
            fix = "delete it to restart the run from epoch 1" if path.name == LAST else f"delete {self.dir} to retrain it"
            raise DamagedRunError(f"{path} cannot be read ({type(exc).__name__}: {exc}); {fix}") from None

    def evaluation(self, key: str) -> dict | None:
        """The cached ``evaluate()`` metrics under ``eval/<key>.json``, or None."""
        path = self.dir / EVAL_DIR / f"{key}.json"
        return read_json(path)["metrics"] if path.is_file() else None

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, done={self.done})"

    # -- writing (nothing else writes into a run folder) ---------------------------------------------------

    def write_config(self, cfg: Config) -> None:
        """config.json: the resolved config, its hash and the identity hashed (rewritten only if it differs)."""
        saved = {**cfg.to_dict(), "hash": run_hash(cfg), "identity": run_identity(cfg)}
        path = self.dir / CONFIG
        if not path.is_file() or read_json(path) != saved:
            write_json(path, saved)

    def log_handler(self) -> logging.Handler:
        """A handler appending log lines to train.log (remove and close it when done)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.dir / LOG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        return handler

    def start_session(self, seed: int, device: torch.device, world_size: int, first_epoch: int) -> dict:
        """Create or extend ``provenance.json`` with a new session; returns the provenance dict (written)."""
        path = self.dir / PROVENANCE
        prov = read_json(path) if path.is_file() else {
            "seed": seed, "python": sys.version.split()[0], "platform": platform.platform(),
            "packages": package_versions(), "git": git_state(), "code_version": code_version(), "created": now(),
            "finished": None, "sessions": [],
        }  # fmt: skip
        prov["sessions"].append({
            "host": socket.gethostname(), "pid": os.getpid(), "device": device_name(device),
            "world_size": world_size, "first_epoch": first_epoch, "start": now(), "end": None,
            "torch": torch.__version__, "git": git_state(),
        })  # fmt: skip
        write_json(path, prov)
        return prov

    def end_session(self, finished: bool) -> None:
        """Stamp the end time of the current (last) session, and the run's finish time when ``finished``."""
        path = self.dir / PROVENANCE
        prov = read_json(path)
        prov["sessions"][-1]["end"] = now()
        if finished:
            prov["finished"] = prov["sessions"][-1]["end"]
        write_json(path, prov)

    def save_checkpoint(self, state: dict) -> None:
        """last.pt (model, optimiser, scheduler, epoch, RNG states, history)."""
        save_torch(self.dir / LAST, state)

    def write_metrics(self, rows: list[dict]) -> None:
        """metrics.csv from the history (one dict per epoch); floats keep every bit (shortest repr)."""
        write_text(self.dir / METRICS, pd.DataFrame(rows).to_csv(index=False))

    def finish(self, final_state: dict, predictions: dict[str, np.ndarray], results: list[dict] | None,
               history: list[dict]) -> None:  # fmt: skip
        """Write final.pt, predictions.npz, results.json (when given) and metrics.csv, close the session,
        then ``done`` with every file's size and SHA-256 (last, so a killed finish leaves an unfinished run)."""
        save_torch(self.dir / FINAL, final_state)
        save_npz(self.dir / PREDICTIONS, predictions)
        if results is not None:
            write_json(self.dir / RESULTS, results)
        self.write_metrics(history)
        self.end_session(finished=True)
        files = {name: {"size": (self.dir / name).stat().st_size, "sha256": sha256(self.dir / name)}
                 for name in CHECKED if (self.dir / name).is_file()}  # fmt: skip
        write_json(self.dir / DONE, {"finished": now(), "code_version": code_version(), "files": files})

    def save_evaluation(self, key: str, metrics: dict, arrays: dict[str, np.ndarray], **info) -> None:
        """``eval/<key>.json`` (metrics and ``info``) and its predictions ``eval/<key>.npz``."""
        path = self.dir / EVAL_DIR / f"{key}.json"
        save_npz(path.with_suffix(".npz"), arrays)
        write_json(path, {**info, "created": now(), "metrics": metrics})

    def discard_if_empty(self) -> None:
        """Remove the folder of a start that failed before its first checkpoint (nothing in it is worth keeping)."""
        if self.dir.is_dir() and not (self.dir / LAST).exists() and not (self.dir / DONE).exists():
            shutil.rmtree(self.dir, ignore_errors=True)


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


def status(run: Run) -> str:
    """One word for ``hdm runs``: done, damaged, open (unfinished) or other-code (trained by other code)."""
    try:
        if not run.current_code:
            return "other-code"
        if run.done:
            run.verify()
            return "done"
    except DamagedRunError:
        return "damaged"
    return "open"
