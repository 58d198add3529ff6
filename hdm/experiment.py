"""One experiment: a config, ``train(config) -> Run`` and ``evaluate(run) -> dict``, at every scale.

    python -m hdm train --scale smoke --method hdm --seed 0                 # seconds, CI
    python -m hdm train --scale default --method gaussian --seed 0          # ~1.5 min on a 2-core CPU
    python -m hdm train --scale paper --dataset coco --method hdm           # COCO, HRNet-W48 256x192
    torchrun --standalone --nproc_per_node 4 -m hdm train --scale paper --dataset mpii --method hdm
    python -m hdm evaluate --run results/runs/hdm-default-<hash> --decoder argmax_shift --flip-test

    from hdm.experiment import preset, train
    run = train(preset("default", "hdm", seed=0))      # cached: a finished run returns at once
    run.metrics                                         # DataFrame, one row per epoch

Methods (the *only* thing a method changes is the target + loss of the training step, see ``MethodLoss``):

==============  =====================================================================  ===============
method          training target and loss                                               default decoder
==============  =====================================================================  ===============
gaussian        ``HeatmapMSELoss`` to Gaussian heatmaps (``sigma``), HRNet's baseline  argmax_shift
dot             ``HeatmapMSELoss`` to dot heatmaps (1 at the rounded pixel)            argmax_shift
hdm             ``HDMLoss``: exact EMD to the 4 sub-pixel demanders (ours, eq. 1)      local_com
hdm_naive       ``HDMLoss`` with one demander at the rounded pixel (ablation)          local_com
hdm_sinkhorn    ``HDMLoss`` with entropic OT (``sinkhorn_eps``) instead of exact        local_com
==============  =====================================================================  ===============

Finer choices are config keys: ``supplier`` (relu, the paper's; softplus; softmax) for the HDMLoss methods, and
``init_from`` to start from another run's final weights instead of HRNet's random init (fine-tuning). A *variant*
``"method+key:value+..."`` names a method with such overrides (``variant_preset``), e.g. ``"hdm+supplier:softplus"``
or ``"hdm+init_from:gaussian+epochs:5+lr:1e-4"``.

After every epoch the engine evaluates on the validation set and appends one row to metrics.csv:

- ``epoch`` (1-based, epochs finished), ``lr`` (used during the epoch), ``train_loss`` (the method's loss, mean
  over the epoch's batches);
- ``val_mse``: ``HeatmapMSELoss`` against Gaussian targets and ``val_hdm``: ``HDMLoss`` (exact, sub-pixel),
  whatever the method, on the heatmaps that are decoded (flip-averaged when ``flip_test``, as HRNet does);
- COCO-format datasets (synthetic, coco): ``AP AP50 AP75 APM APL AR`` (pycocotools, HRNet's rescoring and
  OKS-NMS; ground-truth boxes, or person detections for coco with ``val_boxes="detections"``);
  MPII: ``PCKh`` (PCKh@0.5 mean) when ``annot/gt_valid.mat`` provides head boxes;
  every dataset: ``PCK`` (``pck_bbox`` at ``pck_threshold`` of the box size: the longer side of the person
  box at the model's aspect ratio, before the 1.25 padding), ``err_px`` (mean joint error, original-image px)
  and ``err_hm`` (mean joint error, heatmap px, joints with target weight 1).

``predictions.npz`` (final epoch, validation set with ground-truth boxes), one row per sample, in dataset order:
``index`` (N,) dataset index; ``image_id``, ``annotation_id`` (N,); ``coords`` (N, K, 2) heatmap px and
``image_coords`` (N, K, 2) original-image px, predicted, (x, y); ``maxvals`` (N, K) heatmap peaks;
``joints`` (N, K, 2) heatmap px and ``image_joints`` (N, K, 2) image px, ground truth; ``visibility`` (N, K)
target weight; ``keypoint_flags`` (N, K); ``center`` (N, 2) image px; ``scale`` (N, 2) units of 200 px;
``box_score``, ``area`` (N,); ``head_size`` (N,) px for MPII with head boxes.

Reproducibility: the model is initialised from ``seed``; epoch ``e`` shuffles with a generator seeded by
(seed, e), draws augmentation per (seed, e, sample index) (``TopDownDataset.set_epoch``) and reseeds torch with
(seed, e, rank) for anything random in the model. An interrupted run resumes from ``last.pt`` and ends with the
same numbers as an uninterrupted one (bitwise on the same CPU). See ``hdm.distributed`` for multi-GPU runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import random
import sys
import time
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from hdm import distributed, runs
from hdm.data import CocoTopDown, MpiiTopDown, coco_paths, mpii_paths
from hdm.data import synthetic
from hdm.decode import DECODERS, decode, flip_test_average
from hdm.geometry import BOX_PADDING, PIXEL_STD, heatmap_to_image
from hdm.loss import SUPPLIERS, HDMLoss, HeatmapMSELoss
from hdm.metrics import coco_keypoint_eval, localisation_error, make_coco_results, pck_bbox, pckh
from hdm.models import MODELS, OUTPUT_STRIDE, get_model
from hdm.paths import runs_root
from hdm.targets import dot_heatmaps, gaussian_heatmaps, target_weight

log = logging.getLogger(__name__)

METHODS = ("gaussian", "dot", "hdm", "hdm_naive", "hdm_sinkhorn")
MSE_METHODS = ("gaussian", "dot")  # the rest train with HDMLoss
DEFAULT_DECODER = {"gaussian": "argmax_shift", "dot": "argmax_shift", "hdm": "local_com", "hdm_naive": "local_com",
                   "hdm_sinkhorn": "local_com"}  # fmt: skip
DATASETS = ("synthetic", "coco", "mpii")
SCALES = ("smoke", "default", "paper")
VAL_BOXES = ("gt", "detections")
COCO_METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")

#: Config fields that do not change a run's results, left out of its hash (see ``Config.identity``).
NOT_IDENTITY = ("scale", "num_workers", "device")


# ---------------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class Config:
    """Everything that defines a training run. Defaults are ``preset("default", "hdm")``.

    Sizes are (w, h); px are input-crop pixels for ``input_size`` and heatmap pixels for ``heatmap_size``/``sigma``.
    """

    # what
    method: str = "hdm"  # one of METHODS
    scale: str = "default"  # preset the config came from; names the run folder, not part of the hash
    seed: int = 0  # model init, data order, augmentation draws
    # data
    dataset: str = "synthetic"  # synthetic | coco | mpii
    synthetic_preset: str = "default"  # hdm.data.synthetic.PRESETS key (dataset="synthetic")
    data_seed: int = 0  # seed of the synthetic images (dataset="synthetic")
    max_train_samples: int | None = 1000  # train on the first N persons of the train split (None: all)
    max_val_samples: int | None = None  # validate on the first persons of whole images, at most N (None: all)
    val_boxes: str = "gt"  # COCO accuracy from "gt" boxes or HRNet's person "detections" (dataset="coco")
    # model and targets
    model: str = "hrnet_tiny"  # one of hdm.models.MODELS
    input_size: tuple[int, int] = (96, 128)  # (w, h) crop px
    heatmap_size: tuple[int, int] = (24, 32)  # (w, h) heatmap px = input_size / 4
    sigma: float = 2.0  # Gaussian target std, heatmap px (gaussian training and val_mse)
    sinkhorn_eps: float = 0.05  # entropic regularisation, heatmap px (method hdm_sinkhorn)
    supplier: str = "relu"  # suppliers' activation (hdm methods): relu (the paper's) | softplus | softmax
    # training augmentation (HRNet's MPII recipe; its COCO recipe is 0.35 / 45 / half body 0.3)
    flip: bool = True  # mirror with probability 0.5
    scale_factor: float = 0.25  # scale *= clip(1 + sf N(0,1), 1 - sf, 1 + sf)
    rotation_factor: float = 30.0  # degrees, clip(rf N(0,1), -2 rf, 2 rf)
    rotation_prob: float = 0.6  # probability of rotating
    half_body_prob: float = 0.0  # probability of a half-body crop
    half_body_min_joints: int = 8  # half body only with more labelled joints than this
    # optimisation (Adam)
    lr: float = 1e-3
    lr_steps: tuple[int, ...] = (12, 14)  # epochs after which lr *= lr_factor
    lr_factor: float = 0.1
    epochs: int = 15
    init_from: str | None = None  # None: HRNet's random init; else a variant whose scale-preset run gives the weights
    batch_size: int = 16  # global batch (split over the ranks of a distributed run)
    # evaluation
    decoder: str = "auto"  # a hdm.decode.DECODERS key; "auto": argmax_shift for gaussian/dot, local_com for hdm*
    flip_test: bool = False  # average with the flipped image's heatmaps
    flip_shift_px: float = 1.0  # heatmap px shift of the flipped-back maps (HRNet: 1)
    pck_threshold: float = 0.1  # PCK: fraction of the box size
    # execution (not part of the hash)
    num_workers: int = 0  # data loader processes
    device: str = "auto"  # auto | cpu | cuda | cuda:N ("auto": cuda if available)

    def __post_init__(self):
        def choice(name, allowed):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")

        choice("method", METHODS)
        choice("dataset", DATASETS)
        choice("synthetic_preset", tuple(synthetic.PRESETS))
        choice("model", tuple(MODELS))
        choice("decoder", ("auto", *DECODERS))
        choice("val_boxes", VAL_BOXES)
        choice("supplier", SUPPLIERS)
        if not self.scale or not all(c.isalnum() or c in "_." for c in self.scale):
            raise ValueError(f"scale names the run folder: letters, digits, '_' and '.' only, got {self.scale!r}")
        for name in ("input_size", "heatmap_size"):
            size = getattr(self, name)
            if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
                raise ValueError(f"{name} must be (w, h) positive integers, got {size!r}")
        expected = tuple(v // OUTPUT_STRIDE for v in self.input_size)
        if any(v % OUTPUT_STRIDE for v in self.input_size) or tuple(self.heatmap_size) != expected:
            raise ValueError(
                f"heatmap_size must be input_size / {OUTPUT_STRIDE} (the model's output stride) with input_size a "
                f"multiple of {OUTPUT_STRIDE}: input_size {self.input_size} needs heatmap_size {expected}, "
                f"got {self.heatmap_size}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_train_samples", "max_val_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (all samples), got {value}")
        for name in ("lr", "sigma", "sinkhorn_eps", "lr_factor", "pck_threshold"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if list(self.lr_steps) != sorted(set(self.lr_steps)) or any(s < 1 for s in self.lr_steps):
            raise ValueError(f"lr_steps must be strictly increasing epochs >= 1, got {self.lr_steps}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.init_from is not None:
            _, overrides = parse_variant(self.init_from)
            if "init_from" in overrides:
                raise ValueError(f"init_from {self.init_from!r} may not itself set init_from")
        if self.device not in ("auto", "cpu", "cuda") and not (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        ):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """A Config from ``{field: value}``; values may be strings (``--set`` syntax). Unknown keys are errors."""
        return cls().replace(**values)

    def replace(self, **overrides) -> "Config":
        """A copy with ``overrides`` applied; values are coerced to the field's type (strings are parsed)."""
        hints = _field_types()
        unknown = [k for k in overrides if k not in hints]
        if unknown:
            hint = "; ".join(
                f"{k!r}: did you mean {m[0]!r}?" for k in unknown if (m := difflib.get_close_matches(k, hints, 1))
            )
            raise ValueError(
                f"unknown config key(s) {unknown}{' (' + hint + ')' if hint else ''}; valid keys: {sorted(hints)}"
            )
        return dataclasses.replace(self, **{k: _coerce(k, v, hints[k]) for k, v in overrides.items()})

    def resolved(self) -> "Config":
        """The config as a run uses it: ``decoder="auto"`` replaced by the method's default decoder."""
        return self.replace(decoder=DEFAULT_DECODER[self.method]) if self.decoder == "auto" else self

    def to_dict(self) -> dict:
        """json-able dict of every field (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def identity(self) -> dict:
        """The fields that can change this run's results, as json-able values: every field of the resolved
        config but ``NOT_IDENTITY`` (scale, num_workers, device) and the fields this dataset/method never reads
        (synthetic_preset and data_seed off synthetic, val_boxes off coco, sinkhorn_eps off hdm_sinkhorn,
        supplier off the MSE methods);
        plus the synthetic generator's version. Runs on another device or world size share the identity."""
        cfg = self.resolved().to_dict()
        for name in NOT_IDENTITY:
            cfg.pop(name)
        if self.dataset == "synthetic":
            cfg["synthetic_generator"] = synthetic.GENERATOR_VERSION
        else:
            cfg.pop("synthetic_preset")
            cfg.pop("data_seed")
        if self.dataset != "coco":
            cfg.pop("val_boxes")
        if self.method != "hdm_sinkhorn":
            cfg.pop("sinkhorn_eps")
        if self.method in MSE_METHODS:
            cfg.pop("supplier")
        if self.init_from is None:
            cfg.pop("init_from")
        else:  # the starting weights are those of another run: its identity is part of ours
            cfg["init_from"] = {"variant": self.init_from, "hash": self.init_config().hash()}
        return cfg

    def init_config(self) -> "Config":
        """The config of the run whose final weights initialise this one (``init_from``): the ``scale`` preset
        of that variant on this dataset and seed, so ``"hdm+init_from:gaussian+epochs:5"`` fine-tunes the
        standard Gaussian run for 5 epochs. Raises ValueError if its network or sizes differ from ours."""
        if self.init_from is None:
            raise ValueError("init_from is None: this run starts from HRNet's random initialisation")
        method, overrides = parse_variant(self.init_from)
        if self.scale not in SCALES:
            raise ValueError(f"init_from needs a preset scale ({SCALES}) to name its source run, got {self.scale!r}")
        source = preset(self.scale, method, dataset=self.dataset, seed=self.seed, **overrides)
        for name in ("model", "input_size", "heatmap_size"):
            if getattr(source, name) != getattr(self, name):
                raise ValueError(f"init_from {self.init_from!r}: its {name} {getattr(source, name)} differs from "
                                 f"ours {getattr(self, name)}; set the same {name} in the variant")
        return source

    def hash(self) -> str:
        """12 hex digits identifying the run (``hdm.runs.config_hash`` of ``identity()``)."""
        return runs.config_hash(self.identity())

    def run_dir(self) -> Path:
        """``runs_root()/<method>-<scale>-<hash12>``."""
        return runs_root() / runs.run_name(self.method, self.scale, self.hash())


