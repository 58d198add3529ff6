"""Run folders: one folder per experiment, the only writer of its files; cache, integrity, provenance, resume.

A run's identity is its config's identity (``hdm.config.Config.identity``), the version of the code that
trains it (``code_version``: a hash of the training modules' syntax trees, docstrings and comments left out,
and ``ENGINE_VERSION``) and the fingerprint of its data (``hdm.data.sources``: size and SHA-256 of the
annotation files, names and sizes of the images). Asking twice for the same experiment with the same code and
data finds the same folder: a finished run is served from the cache once its files and its identity verify, an
interrupted one resumes from its checkpoint. Changing the training code or the data changes the identity, so
the run is retrained in a new folder; the old folder stays readable (``hdm runs`` lists it as from other code).

Layout of ``runs_root()/<method>-<scale>-<hash12>/``:

===================  ===================================================================================
file                 content
===================  ===================================================================================
config.json          the full resolved config, its ``hash`` and the ``identity`` that was hashed (config, code
                     version, data fingerprint); the folder's name ends with that hash
provenance.json      seed, package versions, python, git commit (+ dirty flag of the code), code version, the
                     data files (paths, sizes, SHA-256), and one entry per session (host, device, world size,
                     start/end, first epoch)
metrics.csv          one row per finished epoch (rewritten from the checkpoint's history after each epoch)
last.pt              resumable checkpoint, written after every epoch (model, optimiser, scheduler, epoch,
                     RNG states, metrics history)
final.pt             the final model (``{"model": state_dict, "epoch": int, "hash": str}``)
predictions.npz      the final epoch's per-sample validation predictions (``hdm.engine.prediction``)
results.json         the final epoch's COCO results (COCO-format datasets only)
eval/                cached ``evaluate()`` results, one json (+ npz) per (decoder, flip test), and per result a
                     ``<key>.sums`` (size and SHA-256 of both, written last; checked before serving)
train.log            the per-epoch log lines of every session
done                 written last: json with the size and SHA-256 of every file above (but last.pt, eval/,
                     train.log); a run is served only when it lists every required file and they match
.lock                ``flock``-ed while a process trains the run (pid and host inside); the OS frees it
                     when that process dies, so a killed run is never locked out and never trained twice
===================  ===================================================================================

Every file is written atomically (temporary file, then ``os.replace``), so a run killed at any moment leaves
either the previous or the new version of each file, never half of one. A write that fails (disk full, no
permission) raises ``RunWriteError``, an ``OSError`` naming the file.
"""

from __future__ import annotations

import errno
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
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hdm import codehash
from hdm.config import Config, digest
from hdm.data.sources import data_fingerprint, without_paths
from hdm import machine
from hdm.machine import machine_info
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
#: Files ``done`` must list: every finished run has them (and results.json when its dataset is COCO-format).
REQUIRED = (CONFIG, METRICS, FINAL, PREDICTIONS)
#: Datasets whose runs write results.json.
COCO_FORMAT = ("synthetic", "coco")
#: Suffix of the checksum file of a cached evaluation (``eval/<key>.sums``).
SUMS = ".sums"

#: Packages whose versions provenance.json records (distribution names).
PACKAGES = ("torch", "numpy", "numba", "pot", "pycocotools", "scipy", "opencv-python-headless", "pandas")

PACKAGE_DIR = Path(__file__).resolve().parent
#: Modules (relative to the package) whose code can change a run's results: their hash is part of its identity.
#: ``tests/test_structure.py`` checks that every module of the package is here or in ``REPORTING_MODULES``.
TRAINING_MODULES = ("__init__.py", "config.py", "methods.py", "loss.py", "ot.py", "_ssp.py", "targets.py",
                    "decode.py", "geometry.py", "metrics.py", "distributed.py", "models/*.py", "data/*.py",
                    "engine/*.py")  # fmt: skip
#: Modules that only read runs, report or launch (or compute identities: ``codehash.py``): editing them never
#: retrains anything by itself.
REPORTING_MODULES = ("runs.py", "codehash.py", "machine.py", "paths.py", "jit.py", "analysis/*.py", "experiments.py", "plots.py",
                     "theory.py", "paper.py", "oracle.py", "reproduce.py", "cli.py", "__main__.py")  # fmt: skip

log = logging.getLogger(__name__)


class DamagedRunError(RuntimeError):
    """A run folder whose files do not verify (truncated, edited, missing)."""


