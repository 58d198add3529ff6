"""Body-part segmentation of synthetic people: the neutral pretraining task that stands in for ImageNet.

The paper fine-tunes ImageNet-initialised backbones; nothing can be downloaded here, so ``hdm.engine.pretraining``
pretrains the backbone once on a task the synthetic generator labels for free and that favours none of the
three pose targets (Gaussian, dot, ours): which body part (or background) each heatmap pixel of a person crop
shows. The parts are those the generator draws (``synthetic._PARTS``: torso, head, neck, and left/right upper
arm, forearm, hand, thigh, shin, foot), of every figure in the crop; occluders and background are class 0.
No joint position is a target.

Images come from their own stream (split ``"pretrain"``), disjoint from the train/val images of every preset,
and are cached under ``data_root()/synthetic/parts_<n>_<W>x<H>_seed<s>_g<code hash>/`` (``images/<id>.jpg``,
``parts/<id>.png``, ``people.json`` with each figure's box), written atomically like ``synthetic_split``; the code
hash (``generator_version``) covers the generator and this module, so a code change regenerates them.

Legend: H x W input-crop px, h x w label px (= heatmap px, H / 4).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from hdm import codehash
from hdm.data import synthetic
from hdm.data.transforms import normalize_image, warp_image
from hdm.geometry import box_to_center_scale, crop_matrix, hflip_matrix
from hdm.paths import data_root

#: Class names: 0 background (and occluders), then the generator's drawn parts in its order.
PART_CLASSES = ("background",) + tuple(name for name, _, _ in synthetic._PARTS)
NUM_CLASSES = len(PART_CLASSES)


def _flip_classes() -> np.ndarray:
    """(NUM_CLASSES,) class of each class in the mirrored image (left and right parts swap)."""
    index = {name: c for c, name in enumerate(PART_CLASSES)}
    swap = {"l_": "r_", "r_": "l_"}
    return np.array([index.get(swap.get(n[:2], "") + n[2:], c) if n[:2] in swap else c
                     for c, n in enumerate(PART_CLASSES)], dtype=np.int64)  # fmt: skip


FLIP_CLASSES = _flip_classes()


def part_labels(labels: np.ndarray) -> np.ndarray:
    """The generator's label map (figure x part, 255 occluders) -> part classes (H, W) uint8, 0 background."""
    figure_part = labels.astype(np.int64) - 1
    classes = np.where((labels > 0) & (labels < 255), figure_part % synthetic._LABELS_PER_FIGURE + 1, 0)
    return classes.astype(np.uint8)


@functools.lru_cache(maxsize=1)
def generator_version() -> str:
    """12 hex digits of the syntax hash of the code that draws the pretraining images and labels (the synthetic
    generator and this module): part of the cache folder's name, so a code change regenerates them."""
    files = [Path(synthetic.__file__), Path(__file__)]
    return codehash.syntax_hash(files, salt="synthetic parts")[:12]


def parts_split(num_images: int, seed: int = 0, image_size: tuple[int, int] = (256, 256)) -> Path:
    """The cached pretraining images, generated if missing; returns the folder. image_size: (W, H) px."""
    width, height = (int(v) for v in image_size)
    name = f"parts_{num_images}_{width}x{height}_seed{seed}_g{generator_version()}"
    folder = data_root() / "synthetic" / name
    if (folder / "people.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    split_key = zlib.crc32(b"pretrain")
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / "parts").mkdir()
        people = []
        for i in tqdm(range(num_images), desc="synthetic parts", unit="img", mininterval=1.0):
            img, figures, labels = synthetic._render_image(np.random.default_rng([seed, split_key, i]), width, height)
            stem = f"{i + 1:012d}"
            ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, synthetic._JPEG_QUALITY])
            ok_png, png = cv2.imencode(".png", part_labels(labels))
            if not (ok and ok_png):
                raise RuntimeError(f"OpenCV could not encode pretraining image {stem}")
            (tmp / "images" / f"{stem}.jpg").write_bytes(jpeg.tobytes())
            (tmp / "parts" / f"{stem}.png").write_bytes(png.tobytes())
            people += [{"image": stem, "bbox": f["bbox"]} for f in figures]
        (tmp / "people.json").write_text(json.dumps({"size": [width, height], "people": people}))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first: keep its copy
            if not (folder / "people.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class PartCrops(Dataset):
    """Person crops of the pretraining images with their part-class maps at heatmap resolution.

    Args:
        folder: a ``parts_split`` folder. input_hw: (H, W) crop px. heatmap_hw: (h, w) label px.
        people: indices into the folder's people (a train/val split of them). train: augment (flip 0.5,
        scale 0.25, rotation 30 with probability 0.6, HRNet's MPII recipe) with draws per (seed, epoch, index).
    Items: ``{"image": (3, H, W) float32 normalised, "parts": (h, w) int64 classes}``.
    """

    def __init__(self, folder: Path, input_hw: tuple[int, int], heatmap_hw: tuple[int, int], people,
                 train: bool, seed: int = 0):  # fmt: skip
        meta = json.loads((Path(folder) / "people.json").read_text())
        self.folder, self.input_hw, self.heatmap_hw = Path(folder), tuple(input_hw), tuple(heatmap_hw)
        self.people = [meta["people"][i] for i in people]
        self.width = int(meta["size"][0])
        self.train, self.seed, self.epoch = bool(train), int(seed), 0

    def __len__(self) -> int:
        return len(self.people)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        person = self.people[index]
        center, scale = box_to_center_scale(person["bbox"], self.input_hw[1] / self.input_hw[0])
        rotation, flip = 0.0, False
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            scale = scale * float(np.clip(1 + 0.25 * rng.standard_normal(), 0.75, 1.25))
            rotation = float(np.clip(30 * rng.standard_normal(), -60, 60)) if rng.random() < 0.6 else 0.0
            flip = bool(rng.random() < 0.5)
        mirror = hflip_matrix(self.width) if flip else np.eye(3)
        image = cv2.cvtColor(cv2.imread(str(self.folder / "images" / f"{person['image']}.jpg")), cv2.COLOR_BGR2RGB)
        parts = cv2.imread(str(self.folder / "parts" / f"{person['image']}.png"), cv2.IMREAD_GRAYSCALE)
        crop = crop_matrix(center, scale, rotation, self.input_hw) @ mirror
        label_crop = crop_matrix(center, scale, rotation, self.heatmap_hw) @ mirror
        h, w = self.heatmap_hw
        labels = cv2.warpAffine(parts, label_crop[:2], (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        labels = labels.astype(np.int64)
        if flip:
            labels = FLIP_CLASSES[labels]
        return {"image": normalize_image(warp_image(image, crop, self.input_hw)), "parts": torch.from_numpy(labels)}