def _field_types() -> dict[str, object]:
    return typing.get_type_hints(Config)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(name: str, value, hint):
    """``value`` converted to the type ``hint`` of field ``name``; strings are parsed, lists become tuples."""
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        if typing.get_origin(hint) is tuple:
            if isinstance(value, str):
                text = value.strip().strip("()[]")
                value = [v for v in text.replace(" ", ",").split(",") if v]
            item = typing.get_args(hint)[0]
            return tuple(_coerce(name, v, item) for v in value)
        if hint is bool:
            if isinstance(value, str):
                if value.strip().lower() not in _TRUE + _FALSE:
                    raise ValueError
                return value.strip().lower() in _TRUE
            if not isinstance(value, (bool, np.bool_, int)) or value not in (0, 1):
                raise ValueError
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ValueError(f"config key {name!r} expects {hint}{' or None' if optional else ''}, got {value!r}") from None
    raise TypeError(f"config key {name!r} has an unsupported type {hint}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------------
# Presets

_SMOKE = dict(
    synthetic_preset="smoke", model="hrnet_tiny", input_size=(96, 128), heatmap_size=(24, 32),
    epochs=2, batch_size=8, max_train_samples=24, max_val_samples=None, lr_steps=(),
)  # fmt: skip
# Sized for about 1.5 min per gaussian or hdm run on a 2-core CPU: 15 epochs of the first 1000 training persons
# (62 steps of 16) plus validation on all 494 persons of the 300 val images, ~6 s per epoch.
_DEFAULT = dict(
    synthetic_preset="default", model="hrnet_tiny", input_size=(96, 128), heatmap_size=(24, 32),
    epochs=15, batch_size=16, max_train_samples=1000, max_val_samples=None, lr_steps=(12, 14),
)  # fmt: skip
# Short runs learn faster with HRNet's lighter MPII augmentation than with its COCO one (15 epochs of 1000
# persons: gaussian AP 0.09 against 0.03 with scale 0.35, rotation 45, half body 0.3).
_SHORT_AUGMENTATION = dict(scale_factor=0.25, rotation_factor=30.0, rotation_prob=0.6, half_body_prob=0.0)
# The official HRNet recipe (reference/facts.md): Adam 1e-3, 210 epochs, x0.1 at 170 and 200, 32 images/GPU
# x 4 GPUs (global batch 128), flip test. Table 1 of the paper reports W48 at 256x192 with 77.1 AP for the
# Gaussian baseline, about 2 AP above HRNet's detector-box 75.1: ground-truth boxes, hence val_boxes="gt".
_PAPER = dict(
    lr=1e-3, lr_steps=(170, 200), lr_factor=0.1, epochs=210, batch_size=128, flip_test=True, num_workers=8,
    max_train_samples=None, max_val_samples=None, val_boxes="gt",
)  # fmt: skip
_PAPER_DATASET = {
    "coco": dict(model="hrnet_w48", input_size=(192, 256), heatmap_size=(48, 64)),
    "mpii": dict(model="hrnet_w32", input_size=(256, 256), heatmap_size=(64, 64)),
}
_AUGMENTATION = {  # HRNet's recipes
    "coco": dict(scale_factor=0.35, rotation_factor=45.0, rotation_prob=0.6, half_body_prob=0.3),
    "mpii": dict(scale_factor=0.25, rotation_factor=30.0, rotation_prob=0.6, half_body_prob=0.0),
}


def preset(scale: str, method: str = "hdm", dataset: str | None = None, seed: int = 0, **overrides) -> Config:
    """The config of ``scale`` for ``method`` and ``dataset``, then ``overrides`` (any Config field).

    - ``smoke``: synthetic "smoke" split, hrnet_tiny at 128x96 (h x w), 2 epochs of 3 batches of 8: seconds.
    - ``default``: synthetic "default" split, hrnet_tiny at 128x96, the first 1000 training persons, 15 epochs of
      62 batches of 16, Adam 1e-3 x0.1 after epochs 12 and 14: about 1.5 min per run on a 2-core CPU.
    - ``paper``: coco (default) HRNet-W48 at 256x192 or mpii HRNet-W32 at 256x256 with HRNet's recipe.
    smoke and default use HRNet's lighter MPII augmentation (scale 0.25, rotation 30, no half body) on every
    dataset; paper uses each dataset's own recipe.
    ``dataset`` defaults to synthetic (coco for paper); smoke and default also run on coco or mpii.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    dataset = dataset or ("coco" if scale == "paper" else "synthetic")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if scale == "paper":
        if dataset not in _PAPER_DATASET:
            raise ValueError(f"the paper scale trains on coco or mpii, got dataset {dataset!r}; use scale default")
        fields = {**_PAPER, **_PAPER_DATASET[dataset], **_AUGMENTATION[dataset]}
    else:
        fields = {**(_SMOKE if scale == "smoke" else _DEFAULT), **_SHORT_AUGMENTATION}
    return Config().replace(scale=scale, method=method, dataset=dataset, seed=seed, **fields).replace(**overrides)


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """A variant spec ``"method"`` or ``"method+key:value+key:value"`` (e.g. ``"hdm+supplier:softplus"``) as
    ``(method, {key: value})``; values stay strings for ``Config.replace`` to parse. Checks only the syntax.
    (``:`` rather than ``=`` so that a spec in a notebook's parameters cell stays readable to papermill.)"""
    method, *parts = spec.split("+")
    if method not in METHODS:
        raise ValueError(f"variant {spec!r}: unknown method {method!r}; expected one of {METHODS}")
    overrides = {}
    for part in parts:
        key, sep, value = part.partition(":")
        if not sep or not key:
            raise ValueError(f"variant {spec!r}: expected 'method+key:value+...', got the part {part!r}")
        overrides[key] = value
    return method, overrides


def variant_preset(scale: str, spec: str, dataset: str | None = None, seed: int = 0) -> Config:
    """``preset(scale, method, dataset, seed, **overrides)`` for the variant ``spec`` (see :func:`parse_variant`),
    e.g. ``variant_preset("default", "hdm+supplier:softplus", seed=0)``."""
    method, overrides = parse_variant(spec)
    return preset(scale, method, dataset=dataset, seed=seed, **overrides)


# ---------------------------------------------------------------------------------------------------------
# Methods: the target + loss of the training step


class MethodLoss(nn.Module):
    """The training loss of one method (see the module docstring), from the predicted heatmaps and the joints.

    Args:
        method: one of METHODS. sigma: Gaussian std, heatmap px (gaussian). sinkhorn_eps: heatmap px (hdm_sinkhorn).
        supplier: the suppliers' activation of the HDMLoss methods (``hdm.loss.SUPPLIERS``).
    Call with ``heatmaps (B, K, H, W)``, ``joints (B, K, 2)`` heatmap px (x, y), ``visibility (B, K)``;
    returns the scalar loss (mean over images).
    """

    def __init__(self, method: str, sigma: float = 2.0, sinkhorn_eps: float = 0.05, supplier: str = "relu"):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        self.method = method
        self.sigma = sigma
        if method in MSE_METHODS:
            self.loss = HeatmapMSELoss(use_target_weight=True)
        else:
            self.loss = HDMLoss(
                demanders="naive" if method == "hdm_naive" else "subpixel",
                solver="sinkhorn" if method == "hdm_sinkhorn" else "exact",
                sinkhorn_eps=sinkhorn_eps,
                supplier=supplier,
            )

    def forward(self, heatmaps: torch.Tensor, joints: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
        size = tuple(heatmaps.shape[-2:])  # (H, W)
        if self.method == "gaussian":
            target, weight = gaussian_heatmaps(joints, visibility, size, self.sigma)
            return self.loss(heatmaps, target, weight)
        if self.method == "dot":
            target, weight = dot_heatmaps(joints, visibility, size)
            return self.loss(heatmaps, target, weight)
        return self.loss(heatmaps, joints, target_weight(joints, visibility, size))


def training_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, batch: dict,
                  device: torch.device) -> torch.Tensor:  # fmt: skip
    """One step: forward, the method's loss, backward, optimiser step. Returns the detached loss (scalar).

    The batch (a collated sample dict) moves to ``device`` and the floating dtype of the model's parameters.
    """
    dtype = next(model.parameters()).dtype
    images = batch["image"].to(device, dtype, non_blocking=True)
    joints = batch["joints"].to(device, dtype, non_blocking=True)
    visibility = batch["visibility"].to(device, dtype, non_blocking=True)
    loss = loss_fn(model(images), joints, visibility)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the training loss is {loss.item()}: the run diverged; lower lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------------------------------------------------
# Data


class Data(NamedTuple):
    """The datasets of a run. ``train`` is None when only evaluating; ``detections`` only for COCO with detector
    boxes. ``val_indices`` / ``det_indices``: the samples used; ``eval_image_ids``: images scored by COCOeval
    (None: every image of the annotations, the official protocol)."""

    train: Dataset | None
    val: CocoTopDown | MpiiTopDown
    val_indices: np.ndarray
    detections: CocoTopDown | None
    det_indices: np.ndarray | None
    eval_image_ids: list[int] | None

    @property
    def num_joints(self) -> int:
        return self.val.num_joints

    @property
    def coco_format(self) -> bool:
        return isinstance(self.val, CocoTopDown)


def _augmentation(cfg: Config) -> dict:
    return dict(
        flip=cfg.flip, scale_factor=cfg.scale_factor, rotation_factor=cfg.rotation_factor,
        rotation_prob=cfg.rotation_prob, half_body_prob=cfg.half_body_prob,
        half_body_min_joints=cfg.half_body_min_joints, seed=cfg.seed,
    )  # fmt: skip


def whole_image_prefix(image_ids, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` samples, minus those whose image has samples past the cut (so every kept
    image keeps all its persons); at least the first image's samples. ``image_ids``: (N,). Returns sorted int64."""
    image_ids = np.asarray(image_ids)
    if limit is None or limit >= len(image_ids):
        return np.arange(len(image_ids))
    cut = set(image_ids[limit:].tolist())
    keep = [i for i in range(limit) if image_ids[i] not in cut]
    return np.asarray(keep or np.flatnonzero(image_ids == image_ids[0]), dtype=np.int64)


def build_data(cfg: Config, train: bool = True) -> Data:
    """The run's datasets (the train split only when ``train``).

    Raises ``hdm.data.DatasetNotFoundError`` for missing files (nothing is downloaded) and
    ``hdm.data.EmptyDatasetError`` when a split holds no person.
    """
    sizes = dict(input_size=tuple(cfg.input_size), heatmap_size=tuple(cfg.heatmap_size))
    train_set = detections = None
    if cfg.dataset == "mpii":
        paths = mpii_paths()
        gt_valid = paths.gt_valid if paths.gt_valid.is_file() else None
        val = MpiiTopDown(paths.valid, paths.image_dir, train=False, gt_valid=gt_valid, **sizes)
        if gt_valid is None:
            log.warning("%s is missing: MPII validation reports PCK, not PCKh (no head sizes)", paths.gt_valid)
        if train:
            train_set = MpiiTopDown(paths.train, paths.image_dir, train=True, **sizes, **_augmentation(cfg))
    else:
        if cfg.dataset == "synthetic":
            train_files = synthetic.synthetic_split(cfg.synthetic_preset, "train", cfg.data_seed) if train else None
            val_files = synthetic.synthetic_split(cfg.synthetic_preset, "val", cfg.data_seed)
        else:
            train_files, val_files = coco_paths(split="train2017")[:2], coco_paths(split="val2017")[:2]
        val = CocoTopDown(*val_files, train=False, **sizes)
        if cfg.dataset == "coco" and cfg.val_boxes == "detections":
            detections = CocoTopDown(*val_files, train=False, boxes=coco_paths(split="val2017").detections, **sizes)
        if train:
            train_set = CocoTopDown(*train_files, train=True, **sizes, **_augmentation(cfg))
    val_ids = np.array([r.image_id for r in val.records])
    val_indices = whole_image_prefix(val_ids, cfg.max_val_samples)
    subset = cfg.max_val_samples is not None and len(val_indices) < len(val)
    eval_image_ids = sorted(set(val_ids[val_indices].tolist())) if subset else None
    det_indices = None
    if detections is not None:
        det_ids = np.array([r.image_id for r in detections.records])
        det_indices = np.arange(len(detections)) if not subset else np.flatnonzero(np.isin(det_ids, eval_image_ids))
    if train_set is not None and cfg.max_train_samples is not None and cfg.max_train_samples < len(train_set):
        train_set = Subset(train_set, range(cfg.max_train_samples))
    return Data(train_set, val, val_indices, detections, det_indices, eval_image_ids)


def _base(dataset: Dataset):
    return dataset.dataset if isinstance(dataset, Subset) else dataset


# ---------------------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def predict(model: nn.Module, dataset, indices, cfg: Config, device: torch.device, decoder: str, flip_test: bool,
            progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, float]]:  # fmt: skip
    """Run ``model`` (eval mode) on ``dataset[indices]``, decode, map to image px; sum the validation losses.

    Returns the per-sample arrays of ``predictions.npz`` (module docstring) and the sums
    ``{"mse": Σ_batches val_mse · B, "hdm": Σ val_hdm · B, "count": N}`` (only over samples with joints).
    """
    model.eval()
    loader = DataLoader(Subset(dataset, list(map(int, indices))), batch_size=cfg.batch_size, shuffle=False,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda")  # fmt: skip
    mse_loss, hdm_loss = MethodLoss("gaussian", cfg.sigma), MethodLoss("hdm")
    sums = {"mse": 0.0, "hdm": 0.0, "count": 0.0}
    chunks: dict[str, list] = {}
    for batch in tqdm(loader, desc="val", unit="batch", leave=False, disable=not progress):
        images = batch["image"].to(device, non_blocking=True)
        heatmaps = model(images)
        if flip_test:
            heatmaps = flip_test_average(heatmaps, model(images.flip(-1)), dataset.flip_pairs, cfg.flip_shift_px)
        joints, visibility = batch["joints"].to(device), batch["visibility"].to(device)
        if bool((batch["annotation_id"] >= 0).all()):  # ground-truth persons (detector boxes have no joints)
            n = len(images)
            sums["mse"] += float(mse_loss(heatmaps, joints, visibility)) * n
            sums["hdm"] += float(hdm_loss(heatmaps, joints, visibility)) * n
            sums["count"] += n
        coords, maxvals = decode(heatmaps, decoder)
        coords = coords.cpu().double()
        image_coords = heatmap_to_image(coords, batch["center"].double(), batch["scale"].double(),
                                        tuple(cfg.heatmap_size), batch["rotation"].double())  # fmt: skip
        fields = {
            "coords": coords, "image_coords": image_coords, "maxvals": maxvals.cpu(), "joints": batch["joints"],
            "image_joints": batch["image_joints"], "visibility": batch["visibility"],
            "keypoint_flags": batch["keypoint_flags"], "center": batch["center"], "scale": batch["scale"],
            "image_id": batch["image_id"], "annotation_id": batch["annotation_id"], "box_score": batch["box_score"],
            "area": batch["area"],
        }  # fmt: skip
        if "head_size" in batch:
            fields["head_size"] = batch["head_size"]
        for key, value in fields.items():
            chunks.setdefault(key, []).append(value.numpy())
    arrays = {key: np.concatenate(value) for key, value in chunks.items()}  # empty for no indices
    arrays["index"] = np.asarray(indices, dtype=np.int64)
    return arrays, sums


def _predict_all(model, dataset, indices, cfg, device, info, decoder, flip_test, progress):
    """``predict`` split over the ranks (sample i on rank i mod W), gathered in dataset order on every rank."""
    shard = np.asarray(indices)[info.rank :: info.world_size]
    arrays, sums = predict(model, dataset, shard, cfg, device, decoder, flip_test, progress)
    if not info.distributed:
        return arrays, sums
    gathered = [a for a in distributed.all_gather_objects(arrays) if len(a.get("index", ()))]
    merged = {k: np.concatenate([a[k] for a in gathered]) for k in gathered[0]}
    order = np.argsort(merged["index"], kind="stable")
    totals = distributed.all_reduce_sum([sums["mse"], sums["hdm"], sums["count"]], _reduce_device(device))
    return {k: v[order] for k, v in merged.items()}, dict(zip(("mse", "hdm", "count"), totals))


def _reduce_device(device: torch.device) -> torch.device:
    """nccl reduces CUDA tensors only; gloo CPU tensors."""
    return device if device.type == "cuda" else torch.device("cpu")


def accuracy(arrays: dict[str, np.ndarray], cfg: Config) -> dict[str, float]:
    """PCK (box-normalised), PCKh (when head sizes exist), err_px and err_hm of ground-truth-box predictions."""
    visible = arrays["keypoint_flags"] > 0
    box_size = arrays["scale"].max(axis=1) * PIXEL_STD / BOX_PADDING
    out = {}
    if "head_size" in arrays:
        out["PCKh"] = float(pckh(arrays["image_coords"], arrays["image_joints"], visible, arrays["head_size"]).loc["Mean", "pckh"])
    out["PCK"] = pck_bbox(arrays["image_coords"], arrays["image_joints"], visible, box_size, cfg.pck_threshold).mean
    errors = localisation_error(arrays["image_coords"], arrays["image_joints"], visible)
    out["err_px"] = float(np.nanmean(errors)) if visible.any() else float("nan")
    counted = arrays["visibility"] > 0
    hm_errors = np.linalg.norm(arrays["coords"] - arrays["joints"], axis=-1)[counted]
    out["err_hm"] = float(hm_errors.mean()) if hm_errors.size else float("nan")
    return out


def coco_results(arrays: dict[str, np.ndarray]) -> list[dict]:
    """COCO results with HRNet's rescoring and OKS-NMS; the NMS area is the padded box's (200 scale)^2."""
    areas = np.prod(arrays["scale"].astype(np.float64) * PIXEL_STD, axis=1)
    return make_coco_results(arrays["image_coords"], arrays["maxvals"], arrays["image_id"], arrays["box_score"], areas)


def validate(model, data: Data, cfg: Config, device, info, decoder: str, flip_test: bool, progress: bool = False):
    """Every validation number of one model. Returns (metrics, arrays, coco results or None) on rank 0 and
    ``({}, arrays, None)`` elsewhere; metrics: val_mse, val_hdm, the COCO metrics (COCO format), PCKh, PCK, err_px,
    err_hm."""
    arrays, sums = _predict_all(model, data.val, data.val_indices, cfg, device, info, decoder, flip_test, progress)
    det_arrays = None
    if data.detections is not None:
        det_arrays, _ = _predict_all(model, data.detections, data.det_indices, cfg, device, info, decoder,
                                     flip_test, progress)  # fmt: skip
    if not info.main:
        return {}, arrays, None
    count = sums["count"]
    metrics = {"val_mse": sums["mse"] / count if count else float("nan"),
               "val_hdm": sums["hdm"] / count if count else float("nan")}  # fmt: skip
    results = None
    if data.coco_format:
        results = coco_results(det_arrays if det_arrays is not None else arrays)
        scores = coco_keypoint_eval(data.val.coco, results, data.eval_image_ids)
        metrics.update({k: scores[k] for k in COCO_METRICS})
    metrics.update(accuracy(arrays, cfg))
    return metrics, arrays, results


# ---------------------------------------------------------------------------------------------------------
# Training


def _epoch_seed(seed: int, epoch: int, tag: int = 0) -> int:
    """A 63-bit seed determined by (seed, epoch, tag) alone."""
    return int(np.random.SeedSequence([seed, epoch, tag]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                      "gauss": gauss}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(requested: str, info: distributed.DistInfo | None = None) -> torch.device:
    """``auto`` -> cuda if available, else cpu; a distributed CUDA run uses ``cuda:LOCAL_RANK``."""
    info = info or distributed.DistInfo()
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available: use device=cpu or auto")
        if info.distributed:
            device = torch.device("cuda", info.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def _format_row(row: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


def train(config: Config, *, progress: bool | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> runs.Run:  # fmt: skip
    """Train (or resume, or fetch from the cache) the run of ``config``; returns its ``Run``.

    A finished run is returned at once; an unfinished one resumes after its last checkpointed epoch. Under
    torchrun (RANK/WORLD_SIZE/LOCAL_RANK set) every rank calls this and rank 0 writes (``hdm.distributed``).

    Args:
        config: the experiment (``preset(...)`` or a ``Config``).
        progress: tqdm bars for epochs and batches (default: when stderr is a terminal; rank 0 only).
        on_epoch_end: called as ``on_epoch_end(epoch, row)`` on every rank after each epoch's checkpoint is
            written (``row``: the metrics.csv row on rank 0, {} elsewhere); an exception it raises stops training
            and leaves a resumable run.
    Raises:
        hdm.data.DatasetNotFoundError / EmptyDatasetError: missing or empty data.
        hdm.runs.RunLockedError: another live process is training this run.
    """
    cfg = config.resolved()
    info = distributed.from_env()
    device = resolve_device(cfg.device, info)
    owns_group = distributed.setup(info, device.type)
    try:
        return _train(cfg, info, device, progress, on_epoch_end)
    finally:
        if owns_group:
            distributed.teardown()


def _train(cfg: Config, info, device: torch.device, progress, on_epoch_end) -> runs.Run:
    run = runs.Run(cfg.run_dir())
    if distributed.broadcast_object(run.done if info.main else None):
        log.info("%s: finished run found in the cache", run.dir)
        return run
    if cfg.init_from is not None:  # the run whose weights we start from (cached when already trained)
        _train(cfg.init_config().resolved(), info, device, progress, None)
    lock = runs.RunLock(run.dir) if info.main else None
    error = None
    if lock is not None:
        try:
            lock.acquire()
        except runs.RunLockedError as exc:
            error = str(exc)
    error = distributed.broadcast_object(error)
    if error:
        raise runs.RunLockedError(error)
    handler = None
    try:
        if info.main:
            saved = {**cfg.to_dict(), "hash": cfg.hash()}
            if not (run.dir / runs.CONFIG).is_file() or runs.read_json(run.dir / runs.CONFIG) != saved:
                runs.write_json(run.dir / runs.CONFIG, saved)
            handler = logging.FileHandler(run.dir / runs.LOG)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(handler)
        show = (sys.stderr.isatty() if progress is None else progress) and info.main
        _fit(cfg, run, info, device, show, on_epoch_end)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if lock is not None:
            lock.release()
    return run


def train_loader(train_set: Dataset, cfg: Config, info: distributed.DistInfo, device: torch.device) -> DataLoader:
    """This rank's loader: ``batch_size / world_size`` samples per batch, drawn by a ``DistributedSampler``
    (shuffled per (seed, epoch), tail dropped) so that the ranks' batches together form the one-process batch
    ``permutation[i B : (i + 1) B]`` of the same epoch."""
    per_rank, rest = divmod(cfg.batch_size, info.world_size)
    if rest:
        raise ValueError(f"batch_size {cfg.batch_size} is the global batch: it must divide by the {info.world_size} ranks")
    if len(train_set) < cfg.batch_size:
        raise ValueError(
            f"the training set has {len(train_set)} samples, fewer than one batch of {cfg.batch_size}: "
            "lower batch_size or raise max_train_samples"
        )
    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=_epoch_seed(cfg.seed, 0, 1) % 2**31, drop_last=True)  # fmt: skip
    return DataLoader(train_set, batch_size=per_rank, sampler=sampler, num_workers=cfg.num_workers, drop_last=True,
                      pin_memory=device.type == "cuda")  # fmt: skip


def train_epoch(net: nn.Module, loader: DataLoader, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                epoch: int, seed: int, info: distributed.DistInfo, device: torch.device, show: bool = False) -> float:
    """Train one epoch (0-based ``epoch``) from ``train_loader``'s loader; returns the mean loss over the batches
    of every rank. Data order, augmentation and torch's RNG depend on (seed, epoch) only."""  # fmt: skip
    torch.manual_seed(_epoch_seed(seed, epoch, 2 + info.rank))  # anything random in the model
    _base(loader.dataset).set_epoch(epoch)  # augmentation draws of this epoch
    loader.sampler.set_epoch(epoch)  # data order of this epoch
    net.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    batches = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=not show)
    for step, batch in enumerate(batches, 1):
        total += training_step(net, loss_fn, optimizer, batch, device)
        if show and step % 10 == 0:
            batches.set_postfix(loss=f"{total.item() / step:.4g}")
    mean = total.item() / len(loader)
    return distributed.all_reduce_sum([mean], _reduce_device(device))[0] / info.world_size


def _fit(cfg: Config, run: runs.Run, info, device: torch.device, show: bool, on_epoch_end) -> None:
    data = build_data(cfg, train=True)
    loader = train_loader(data.train, cfg, info, device)  # checks the batch size before building the model
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = get_model(cfg.model, data.num_joints).to(device)
    state = None
    last = run.dir / runs.LAST
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if state.get("hash") != cfg.hash():
            raise RuntimeError(f"{last} belongs to another config (hash {state.get('hash')} != {cfg.hash()}); delete it")
        model.load_state_dict(state["model"])
    elif cfg.init_from is not None:
        source = cfg.init_config().resolved().run_dir() / runs.FINAL
        model.load_state_dict(torch.load(source, map_location="cpu", weights_only=True)["model"])
        log.info("%s: initialised from %s", run.dir, source)
    net = distributed.wrap_model(model, info, device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.lr_steps), cfg.lr_factor)
    history: list[dict] = []
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start = list(state["history"]), int(state["epoch"])
        _set_rng_state(state["rng"])
        log.info("%s: resuming after epoch %d of %d", run.dir, start, cfg.epochs)
    distributed.barrier()  # every rank has read last.pt before rank 0 may rewrite it
    if info.main:
        runs.start_session(run.dir, cfg.seed, device, info.world_size, start + 1)

    loss_fn = MethodLoss(cfg.method, cfg.sigma, cfg.sinkhorn_eps, cfg.supplier)
    arrays = results = None
    epochs = tqdm(range(start, cfg.epochs), desc=run.name, unit="epoch", initial=start, total=cfg.epochs,
                  disable=not show)  # fmt: skip
    for epoch in epochs:
        tick = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_epoch(net, loader, loss_fn, optimizer, epoch, cfg.seed, info, device, show)
        scheduler.step()
        # evaluation mode needs no collective (BatchNorm uses its running statistics): the bare model
        metrics, arrays, results = validate(model, data, cfg, device, info, cfg.decoder, cfg.flip_test, show)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in dict(lr=lr, train_loss=train_loss, **metrics).items()}}
        row = row if info.main else {}
        if info.main:
            history.append(row)
            runs.save_torch(last, {
                "epoch": epoch + 1, "hash": cfg.hash(), "model": distributed.unwrap(net).state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history,
                "rng": _rng_state(),
            })  # fmt: skip
            runs.write_metrics(run.dir / runs.METRICS, history)
            log.info("%s  %s  (%.1f s)", run.name, _format_row(row), time.perf_counter() - tick)
            epochs.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("train_loss", "AP", "PCKh")})
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)

    if arrays is None:  # resumed after the last epoch but before the final files: recompute them
        _, arrays, results = validate(model, data, cfg, device, info, cfg.decoder, cfg.flip_test, show)
    if info.main:
        runs.save_torch(run.dir / runs.FINAL, {"epoch": cfg.epochs, "hash": cfg.hash(),
                                               "model": distributed.unwrap(net).state_dict()})  # fmt: skip
        runs.save_npz(run.dir / runs.PREDICTIONS, arrays)
        if results is not None:
            runs.write_json(run.dir / runs.RESULTS, results)
        runs.write_metrics(run.dir / runs.METRICS, history)
        runs.end_session(run.dir, finished=True)
        runs.write_text(run.dir / runs.DONE, runs.now() + "\n")
    distributed.barrier()


# ---------------------------------------------------------------------------------------------------------
# Evaluation of a finished run


def evaluate(run: runs.Run | str | Path, decoder: str | None = None, flip_test: bool | None = None, *,
             device: str = "auto", progress: bool | None = None, refresh: bool = False) -> dict[str, float]:  # fmt: skip
    """Validation metrics of a finished run's final model with any decoder and flip test, cached in the run.

    Args:
        run: a ``Run`` or its folder. decoder: a ``hdm.decode.DECODERS`` key (default: the run's).
        flip_test: average with the flipped image (default: the run's setting). device: auto | cpu | cuda[:N].
        refresh: recompute even when the cache holds the result.
    Returns:
        the metrics of a metrics.csv row (without epoch, lr, train_loss). Cached as
        ``eval/<decoder>-flip<0|1>.json`` with the predictions beside it (``.npz``, keys of predictions.npz).
    """
    run = run if isinstance(run, runs.Run) else runs.open_run(run)
    if not run.done:
        raise RuntimeError(f"{run.dir} is not finished (no '{runs.DONE}' marker): train it first with `hdm train`")
    cfg = run.config
    decoder = decoder or cfg.decoder
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {sorted(DECODERS)}")
    flip_test = cfg.flip_test if flip_test is None else bool(flip_test)
    path = run.dir / runs.EVAL_DIR / f"{decoder}-flip{int(flip_test)}.json"
    if path.is_file() and not refresh:
        return runs.read_json(path)["metrics"]
    torch_device = resolve_device(device)
    data = build_data(cfg, train=False)
    model = run.load_model(torch_device)
    show = sys.stderr.isatty() if progress is None else progress
    metrics, arrays, _ = validate(model, data, cfg, torch_device, distributed.DistInfo(), decoder, flip_test, show)
    runs.save_npz(path.with_suffix(".npz"), arrays)
    runs.write_json(path, {"decoder": decoder, "flip_test": flip_test, "created": runs.now(), "metrics": metrics})
    return metrics