class RunLockedError(RuntimeError):
    """Another live process is training this run."""


class RunWriteError(OSError):
    """A file of a run could not be written (disk full, no permission, a file in the way): one line naming the
    path, the reason and the fix; ``errno`` is the failed call's."""

    def __init__(self, errno_: int | None, message: str):
        super().__init__(message)
        self.errno = errno_


def _write_error(path: Path, exc: OSError, what: str = "cannot write") -> RunWriteError:
    """One line naming ``path``, the system's reason and the fix."""
    reason = exc.strerror or str(exc)
    fix = ("free space on its disk" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
           else f"make {Path(path).parent} writable (or point HDM_RUNS elsewhere)")  # fmt: skip
    return RunWriteError(exc.errno, f"{what} {path}: {reason}; {fix}, then run again")


# ---------------------------------------------------------------------------------------------------------
# Identity


_syntax = codehash.syntax  # the module's syntax tree without docstrings: comments and docs do not count


def training_files(patterns: tuple[str, ...] = TRAINING_MODULES) -> list[Path]:
    """The package files matching ``patterns`` (default ``TRAINING_MODULES``), sorted."""
    return sorted({p for pattern in patterns for p in PACKAGE_DIR.glob(pattern)})


@functools.lru_cache(maxsize=8)
def code_version(patterns: tuple[str, ...] = TRAINING_MODULES) -> str:
    """12 hex digits identifying the training code: SHA-256 over the syntax of ``training_files(patterns)`` and
    ``ENGINE_VERSION``. Editing a docstring or comment keeps it; editing code changes it. A config may name the
    modules its runs execute (``code_modules``, e.g. the pretraining, which never calls the OT solver)."""
    return codehash.syntax_hash(training_files(patterns), PACKAGE_DIR, f"engine {ENGINE_VERSION}")[:12]


def run_identity(cfg: Config, data: dict | None = None) -> dict:
    """What a run's hash covers: the config's identity, the version of the code its runs execute and, for a
    config with a ``dataset``, the fingerprint of its data (``data``: ``hdm.data.sources.data_fingerprint(cfg)``,
    computed when not given; the paths are left out: the same files elsewhere are the same data)."""
    modules = getattr(cfg, "code_modules", None)
    identity = {"code": code_version(tuple(modules)) if modules else code_version(), **cfg.resolved().identity()}
    if hasattr(cfg, "dataset"):
        identity["data"] = without_paths(data if data is not None else data_fingerprint(cfg))
    return identity


def run_hash(cfg: Config, identity: dict | None = None) -> str:
    """12 hex digits: ``digest(run_identity(cfg))`` (or of ``identity``, when given)."""
    return digest(identity if identity is not None else run_identity(cfg))


def run_name(method: str, scale: str, run_digest: str) -> str:
    """Folder name ``<method>-<scale>-<hash12>``."""
    return f"{method}-{scale}-{run_digest}"


def run_dir(cfg: Config, identity: dict | None = None) -> Path:
    """``runs_root()/<method>-<scale>-<hash12>`` of ``cfg`` (``identity``: its ``run_identity``, when known)."""
    return runs_root() / run_name(cfg.method, cfg.scale, run_hash(cfg, identity))


# ---------------------------------------------------------------------------------------------------------
# Atomic files


