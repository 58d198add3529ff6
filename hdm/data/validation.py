"""Checks run when annotation files are loaded, so that a malformed file fails at once with a one-line
``AnnotationError`` naming the file, the annotation and the fix, instead of a bare ``KeyError`` at load or a
NaN in the loss twenty seconds into training; and the cheap completeness check of image bytes.

COCO format (``validate_coco``): the top level is an object with ``images``, ``annotations`` and ``categories``
lists; every image has ``id``, ``file_name``, ``width``, ``height``; every annotation ``id``, ``image_id``
(listed in ``images``), ``category_id`` (listed in ``categories``), a finite ``bbox`` ``[x, y, w, h]`` and, for a
category with keypoint names, ``keypoints`` ``[x, y, v] * K``. Visibility flags must be numbers; a labelled
joint (``v > 0``) needs finite x, y; an unlabelled one (``v = 0``) may hold anything (``null``, NaN), which is
replaced by 0. Image and annotation ids are integers (a string id is refused, its type shown). Missing ``area``
(-> bbox w * h), ``num_keypoints`` (-> count of ``v > 0``) and ``iscrowd`` (-> 0) are filled in, since pycocotools'
COCOeval needs them; a ``num_keypoints`` that disagrees with the keypoints is recomputed, with one warning per file
(COCOeval ignores persons with ``num_keypoints`` 0: a stale 0 on labelled persons gave AP NaN). A category's
``skeleton`` that does not fit its keypoints (real CrowdPose files list COCO's 17-joint skeleton beside 14
keypoints) is dropped with a warning: it only serves drawing.

MPII (HRNet's json layout, ``validate_mpii``): a list of persons with ``image``, ``center`` (2 numbers) and
``scale`` (> 0); ``joints`` (16 x 2) and ``joints_vis`` (16) when present, labelled joints finite.
"""

from __future__ import annotations

import json
import logging
import math
from numbers import Integral, Number
from pathlib import Path

import numpy as np

from hdm.data.errors import AnnotationError, CorruptImageError

log = logging.getLogger(__name__)

COCO_KEYS = ("images", "annotations", "categories")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")
IMAGE_KEYS = ("id", "file_name", "width", "height")


def read_json(path: Path | str, fix: str = "restore the file (re-download or re-extract it)"):
    """The parsed content of a JSON file, or ``AnnotationError`` naming the file, the position and ``fix``."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not UTF-8 text (byte {err.start}): it is not a JSON file; {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno} (char {err.pos} of {len(text)})"
        cut = " it looks truncated;" if len(text.rstrip()) - err.pos < 2048 or "Unterminated" in err.msg else ""
        msg = err.msg if err.msg.endswith(" at") else f"{err.msg} at"
        raise AnnotationError(f"{path}: invalid JSON: {msg}: {where};{cut} {fix}") from None


def _is_number(v) -> bool:
    return isinstance(v, Number) and not isinstance(v, complex)


def _finite(v) -> bool:
    return _is_number(v) and math.isfinite(v)


def _is_id(v) -> bool:
    """An integer id: a Python or NumPy integer, or an integral float (it looks ids up as the integer does); not
    a bool, not a string."""
    if isinstance(v, (bool, np.bool_)):
        return False
    return isinstance(v, Integral) or (isinstance(v, float) and v.is_integer())


def with_type(v) -> str:
    """``'785' (str)``: a value with its type, for messages about ids that look alike but do not match."""
    return f"{v!r} ({type(v).__name__})"


def _skeleton_problem(skeleton, k: int) -> str | None:
    """Why a category's ``skeleton`` does not fit its ``k`` keypoints (1-based index pairs), or None."""
    if not isinstance(skeleton, list):
        return f"skeleton {str(skeleton)[:40]!r} is not a list of edges"
    for edge in skeleton:
        if not (isinstance(edge, list) and len(edge) == 2 and all(isinstance(e, int) and 1 <= e <= k for e in edge)):
            return f"skeleton edge {edge!r} is not two 1-based keypoint indices in 1..{k}"
    return None


