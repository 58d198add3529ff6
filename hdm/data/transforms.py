"""The top-down sample pipeline that COCO and MPII share: augmentation draws, crop warping, normalisation,
and the ``TopDownDataset`` base class that turns person records into samples.

Legend: K joints; ``(W_in, H_in)`` input crop px; ``(W_hm, H_hm)`` heatmap px; stride = W_in / W_hm.
Geometry conventions (pixel centres on integers, input px = stride x heatmap px) are in ``hdm.geometry``.

A sample is a dict (every value collates with ``torch.utils.data.default_collate``):

=================  ===============  =====================================================================
key                dtype, shape     meaning
=================  ===============  =====================================================================
image              float32 (3,H,W)  RGB crop, ImageNet mean/std normalised
joints             float32 (K, 2)   heatmap px (x, y); zeros for unlabelled joints
visibility         float32 (K,)     1 if labelled and ``floor(x + 0.5), floor(y + 0.5)`` is inside the
                                    heatmap, else 0: the target weight of every method
keypoint_flags     int64 (K,)       raw labels (COCO v = 0/1/2; MPII joints_vis 0/1), permuted like joints
image_joints       float32 (K, 2)   the annotation in original-image px (0-based), never flipped or
                                    permuted; zeros for unlabelled joints
center, scale      float32 (2,)     crop box: image px; units of 200 px (after augmentation)
rotation           float32 ()       degrees
flipped            bool             the crop was taken from the mirrored image; ``center`` is then in the
                                    mirrored image's frame (``x -> image_width - 1 - x``)
image_size         int64 (2,)       original image (width, height) px
image_id           int64 ()
annotation_id      int64 ()         -1 for detector boxes
area               float32 ()       person area, image px^2 (COCO: annotation area or box w*h)
box_score          float32 ()       detector score; 1 for ground-truth boxes
head_size          float32 ()       MPII only, when head boxes are given (see ``hdm.data.mpii``)
=================  ===============  =====================================================================

Back to the original image: ``hdm.geometry.heatmap_to_image(joints, center, scale, heatmap_hw, rotation)``,
then, if ``flipped``, ``x -> image_width - 1 - x`` and undo the left/right swap (``JointSet.flip_permutation``).

``floor(x + 0.5)`` equals HRNet's ``int(x + 0.5)`` for every ``x >= -0.5``; for ``x`` in ``(-1.5, -0.5)``
it gives -1 (outside) where C truncation gives 0, so a joint counts exactly when ``-0.5 <= x < W_hm - 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from hdm.data.errors import AnnotationError, CorruptImageError, DatasetNotFoundError, EmptyDatasetError
from hdm.data.keypoints import JointSet
from hdm.data.validation import check_image_bytes
from hdm.geometry import PIXEL_STD, crop_matrix, hflip_matrix

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_BODY_PADDING = 1.5  # HRNet enlarges half-body boxes by 1.5 (full boxes by 1.25)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation (HRNet). Defaults are HRNet's COCO recipe; MPII uses 0.25 / 30 / no half-body.

    flip: mirror with probability 0.5. scale_factor: scale *= clip(1 + sf * N(0,1), 1 - sf, 1 + sf).
    rotation_factor: rotation = clip(rf * N(0,1), -2 rf, 2 rf) degrees, applied with ``rotation_prob``.
    half_body_prob: probability of cropping the upper or lower body, tried when more than
    ``half_body_min_joints`` joints are labelled.
    """

    flip: bool = True
    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8

    def __post_init__(self):
        if not 0 <= self.scale_factor < 1:
            raise ValueError(f"scale_factor must lie in [0, 1), got {self.scale_factor}")
        for name in ("rotation_prob", "half_body_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if self.rotation_factor < 0:
            raise ValueError(f"rotation_factor must be >= 0 degrees, got {self.rotation_factor}")


@dataclass
class PersonRecord:
    """One person to crop. ``joints``: (K, 2) float64 image px (0-based), zeros where ``flags == 0``;
    ``flags``: (K,) int64 raw labels; ``center`` (2,) image px; ``scale`` (2,) units of 200 px, already at the
    crop's aspect ratio; ``image_size``: (w, h) px, or None to read it from the image header when needed;
    ``size_source``: the annotation file that gave ``image_size`` (checked against the decoded image), or None."""

    image_path: Path
    image_size: tuple[int, int] | None
    center: np.ndarray
    scale: np.ndarray
    joints: np.ndarray
    flags: np.ndarray
    image_id: int
    annotation_id: int
    area: float
    box_score: float = 1.0
    head_size: float | None = None
    size_source: Path | str | None = None


@dataclass(frozen=True)
class Crop:
    """The crop a sample is cut with: ``center`` (2,) image px (mirrored frame if ``flipped``), ``scale`` (2,)
    units of 200 px, ``rotation`` degrees."""

    center: np.ndarray
    scale: np.ndarray
    rotation: float = 0.0
    flipped: bool = False


def half_body_box(
    joints: np.ndarray, labelled: np.ndarray, joint_set: JointSet, aspect_ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """HRNet's half-body crop: the box around the labelled upper (or lower) body joints.

    The upper body is chosen when ``N(0,1) < 0.5`` (probability 0.69, as in HRNet) and it has more than 2
    labelled joints; otherwise the lower body if it has more than 2, else the upper body.

    Args:
        joints: (K, 2) image px. labelled: (K,) bool. aspect_ratio: crop w / h.
    Returns:
        (center (2,), scale (2,)) with the box at ``aspect_ratio`` enlarged by 1.5, or None when the chosen
        part has fewer than 2 labelled joints.
    """
    upper = [k for k in joint_set.upper_body if labelled[k]]
    lower = [k for k in joint_set.lower_body if labelled[k]]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    pts = joints[chosen]
    center = pts.mean(axis=0)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) / PIXEL_STD * HALF_BODY_PADDING


def draw_crop(
    record: PersonRecord, aug: Augmentation, joint_set: JointSet, aspect_ratio: float, rng: np.random.Generator
) -> Crop:
    """One random training crop of ``record``, in HRNet's order: half-body, scale, rotation, flip."""
    center, scale = record.center.copy(), record.scale.copy()
    labelled = record.flags > 0
    if aug.half_body_prob > 0 and rng.random() < aug.half_body_prob and labelled.sum() > aug.half_body_min_joints:
        box = half_body_box(record.joints, labelled, joint_set, aspect_ratio, rng)
        if box is not None:
            center, scale = box
    sf, rf = aug.scale_factor, aug.rotation_factor
    scale = scale * np.clip(1.0 + sf * rng.standard_normal(), 1.0 - sf, 1.0 + sf)
    rotation = 0.0
    if rng.random() < aug.rotation_prob:
        rotation = float(np.clip(rf * rng.standard_normal(), -2.0 * rf, 2.0 * rf))
    flipped = bool(aug.flip and rng.random() < 0.5)
    if flipped:
        center = center.copy()
        center[0] = image_size(record)[0] - 1 - center[0]
    return Crop(center=center, scale=scale, rotation=rotation, flipped=flipped)


def image_size(record: PersonRecord) -> tuple[int, int]:
    """(w, h) px of the record's image, read from the file header once if the annotation lacks it."""
    if record.image_size is None:
        if not Path(record.image_path).is_file():
            raise DatasetNotFoundError(f"image not found: {record.image_path} (listed in the annotations)")
        with Image.open(record.image_path) as im:
            record.image_size = im.size
    return record.image_size


def read_image(path: Path | str) -> np.ndarray:
    """(H, W, 3) uint8 RGB, EXIF orientation ignored (as HRNet reads COCO).

    Raises ``DatasetNotFoundError`` for a missing file and ``CorruptImageError`` (naming the file) for one that
    is empty, truncated (``hdm.data.validation.truncation``: OpenCV would decode a cut JPEG silently, grey below
    the cut) or cannot be decoded."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"image not found: {path} (listed in the annotations)") from None
    except OSError as err:
        raise CorruptImageError(
            f"{path}: cannot read the image file ({err.strerror}); check the file and its permissions"
        ) from None
    if not data:
        raise CorruptImageError(
            f"{path}: the image file is empty (0 bytes): an interrupted download, copy or extraction; restore it "
            "from the original archive"
        )
    check_image_bytes(data, path)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        image = None
    if image is None:
        raise CorruptImageError(
            f"{path}: OpenCV cannot decode these {len(data)} bytes as an image; restore the file from the original archive"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_decoded_size(record: PersonRecord, image: np.ndarray) -> None:
    """``AnnotationError`` when the (w, h) the annotation file gave ``record``'s image differs from the decoded
    ``image`` (H, W, 3): boxes were clipped and flips mirrored with the wrong size (swapped width and height
    dropped persons silently: oracle AP 1.0 -> 0.63). Records whose size came from the image itself pass."""
    if record.size_source is None or record.image_size is None:
        return
    height, width = image.shape[:2]
    json_w, json_h = record.image_size
    if (width, height) != (json_w, json_h):
        raise AnnotationError(
            f"{record.image_path}: decoded {width} x {height} px (width x height), but {record.size_source} gives "
            f"image id {record.image_id} width {json_w}, height {json_h}; fix 'width' and 'height' of that image "
            "in the annotation file (or restore the image it describes)"
        )


def check_header_size(record: PersonRecord) -> None:
    """:func:`check_decoded_size` from the image file's header alone (no decode): for paths that never read the
    pixels (the oracle). A file PIL cannot open is left to the decoding path, which names it."""
    if record.size_source is None or record.image_size is None or not Path(record.image_path).is_file():
        return
    try:
        with Image.open(record.image_path) as im:
            width, height = im.size
    except (OSError, ValueError):
        return
    check_decoded_size(record, np.empty((height, width, 0), np.uint8))


def warp_image(image: np.ndarray, matrix: np.ndarray, output_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear crop: output pixel ``q`` samples ``image`` at ``matrix^-1 q``; zeros outside the image.

    Args:
        image: (H, W, C) uint8. matrix: (3, 3) image -> crop. output_hw: (h, w) of the crop.
    Returns:
        (h, w, C) uint8.
    """
    h, w = output_hw
    return cv2.warpAffine(image, matrix[:2], (int(w), int(h)), flags=cv2.INTER_LINEAR, borderValue=0)


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, ``(x / 255 - mean) / std`` with ImageNet statistics."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def visible_in_heatmap(joints: np.ndarray, labelled: np.ndarray, heatmap_hw: tuple[int, int]) -> np.ndarray:
    """(K,) float32: 1 where labelled and the rounded pixel ``floor(joints + 0.5)`` lies inside the heatmap.

    Args:
        joints: (K, 2) heatmap px. labelled: (K,) bool. heatmap_hw: (H, W).
    """
    pix = np.floor(joints + 0.5)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < heatmap_hw[1]) & (pix[:, 1] >= 0) & (pix[:, 1] < heatmap_hw[0])
    return (inside & labelled).astype(np.float32)