def _atomic(path: Path, write) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file onto ``path`` (same folder, so the move is atomic)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
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
    """Installed version of each distribution (default ``PACKAGES``), None where it is missing."""
    return machine.package_versions(packages)


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

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _write_error(self.path, exc, "cannot create the lock") from exc
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
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        except OSError as exc:
            self.release()
            raise _write_error(self.path, exc) from exc

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
    def of(cls, cfg: Config, identity: dict | None = None) -> "Run":
        """The run folder of ``cfg`` (which need not exist yet); ``identity``: its ``run_identity``, when known."""
        return cls(run_dir(cfg, identity))

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
        saved = read_json(path)
        if not isinstance(saved, dict):
            raise DamagedRunError(f"{path} is not a json object (it holds a {type(saved).__name__}): the run is "
                                  f"damaged; delete {self.dir} to retrain it")  # fmt: skip
        return saved

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
        modules, identity = saved.get("code_modules"), saved.get("identity")
        if not isinstance(identity, dict) or not (modules is None or isinstance(modules, list)):
            raise DamagedRunError(f"{self.dir / CONFIG} has no identity (damaged, or written by an older hdm); "
                                  f"delete {self.dir} to retrain it")  # fmt: skip
        return identity.get("code") == (code_version(tuple(modules)) if modules else code_version())

    def verify(self, identity: dict | None = None) -> "Run":
        """Check that ``done`` lists every required file (``REQUIRED``, and results.json for COCO-format data)
        with the size and SHA-256 the files have; that config.json's hash is its identity's and the folder's name
        ends with it (a run copied or renamed into another run's folder is refused); and, when ``identity`` (a
        ``run_identity``) is given, that the run's identity is that one. Returns self.

        Raises:
            DamagedRunError: one line naming the first file that does not match, and the fix.
        """
        manifest = self._manifest()
        saved = self.config_dict
        required = REQUIRED + ((RESULTS,) if saved.get("dataset") in COCO_FORMAT else ())
        unlisted = [name for name in required if name not in manifest["files"]]
        if unlisted:
            raise DamagedRunError(f"{self.dir / DONE} lists no checksum for {', '.join(unlisted)} (damaged, or "
                                  "written by an older hdm): the run is not verified; "
                                  f"delete {self.dir} to retrain it")  # fmt: skip
        for name, expected in manifest["files"].items():
            path = self.dir / name
            problem = None
            try:
                size, checksum = int(expected["size"]), str(expected["sha256"])
            except (TypeError, KeyError, ValueError):
                raise DamagedRunError(f"{self.dir / DONE} holds a damaged entry for {name}; delete {self.dir} to "
                                      "retrain it") from None  # fmt: skip
            if not path.is_file():
                problem = "is missing"
            elif path.stat().st_size != size:
                problem = f"has {path.stat().st_size} bytes, {size} when the run finished"
            elif sha256(path) != checksum:
                problem = "differs from the file the run finished with (SHA-256)"
            if problem:
                raise DamagedRunError(f"{path} {problem}: the run is damaged; delete {self.dir} to retrain it")
        self._check_identity(saved, identity)
        return self

    def _check_identity(self, saved: dict, identity: dict | None) -> None:
        """config.json's hash is the digest of its identity, the folder is named by it, and it is ``identity``."""
        path = self.dir / CONFIG
        recorded = saved.get("identity")
        if not isinstance(recorded, dict) or digest(recorded) != saved.get("hash"):
            raise DamagedRunError(f"{path}: its hash {saved.get('hash')!r} is not the hash of its identity (edited, or "
                                  f"written by an older hdm); delete {self.dir} to retrain it")  # fmt: skip
        own = run_name(saved.get("method"), saved.get("scale"), saved["hash"])
        if self.name != own:
            raise DamagedRunError(f"{self.dir} holds the run {own} (its {CONFIG}), not the run its name says: it "
                                  f"was copied or renamed; delete {self.dir} to retrain it "
                                  f"(or move it back to {own})")  # fmt: skip
        if identity is not None:
            wanted = json.loads(json.dumps(identity))
            differ = sorted(k for k in set(wanted) | set(recorded) if wanted.get(k) != recorded.get(k))
            if differ:
                raise DamagedRunError(f"{self.dir} was trained with another {', '.join(differ)} than asked for (its "
                                      f"{CONFIG}); delete {self.dir} to retrain it")  # fmt: skip

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
        """The cached ``evaluate()`` metrics under ``eval/<key>.json``, or None when there are none or they were
        never checksummed (no ``eval/<key>.sums``: an interrupted save, or an older hdm; they are recomputed).

        Raises:
            DamagedRunError: ``eval/<key>.json`` or ``.npz`` differs from what was written (size, SHA-256): one line
                naming it and the fix (``hdm evaluate --refresh`` recomputes it).
        """
        folder = self.dir / EVAL_DIR
        path, sums = folder / f"{key}.json", folder / f"{key}{SUMS}"
        if not path.is_file() or not sums.is_file():
            return None
        fix = f"recompute it with `hdm evaluate --run {self.dir} --refresh` (evaluate(..., refresh=True))"
        recorded = read_json(sums)
        files = recorded.get("files") if isinstance(recorded, dict) else None
        if not isinstance(files, dict) or path.name not in files:
            raise DamagedRunError(f"{sums} lists no checksum for {path.name}: the cached evaluation is not "
                                  f"verified; {fix}")  # fmt: skip
        for name, expected in files.items():
            file = folder / name
            found = {"size": file.stat().st_size, "sha256": sha256(file)} if file.is_file() else None
            if found != expected:
                problem = "is missing" if found is None else "differs from the file written (size or SHA-256)"
                raise DamagedRunError(f"{file} {problem}: the cached evaluation is damaged; {fix}")
        saved = read_json(path)
        if not isinstance(saved, dict) or not isinstance(saved.get("metrics"), dict):
            raise DamagedRunError(f"{path} holds no metrics: the cached evaluation is damaged; {fix}")
        return saved["metrics"]

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, done={self.done})"

    # -- writing (nothing else writes into a run folder) ---------------------------------------------------

    def write_config(self, cfg: Config, identity: dict | None = None) -> None:
        """config.json: the resolved config, its hash and the identity hashed (``identity``: ``run_identity(cfg)``,
        computed when not given); rewritten only if it differs."""
        identity = identity if identity is not None else run_identity(cfg)
        saved = {**cfg.to_dict(), "hash": run_hash(cfg, identity), "identity": identity}
        path = self.dir / CONFIG
        if not path.is_file() or read_json(path) != saved:
            write_json(path, saved)

    def log_handler(self) -> logging.Handler:
        """A handler appending log lines to train.log (remove and close it when done)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.dir / LOG)
        except OSError as exc:
            raise _write_error(self.dir / LOG, exc) from exc
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        return handler

    def start_session(self, seed: int, device: torch.device, world_size: int, first_epoch: int,
                      data: dict | None = None) -> dict:  # fmt: skip
        """Create or extend ``provenance.json`` with a new session; returns the provenance dict (written).
        ``data``: the run's ``hdm.data.sources.data_fingerprint`` (paths, sizes, SHA-256), recorded when given."""
        path = self.dir / PROVENANCE
        prov = read_json(path) if path.is_file() else {
            "seed": seed, "python": sys.version.split()[0], "platform": platform.platform(),
            "packages": package_versions(), "git": git_state(), "code_version": code_version(), "created": now(),
            "machine": machine_info(), "finished": None, "sessions": [],
        }  # fmt: skip
        if data is not None:
            prov["data"] = data
        prov["sessions"].append({
            "host": socket.gethostname(), "pid": os.getpid(), "device": device_name(device),
            "world_size": world_size, "first_epoch": first_epoch, "start": now(), "end": None,
            "torch": torch.__version__, "git": git_state(), "machine": machine_info(),
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

    def check_writable(self, folder: str = EVAL_DIR) -> Path:
        """Create ``folder`` in the run (default eval/) and write a probe file there, so that a result is not
        computed only to be lost; returns the folder. Raises ``RunWriteError`` naming it."""
        path = self.dir / folder
        probe = path / f".probe-{os.getpid()}"
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunWriteError(exc.errno, f"{path} cannot be written ({exc.strerror or exc}): evaluations are "
                                f"cached there; make it a writable folder (or copy {self.dir} somewhere "
                                "writable)") from exc  # fmt: skip
        return path

    def save_evaluation(self, key: str, metrics: dict, arrays: dict[str, np.ndarray], **info) -> None:
        """``eval/<key>.json`` (metrics and ``info``), its predictions ``eval/<key>.npz``, then (last)
        ``eval/<key>.sums`` with the size and SHA-256 of both, which ``evaluation`` checks before serving them."""
        path = self.dir / EVAL_DIR / f"{key}.json"
        sums = path.with_suffix(SUMS)
        try:
            sums.unlink(missing_ok=True)  # the old checksums must not vouch for a half-rewritten result
        except OSError as exc:
            raise _write_error(sums, exc, "cannot remove") from exc
        save_npz(path.with_suffix(".npz"), arrays)
        write_json(path, {**info, "created": now(), "metrics": metrics})
        files = {p.name: {"size": p.stat().st_size, "sha256": sha256(p)} for p in (path, path.with_suffix(".npz"))}
        write_json(sums, {"files": files})

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
    """One word for ``hdm runs``: done, damaged, open (unfinished) or other-code (trained by other code). A
    folder whose files cannot be read or do not verify (even config.json) is damaged; the listing goes on."""
    try:
        if not run.current_code:
            return "other-code"
        if run.done:
            run.verify()
            return "done"
    except (DamagedRunError, OSError):
        return "damaged"
    return "open"