def _describe(ann: dict, position: int) -> str:
    if isinstance(ann, dict) and "id" in ann:
        image = f", image_id {ann['image_id']!r}" if "image_id" in ann else ""
        return f"annotation id {ann['id']}{image}"
    return f"annotation #{position} (0-based position in 'annotations')"


def _numeric_table(rows: list, width: int) -> np.ndarray | None:
    """(N, width) float64 of ``rows`` when every row is a list of ``width`` plain numbers (fast path), else None."""
    if not rows:
        return np.zeros((0, width))
    try:
        table = np.array(rows)
    except (ValueError, TypeError):
        return None
    if table.dtype.kind not in "biuf" or table.shape != (len(rows), width):
        return None
    return table.astype(np.float64, copy=False)


def _keypoint_row(values, k: int, names: list[str]) -> np.ndarray:
    """(3K,) float64 of one annotation's keypoints with None -> NaN; raises ValueError with the reason."""
    if not isinstance(values, list):
        raise ValueError(f"'keypoints' must be a list [x, y, v] * {k}, got {type(values).__name__}")
    if len(values) != 3 * k:
        raise ValueError(
            f"'keypoints' holds {len(values)} numbers, the category lists {k} keypoints ({3 * k} numbers expected)"
        )
    bad = [i for i, v in enumerate(values) if v is not None and not _is_number(v)]
    if bad:
        i = bad[0]
        name = f" ({names[i // 3]!r})" if i // 3 < len(names) else ""
        raise ValueError(f"keypoint {i // 3}{name} has a non-numeric {'xyv'[i % 3]} = {values[i]!r}")
    return np.array([np.nan if v is None else float(v) for v in values])


def _check_keypoints(rows: np.ndarray, anns: list, positions: list, names: list[str], path) -> None:
    """Reject non-finite flags and non-finite labelled coordinates; zero the coordinates of unlabelled joints
    that are not finite (in the annotation dicts). rows: (N, 3K)."""
    x, y, v = rows[:, 0::3], rows[:, 1::3], rows[:, 2::3]
    bad_v = ~np.isfinite(v)
    bad_xy = (v > 0) & ~(np.isfinite(x) & np.isfinite(y))
    for bad, what in ((bad_v, "flag"), (bad_xy, "xy")):
        if bad.any():
            n, j = np.argwhere(bad)[0]
            name = names[j] if j < len(names) else f"#{j}"
            where = f"{path}: {_describe(anns[n], positions[n])}: keypoint {j} ({name!r})"
            if what == "flag":
                raise AnnotationError(
                    f"{where} has visibility flag v={float(v[n, j]):g} (null or NaN in the file); "
                    "use v=0 (unlabelled), 1 or 2"
                )
            raise AnnotationError(
                f"{where} is labelled (v={v[n, j]:g}) but its position is ({float(x[n, j]):g}, {float(y[n, j]):g}) "
                "(null, NaN or infinite in the file); fix the coordinates or mark the joint unlabelled (v=0)"
            )
    unlabelled = (v <= 0) & ~(np.isfinite(x) & np.isfinite(y))
    for n in np.flatnonzero(unlabelled.any(axis=1)):
        kp = anns[n]["keypoints"]
        for j in np.flatnonzero(unlabelled[n]):
            kp[3 * j] = kp[3 * j + 1] = 0