class TopDownDataset(Dataset):
    """Person records -> top-down samples (see the module docstring for the sample dict).

    Training draws the augmentation of sample ``i`` in epoch ``e`` from ``numpy.random.default_rng((seed, e,
    i))``: runs are reproducible whatever the number of loader workers. Call ``set_epoch`` before building
    each epoch's iterator (persistent workers keep the epoch they were started with).

    Args:
        records: the persons. joint_set: their joints' definition (flip pairs, half-body split).
        input_hw: (H_in, W_in) crop px. heatmap_hw: (H_hm, W_hm); H_in / H_hm = W_in / W_hm integer.
        train: augment (True) or crop each record's box as is (False). augmentation: used when ``train``.
        seed: base seed of the augmentation draws.
    """

    def __init__(
        self,
        records: list[PersonRecord],
        joint_set: JointSet,
        input_hw: tuple[int, int],
        heatmap_hw: tuple[int, int],
        train: bool,
        augmentation: Augmentation,
        seed: int = 0,
    ):
        self.input_hw = tuple(int(v) for v in input_hw)
        self.heatmap_hw = tuple(int(v) for v in heatmap_hw)
        h_in, w_in = self.input_hw
        h_hm, w_hm = self.heatmap_hw
        if w_hm <= 0 or h_hm <= 0 or w_in % w_hm or h_in % h_hm or w_in // w_hm != h_in // h_hm:
            raise ValueError(
                f"input_hw {self.input_hw} must be heatmap_hw {self.heatmap_hw} times one integer stride "
                "(e.g. (256, 192) and (64, 48), as (H, W))"
            )
        if train and augmentation.half_body_prob > 0 and not (joint_set.upper_body and joint_set.lower_body):
            raise ValueError(
                f"half-body augmentation needs an upper/lower body split, which joint set {joint_set.name!r} "
                "lacks: pass half_body_prob=0"
            )
        if train and augmentation.flip:
            joint_set.require_flip_pairs()  # JointSetError: sided names without twins cannot be mirrored
        if not records:
            raise EmptyDatasetError("no person to yield: the annotations hold no usable person box")
        self.records = records
        self.joint_set = joint_set
        self.train = bool(train)
        self.augmentation = augmentation
        self.seed = int(seed)
        self.epoch = 0
        self._flip_perm = joint_set.flip_permutation() if joint_set.flip_pairs is not None else None

    @property
    def stride(self) -> int:
        """Input px per heatmap px."""
        return self.input_hw[1] // self.heatmap_hw[1]

    @property
    def num_joints(self) -> int:
        return self.joint_set.num_joints

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Left/right twins for flip testing; ``JointSetError`` when the joint set cannot pair its names."""
        return self.joint_set.require_flip_pairs()

    @property
    def sigmas(self) -> tuple[float, ...] | None:
        """The joint set's K OKS sigmas, for ``hdm.metrics`` (None when unknown: evaluation then asks for them)."""
        return self.joint_set.sigmas

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (training only; validation never augments)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def crop(self, index: int) -> Crop:
        """The crop of sample ``index``: the record's box (validation) or this epoch's random draw (training)."""
        record = self.records[index]
        if not self.train:
            return Crop(center=record.center.copy(), scale=record.scale.copy())
        rng = np.random.default_rng((self.seed, self.epoch, index))
        aspect = self.input_hw[1] / self.input_hw[0]
        return draw_crop(record, self.augmentation, self.joint_set, aspect, rng)

    def image_matrix(self, index: int, crop: Crop, output_hw: tuple[int, int]) -> np.ndarray:
        """(3, 3) original image px -> crop px of ``output_hw`` (H, W) (mirror first when ``crop.flipped``)."""
        matrix = crop_matrix(crop.center, crop.scale, crop.rotation, output_hw)
        if crop.flipped:
            matrix = matrix @ hflip_matrix(image_size(self.records[index])[0])
        return matrix

    def sample_geometry(self, index: int) -> dict:
        """Sample ``index`` without its image: every key but "image". Cheap (no decoding); for tests and
        for drawing heatmap-space joint sets."""
        return self._geometry(index, self.crop(index))

    def _geometry(self, index: int, crop: Crop) -> dict:
        record = self.records[index]
        matrix = self.image_matrix(index, crop, self.heatmap_hw)
        joints = record.joints @ matrix[:2, :2].T + matrix[:2, 2]
        flags = record.flags
        if crop.flipped:
            joints, flags = joints[self._flip_perm], flags[self._flip_perm]
        labelled = flags > 0
        joints = np.where(labelled[:, None], joints, 0.0)
        sample = {
            "joints": torch.from_numpy(joints.astype(np.float32)),
            "visibility": torch.from_numpy(visible_in_heatmap(joints, labelled, self.heatmap_hw)),
            "keypoint_flags": torch.from_numpy(flags.astype(np.int64)),
            "image_joints": torch.from_numpy(record.joints.astype(np.float32)),
            "center": torch.from_numpy(np.asarray(crop.center, np.float32)),
            "scale": torch.from_numpy(np.asarray(crop.scale, np.float32)),
            "rotation": torch.tensor(crop.rotation, dtype=torch.float32),
            "flipped": crop.flipped,
            "image_size": torch.tensor(image_size(record), dtype=torch.int64),
            "image_id": torch.tensor(record.image_id, dtype=torch.int64),
            "annotation_id": torch.tensor(record.annotation_id, dtype=torch.int64),
            "area": torch.tensor(record.area, dtype=torch.float32),
            "box_score": torch.tensor(record.box_score, dtype=torch.float32),
        }
        if record.head_size is not None:
            sample["head_size"] = torch.tensor(record.head_size, dtype=torch.float32)
        return sample

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        crop = self.crop(index)
        sample = self._geometry(index, crop)
        image = read_image(self.records[index].image_path)
        check_decoded_size(self.records[index], image)
        matrix = self.image_matrix(index, crop, self.input_hw)
        sample["image"] = normalize_image(warp_image(image, matrix, self.input_hw))
        return sample


def with_scale_aspect(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """(2,) scale whose height follows from its width at ``aspect_ratio`` = w / h (HRNet crops by width)."""
    return np.array([scale[0], scale[0] / aspect_ratio])


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augmentation",
    "Crop",
    "PersonRecord",
    "check_decoded_size",
    "TopDownDataset",
    "draw_crop",
    "half_body_box",
    "image_size",
    "normalize_image",
    "read_image",
    "visible_in_heatmap",
    "warp_image",
    "with_scale_aspect",
]
