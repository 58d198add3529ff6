"""Errors of the data layer: files missing, no person to yield, malformed annotations, corrupt images, and
joint metadata that cannot serve a request. Every message is one line naming the file and the fix (except
``DatasetNotFoundError``, which lists the expected layout)."""

from __future__ import annotations

from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder is missing. The message names it, the expected layout and where to get the data."""


class EmptyDatasetError(ValueError):
    """The annotation (or detection) file was read but holds no person the dataset can yield."""


def missing(what: str, path: Path | str, layout: list[str], source: str) -> DatasetNotFoundError:
    """Build the error for a missing ``path`` (or one of the wrong kind: a file where a folder is expected, or
    the reverse).

    Args:
        what: what is missing, e.g. "COCO keypoint annotations".
        path: the path that was looked up.
        layout: the files and folders the dataset expects (full paths, under ``hdm.paths.data_root()``).
        source: where to get the data (nothing is ever downloaded automatically).
    """
    lines = "\n".join(f"  {entry}" for entry in layout)
    found = Path(path)
    if found.is_dir():  # a file was expected
        problem = f"{what}: {path} is a folder, not a file"
    elif found.exists():  # a folder was expected (callers look files up with is_file, folders with is_dir)
        problem = f"{what}: {path} is a file, not a folder"
    else:
        problem = f"{what} not found: {path} does not exist"
    return DatasetNotFoundError(
        f"{problem}.\n"
        f"Expected layout (the data root moves with the HDM_DATA environment variable):\n{lines}\n"
        f"{source} Nothing is downloaded automatically: place the files there, or pass their paths."
    )


class AnnotationError(ValueError):
    """An annotation file (or one annotation in it) is malformed. The one-line message names the file, the
    annotation (id, or row for MPII) and the fix."""


class CorruptImageError(ValueError):
    """An image file exists but cannot be decoded, or is truncated (e.g. a JPEG cut short by an interrupted
    copy). The message names the file."""


class JointSetError(ValueError):
    """A dataset's joint metadata cannot serve a request: no OKS sigmas for evaluation, left/right names
    without a twin for flipping, or a joint set that does not fit the annotations."""