def validate_coco(data, path: Path | str) -> dict:
    """Check a parsed COCO-format annotation file (see the module docstring) and fill in its missing
    ``area``, ``num_keypoints`` and ``iscrowd``, in place.

    Returns ``data``. Raises ``AnnotationError`` (one line: file, annotation id, fix) on the first defect."""
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        hint = (
            " (a list is a COCO results/detections file or HRNet's MPII layout, not annotations)"
            if isinstance(data, list)
            else ""
        )
        raise AnnotationError(
            f"{path}: the top level is a JSON {kind}, expected a COCO annotation object with 'images', "
            f"'annotations' and 'categories'{hint}; pass the keypoint annotation file (e.g. person_keypoints_val2017.json)"
        )
    missing = [key for key in COCO_KEYS if key not in data]
    if missing:
        raise AnnotationError(
            f"{path}: no {missing} at the top level (keys: {sorted(data)[:10]}); a COCO keypoint annotation file "
            "holds 'images', 'annotations' and 'categories' lists"
        )
    for key in COCO_KEYS:
        if not isinstance(data[key], list):
            raise AnnotationError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")

    image_ids = set()
    for i, image in enumerate(data["images"]):
        lacks = [k for k in IMAGE_KEYS if not isinstance(image, dict) or k not in image]
        if lacks:
            raise AnnotationError(f"{path}: image #{i} lacks {lacks}; every image needs {list(IMAGE_KEYS)}")
        if not (_finite(image["width"]) and _finite(image["height"]) and image["width"] > 0 and image["height"] > 0):
            raise AnnotationError(
                f"{path}: image id {image['id']} has size {image['width']!r} x {image['height']!r}; width and height "
                "must be positive pixel counts"
            )
        if not _is_id(image["id"]):
            raise AnnotationError(
                f"{path}: image #{i} has id {with_type(image['id'])}; image ids must be integers (COCO format; samples "
                "carry them as int64): write them as numbers, in 'images' and in the annotations' image_id"
            )
        if image["id"] in image_ids:
            raise AnnotationError(f"{path}: image id {image['id']} is listed twice in 'images'; ids must be unique")
        image_ids.add(image["id"])

    num_keypoints: dict = {}  # category id -> K, or None when the category lists no keypoint names
    names: dict = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise AnnotationError(f"{path}: category #{i} lacks 'id'")
        kp_names = cat.get("keypoints")
        if kp_names is not None and (not isinstance(kp_names, list) or not all(isinstance(n, str) for n in kp_names)):
            raise AnnotationError(f"{path}: category id {cat['id']}: 'keypoints' must be a list of joint names")
        num_keypoints[cat["id"]] = len(kp_names) if kp_names else None
        names[cat["id"]] = list(kp_names or [])
        problem = _skeleton_problem(cat["skeleton"], len(kp_names or [])) if "skeleton" in cat else None
        if problem:
            log.warning(
                "%s: category id %s: %s (its %d keypoints); the skeleton is dropped (it only serves drawing)",
                path, cat["id"], problem, len(kp_names or []),
            )
            del cat["skeleton"]

    anns = data["annotations"]
    ann_ids = set()
    by_category: dict = {}
    for n, ann in enumerate(anns):
        lacks = [k for k in ANNOTATION_KEYS if not isinstance(ann, dict) or k not in ann]
        if isinstance(ann, dict) and "keypoints" not in ann and num_keypoints.get(ann.get("category_id")):
            lacks.append("keypoints")
        if lacks:
            raise AnnotationError(
                f"{path}: {_describe(ann, n)} lacks {lacks}; every annotation needs {list(ANNOTATION_KEYS)} and, in a "
                "keypoint category, 'keypoints' [x, y, v] * K: add them or drop the annotation"
            )
        if not _is_id(ann["id"]):
            raise AnnotationError(
                f"{path}: annotation #{n} has id {with_type(ann['id'])}; annotation ids must be integers (COCO "
                "format): write them as numbers"
            )
        if ann["id"] in ann_ids:
            raise AnnotationError(f"{path}: annotation id {ann['id']} appears twice; annotation ids must be unique")
        ann_ids.add(ann["id"])
        if not _is_id(ann["image_id"]):
            example = f" (e.g. {with_type(next(iter(image_ids)))})" if image_ids else ""
            raise AnnotationError(
                f"{path}: annotation id {ann['id']} has image_id {with_type(ann['image_id'])}; image ids must be "
                f"integers, like those 'images' lists{example}: write the image_id as a number"
            )
        if ann["image_id"] not in image_ids:
            raise AnnotationError(
                f"{path}: {_describe(ann, n)} refers to image_id {with_type(ann['image_id'])}, which 'images' does not "
                "list; add the image or drop the annotation"
            )
        if ann["category_id"] not in num_keypoints:
            raise AnnotationError(
                f"{path}: {_describe(ann, n)} has category_id {ann['category_id']!r}, which 'categories' does not "
                f"list (categories: {sorted(num_keypoints, key=str)[:10]})"
            )
        by_category.setdefault(ann["category_id"], []).append(n)

    boxes = _numeric_table([a["bbox"] for a in anns], 4)
    if boxes is None or not np.isfinite(boxes).all():
        for n, ann in enumerate(anns):
            box = ann["bbox"]
            if not (isinstance(box, list) and len(box) == 4 and all(_finite(b) for b in box)):
                raise AnnotationError(
                    f"{path}: {_describe(ann, n)} has bbox {box!r}; it must be 4 finite numbers [x, y, w, h] (image px)"
                )
    for n, ann in enumerate(anns):
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        elif not _finite(ann["area"]):
            raise AnnotationError(f"{path}: {_describe(ann, n)} has area {ann['area']!r}; use a finite number (px^2)")
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0

    stale = []  # (annotation, its num_keypoints) where num_keypoints disagrees with the keypoints
    for cat_id, positions in by_category.items():
        k = num_keypoints[cat_id]
        members = [anns[n] for n in positions]
        with_kp = [(n, a) for n, a in zip(positions, members) if "keypoints" in a]
        if not with_kp:
            continue
        if k is None:  # no names: every annotation of the category must agree on K
            lengths = {len(a["keypoints"]) if isinstance(a["keypoints"], list) else -1 for _, a in with_kp}
            if len(lengths) != 1 or min(lengths) % 3 or min(lengths) <= 0:
                raise AnnotationError(
                    f"{path}: category id {cat_id} lists no keypoint names and its annotations hold keypoint lists "
                    f"of lengths {sorted(lengths)}; every one must be [x, y, v] * K for one K: add 'keypoints' names"
                )
            k = min(lengths) // 3
        kp_anns = [a for _, a in with_kp]
        kp_pos = [n for n, _ in with_kp]
        rows = _numeric_table([a["keypoints"] for a in kp_anns], 3 * k)
        if rows is None:
            rows = np.empty((len(kp_anns), 3 * k))
            for i, (n, ann) in enumerate(with_kp):
                try:
                    rows[i] = _keypoint_row(ann["keypoints"], k, names[cat_id])
                except ValueError as err:
                    raise AnnotationError(
                        f"{path}: {_describe(ann, n)}: {err}; keypoints are [x, y, v] * K numbers "
                        "(x = y = v = 0 for an unlabelled joint)"
                    ) from None
        _check_keypoints(rows, kp_anns, kp_pos, names[cat_id], path)
        labelled = (rows[:, 2::3] > 0).sum(axis=1)
        for ann, count in zip(kp_anns, labelled):
            if "num_keypoints" in ann and ann["num_keypoints"] != count:
                stale.append((ann, ann["num_keypoints"]))
            ann["num_keypoints"] = int(count)
    if stale:
        ann, was = stale[0]
        log.warning(
            "%s: num_keypoints disagreed with the keypoints' count of labelled joints (v > 0) in %d annotations "
            "(e.g. annotation id %s: num_keypoints %r, %d labelled); recomputed from the keypoints (COCOeval "
            "ignores a person whose num_keypoints is 0)",
            path, len(stale), ann["id"], was, ann["num_keypoints"],
        )
    return data


