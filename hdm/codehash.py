"""Fingerprints of code and files: the syntax hash of modules (``hdm.runs`` keys runs by it, ``hdm.data.synthetic``
its caches) and the size + SHA-256 of data files (a run's data fingerprint).

At the bottom of the import graph: it imports nothing from ``hdm``.
"""

from __future__ import annotations

import ast
import hashlib
import os
import time
from pathlib import Path


def syntax(path: Path) -> str:
    """The module's syntax tree without docstrings, as text: comments, formatting and docs do not count."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
            getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):  # fmt: skip
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def syntax_hash(paths, root: Path | None = None, salt: str = "") -> str:
    """64 hex digits: SHA-256 over ``salt`` and, per file of ``paths`` in the given order, its name (relative to
    ``root`` when given) and ``syntax``. Editing a docstring or comment keeps it; editing code changes it."""
    sha = hashlib.sha256(f"{salt}\n".encode())
    for path in paths:
        path = Path(path)
        sha.update(f"{path.relative_to(root).as_posix() if root else path.name}\n".encode())
        sha.update(syntax(path).encode())
    return sha.hexdigest()


#: (device, inode, size, mtime ns) and SHA-256 of files hashed in this process, by resolved path.
_SHA256: dict[str, tuple[tuple[int, int, int, int], str]] = {}
#: Files modified less than this many ns ago are hashed again (a file rewritten in place within one tick of
#: the file system's clock keeps its mtime).
_SETTLED_NS = 2_000_000_000


def file_fingerprint(path: Path) -> dict | None:
    """``{"size": bytes, "sha256": hex}`` of a file, or None when it is not one. Hashed once per process for
    each (path, device, inode, size, mtime) once the file is 2 s old."""
    path = Path(path)
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not path.is_file():
        return None
    key, signature = str(path.resolve()), (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _SHA256.get(key)
    if cached is None or cached[0] != signature or time.time_ns() - stat.st_mtime_ns < _SETTLED_NS:
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        cached = _SHA256[key] = (signature, sha.hexdigest())
    return {"size": stat.st_size, "sha256": cached[1]}


def folder_fingerprint(folder: Path) -> dict | None:
    """``{"files": count, "bytes": total size, "sha256": hex}`` over the sorted (name, size) of the files directly
    in ``folder`` (an image folder: names and sizes, not the contents), or None when it does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    with os.scandir(folder) as entries:
        files = sorted((e.name, e.stat().st_size) for e in entries if e.is_file())
    sha = hashlib.sha256()
    for name, size in files:
        sha.update(f"{name}\t{size}\n".encode())
    return {"files": len(files), "bytes": sum(size for _, size in files), "sha256": sha.hexdigest()}