def validate_mpii(entries, path: Path | str, num_joints: int = 16) -> list:
    """Check HRNet's MPII json (see the module docstring), in place: unlabelled joints' non-finite coordinates
    become 0. Returns ``entries``; raises ``AnnotationError`` naming the file and the entry's row."""
    if not isinstance(entries, list):
        hint = " (an object with 'annotations' is COCO format: use CocoTopDown)" if isinstance(entries, dict) else ""
        raise AnnotationError(
            f"{path}: the top level is a JSON {type(entries).__name__}, expected HRNet's MPII layout: a list of "
            f"persons {{'image', 'center', 'scale', 'joints', 'joints_vis'}}{hint}"
        )
    k = num_joints
    for row, entry in enumerate(entries):
        image = f" (image {entry['image']!r})" if isinstance(entry, dict) and "image" in entry else ""
        where = f"{path}: entry {row}{image}"
        lacks = [key for key in ("image", "center", "scale") if not isinstance(entry, dict) or key not in entry]
        if lacks:
            raise AnnotationError(f"{where} lacks {lacks}; every person needs 'image', 'center' [x, y] and 'scale'")
        center, scale = entry["center"], entry["scale"]
        if not (isinstance(center, list) and len(center) == 2 and all(_finite(c) for c in center)):
            raise AnnotationError(f"{where} has center {center!r}; it must be 2 finite numbers [x, y] (image px)")
        if not (_finite(scale) and scale > 0):
            raise AnnotationError(f"{where} has scale {scale!r}; it must be a positive number (person height / 200 px)")
        vis = entry.get("joints_vis")
        if vis is not None and not (isinstance(vis, list) and len(vis) == k and all(_finite(v) for v in vis)):
            raise AnnotationError(f"{where} has joints_vis {vis!r}; it must be {k} numbers (1 = labelled, 0 = not)")
        joints = entry.get("joints")
        if joints is None:
            continue
        if not (isinstance(joints, list) and len(joints) == k and all(isinstance(j, list) and len(j) == 2 for j in joints)):
            raise AnnotationError(f"{where}: 'joints' must be {k} [x, y] pairs, got {str(joints)[:80]}")
        flags = vis if vis is not None else [0] * k
        for j, (xy, v) in enumerate(zip(joints, flags)):
            if all(_finite(c) for c in xy):
                continue
            if any(c is not None and not _is_number(c) for c in xy):
                raise AnnotationError(f"{where}: joint {j} has non-numeric coordinates {xy!r}; use numbers")
            if v > 0:
                raise AnnotationError(
                    f"{where}: joint {j} is labelled (joints_vis=1) but its position is {xy!r}; fix the coordinates "
                    "or set joints_vis to 0"
                )
            joints[j] = [0.0, 0.0]
    return entries


# ---------------------------------------------------------------------------------------------------------
# Images

JPEG_START, JPEG_END, JPEG_SCAN = b"\xff\xd8", b"\xff\xd9", b"\xff\xda"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND"


def truncation(data: bytes) -> str | None:
    """Why the bytes of a JPEG or PNG image are incomplete, or None when they end properly (other formats:
    None, left to the decoder).

    JPEG: the end-of-image marker FF D9 ends the file (trailing zero padding allowed), or at least follows the
    last start-of-scan marker (data appended after a complete image is allowed). Scan data cannot hold FF D9
    (0xFF is byte-stuffed there), so a file cut inside its scans fails. PNG: the IEND chunk is present.
    Cost: a look at the last bytes, and one reverse search for files with trailing data."""
    if data.startswith(JPEG_START):
        if data.rstrip(b"\x00").endswith(JPEG_END):
            return None
        scan = data.rfind(JPEG_SCAN)
        if scan < 0:
            return "the JPEG has no image data (no start-of-scan marker)"
        if data.rfind(JPEG_END) > scan:
            return None
        return "the JPEG is truncated (no end-of-image marker after its last scan)"
    if data.startswith(PNG_START):
        return None if data.rfind(PNG_END) > len(PNG_START) else "the PNG is truncated (no IEND chunk)"
    return None


def check_image_bytes(data: bytes, path) -> None:
    """``CorruptImageError`` naming ``path`` when ``truncation(data)`` finds the image incomplete."""
    reason = truncation(data)
    if reason is not None:
        raise CorruptImageError(
            f"{path}: {reason}, {len(data)} bytes: the file was cut short (interrupted download, copy or "
            "extraction); restore it from the original archive"
        )
