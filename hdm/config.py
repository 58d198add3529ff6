"""Experiment configs: the ``Config`` dataclass, its presets per scale, and variants.

    from hdm.config import preset, variant_preset
    cfg = preset("default", "hdm", seed=0)                            # a scale's preset for one method
    cfg = variant_preset("default", "hdm+supplier:softplus", seed=0)  # a method with overrides
    cfg = cfg.replace(lr="3e-4", lr_steps="10,13")                    # strings are parsed (``--set`` syntax)

Scales: ``smoke`` (CI, seconds), ``default`` (synthetic data, a 2-core CPU, minutes per run), ``paper`` (real
COCO / MPII, HRNet-W48 / W32, GPUs). Sizes carry their order in their name: ``input_hw`` and ``heatmap_hw`` are
(H, W) like torch tensors; ``heatmap_hw = input_hw / 4`` (the model's output stride). Config files saved before
that convention, with ``input_size`` / ``heatmap_size`` as (w, h), are still read.

A run's identity is ``Config.identity()``: every field that can change its results (not ``scale``,
``num_workers``, ``device``; not the keys its method does not read); ``hdm.runs`` hashes it, with the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import asdict, dataclass

import numpy as np

from hdm.data import synthetic
from hdm.data.keypoints import JOINT_SETS
from hdm.decode import DECODERS
from hdm.loss import SUPPLIERS, SUPPLY_GUARDS
from hdm.methods import METHOD_KEYS, METHODS, get_method
from hdm.models import MODELS, OUTPUT_STRIDE

DATASETS = ("synthetic", "coco", "mpii")
SCALES = ("smoke", "default", "long", "paper")
VAL_BOXES = ("gt", "detections")
INITS = ("scratch", "pretrained")

#: Config fields that do not change a run's results, left out of its identity.
NOT_IDENTITY = ("scale", "num_workers", "device")
#: Keys of configs saved before sizes were (H, W): ``input_size`` / ``heatmap_size`` as (w, h).
LEGACY_SIZE_KEYS = {"input_size": "input_hw", "heatmap_size": "heatmap_hw"}


@dataclass(frozen=True)
class Config:
    """Everything that defines a training run. Defaults are ``preset("default", "hdm")``.

    Sizes are (H, W): ``input_hw`` in input-crop px, ``heatmap_hw`` in heatmap px; ``sigma`` is in heatmap px.
    """

    # what
    method: str = "hdm"  # a hdm.methods.METHODS key
    scale: str = "default"  # preset the config came from; names the run folder, not part of the identity
    seed: int = 0  # model init, data order, augmentation draws
    # data
    dataset: str = "synthetic"  # synthetic | coco | mpii
    synthetic_preset: str = "default"  # hdm.data.synthetic.PRESETS key (dataset="synthetic")
    data_seed: int = 0  # seed of the synthetic images (dataset="synthetic")
    max_train_samples: int | None = 800  # train on the first N persons of the train split (None: all)
    max_val_samples: int | None = None  # validate on the first persons of whole images, at most N (None: all)
    val_boxes: str = "gt"  # COCO accuracy from "gt" boxes or HRNet's person "detections" (dataset="coco")
    joint_set: str | None = None  # COCO-format keypoint set (hdm.data.keypoints.JOINT_SETS); None: from the names
    sigmas: tuple[float, ...] | None = None  # OKS constants per joint, overriding the joint set's (custom sets)
    # model and targets
    model: str = "hrnet_tiny"  # one of hdm.models.MODELS
    input_hw: tuple[int, int] = (128, 96)  # (H, W) crop px
    heatmap_hw: tuple[int, int] = (32, 24)  # (H, W) heatmap px = input_hw / 4
    sigma: float = 2.0  # Gaussian target std, heatmap px (gaussian training and val_mse)
    sinkhorn_eps: float = 0.05  # entropic regularisation, heatmap px (method hdm_sinkhorn)
    supplier: str = "relu"  # suppliers' activation (hdm methods): relu (the paper's) | softplus | softmax
    supply_guard: str = "guarded"  # hdm methods: guarded (an all-<= 0 relu map -> softmax supplier) | strict (no loss)
    mass_weighting: bool = False  # repair (hdm methods): weight each joint's EMD by its detached supplier mass
    level_weight: float = 0.0  # repair (hdm methods): weight of relu(level_margin - max h) per counted joint
    level_margin: float = 0.1  # heatmap units: the level the repair keeps each map's highest pixel at
    # training augmentation (HRNet's MPII recipe; its COCO recipe is 0.35 / 45 / half body 0.3)
    flip: bool = True  # mirror with probability 0.5
    scale_factor: float = 0.25  # scale *= clip(1 + sf N(0,1), 1 - sf, 1 + sf)
    rotation_factor: float = 30.0  # degrees, clip(rf N(0,1), -2 rf, 2 rf)
    rotation_prob: float = 0.6  # probability of rotating
    half_body_prob: float = 0.0  # probability of a half-body crop
    half_body_min_joints: int = 8  # half body only with more labelled joints than this
    # optimisation (Adam)
    lr: float = 1e-3
    lr_steps: tuple[int, ...] = (8, 9)  # epochs after which lr *= lr_factor
    lr_factor: float = 0.1
    epochs: int = 10
    warmup_steps: int = 0  # linear learning-rate warm-up over the first N optimiser steps (0: none)
    head_init_std: float = 0.001  # std of the head's (final_layer) normal initialisation, HRNet's 0.001
    head_bias: float = 0.0  # repair: initial bias of the head, heatmap units (> 0: every pixel starts positive)
    init: str = "scratch"  # scratch: HRNet's random init | pretrained: the part-segmentation backbone (PretrainConfig)
    init_from: str | None = None  # None: start from `init`; else a variant whose scale-preset run gives the weights
    pretrain_hw: tuple[int, int] | None = None  # (H, W) input of the pretraining run (init="pretrained"); None: input_hw
    batch_size: int = 16  # global batch (split over the ranks of a distributed run)
    # evaluation
    decoder: str = "auto"  # a hdm.decode.DECODERS key; "auto": the method's default (hdm.methods)
    flip_test: bool = False  # average with the flipped image's heatmaps
    flip_shift_px: float = 1.0  # heatmap px shift of the flipped-back maps (HRNet: 1)
    pck_threshold: float = 0.1  # PCK: fraction of the box size
    # execution (not part of the identity)
    num_workers: int = 0  # data loader processes
    device: str = "auto"  # auto | cpu | cuda | cuda:N ("auto": cuda if available)

    def __post_init__(self):
        _validate(self)

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """A Config from ``{field: value}``; values may be strings (``--set`` syntax). Unknown keys are errors;
        the legacy ``input_size`` / ``heatmap_size`` (w, h) are read as ``input_hw`` / ``heatmap_hw``."""
        return cls().replace(**values)

    def replace(self, **overrides) -> "Config":
        """A copy with ``overrides`` applied; values are coerced to the field's type (strings are parsed)."""
        hints = _field_types()
        for legacy, new in LEGACY_SIZE_KEYS.items():
            if legacy in overrides:
                if new in overrides:
                    raise ValueError(f"give {new} (H, W) or the legacy {legacy} (w, h), not both")
                w_h = _coerce(legacy, overrides.pop(legacy), tuple[int, ...])
                if len(w_h) != 2:
                    raise ValueError(f"{legacy} must be (w, h), got {w_h!r}; prefer {new} = (H, W)")
                overrides[new] = (w_h[1], w_h[0])
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
        return self.replace(decoder=get_method(self.method).decoder) if self.decoder == "auto" else self

    def to_dict(self) -> dict:
        """json-able dict of every field (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def identity(self) -> dict:
        """The fields that can change this run's results, as json-able values: every field of the resolved
        config but ``NOT_IDENTITY`` and the fields this dataset/method never reads (synthetic_preset and data_seed
        off synthetic, val_boxes off coco, method keys the method does not read: ``hdm.methods``); plus the
        synthetic generator's code hash, and the identity of the ``init_from`` run. Runs on another device or
        world size share the identity."""
        cfg = self.resolved().to_dict()
        for name in NOT_IDENTITY:
            cfg.pop(name)
        if self.dataset == "synthetic":
            cfg["synthetic_generator"] = synthetic.generator_version()
        else:
            cfg.pop("synthetic_preset")
            cfg.pop("data_seed")
        if self.dataset != "coco":
            cfg.pop("val_boxes")
        for key in set(METHOD_KEYS) - set(get_method(self.method).keys):
            cfg.pop(key)
        cfg.pop("pretrain_hw")  # part of the pretraining run's identity below, where it counts
        if self.init == "pretrained":  # the backbone's pretraining run is part of ours
            cfg["init"] = {"pretrained": pretrain_config(self).identity()}
        if self.init_from is None:
            cfg.pop("init_from")
        else:  # the starting weights are those of another run: its identity is part of ours
            cfg["init_from"] = {"variant": self.init_from, "identity": self.init_config().identity()}
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
        for name in ("model", "input_hw", "heatmap_hw"):
            if getattr(source, name) != getattr(self, name):
                raise ValueError(f"init_from {self.init_from!r}: its {name} {getattr(source, name)} differs from "
                                 f"ours {getattr(self, name)}; set the same {name} in the variant")
        return source.resolved()

    def fingerprint(self) -> str:
        """12 hex digits of the SHA-256 of ``identity()`` as canonical json (key order does not matter)."""
        return digest(self.identity())


def digest(obj) -> str:
    """12 hex digits of the SHA-256 of a json-able ``obj`` as canonical json."""
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _validate(cfg: Config) -> None:
    """Every field in its range; one clear ``ValueError`` naming the key otherwise."""

    def choice(name, allowed):
        value = getattr(cfg, name)
        if value not in allowed:
            raise ValueError(f"config key {name} must be one of {tuple(allowed)}, got {value!r}")

    choice("method", tuple(METHODS))
    choice("dataset", DATASETS)
    choice("synthetic_preset", tuple(synthetic.PRESETS))
    choice("model", tuple(MODELS))
    choice("decoder", ("auto", *DECODERS))
    choice("val_boxes", VAL_BOXES)
    choice("supplier", SUPPLIERS)
    choice("supply_guard", SUPPLY_GUARDS)
    choice("init", INITS)
    if cfg.joint_set is not None:
        choice("joint_set", tuple(JOINT_SETS))
    if cfg.sigmas is not None and not all(math.isfinite(v) and v > 0 for v in cfg.sigmas):
        raise ValueError(f"config key sigmas must be positive OKS constants, one per joint, got {cfg.sigmas}")
    if not cfg.scale or not all(c.isalnum() or c in "_." for c in cfg.scale):
        raise ValueError(f"scale names the run folder: letters, digits, '_' and '.' only, got {cfg.scale!r}")
    for name in ("input_hw", "heatmap_hw"):
        size = getattr(cfg, name)
        if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
            raise ValueError(f"config key {name} must be (H, W) positive integers, got {size!r}")
    stride, input_hw, heatmap_hw = OUTPUT_STRIDE, tuple(cfg.input_hw), tuple(cfg.heatmap_hw)
    if any(v % stride for v in input_hw):
        below = tuple(max(stride, v // stride * stride) for v in input_hw)
        above = tuple((v // stride + 1) * stride for v in input_hw)
        raise ValueError(
            f"config key input_hw must be multiples of {stride} (the model's output stride), got {input_hw}: use "
            f"e.g. {below} or {above}, with heatmap_hw = input_hw / {stride}"
        )
    expected = tuple(v // stride for v in input_hw)
    if heatmap_hw != expected:
        raise ValueError(
            f"config key heatmap_hw must be input_hw / {stride} = {expected} for input_hw {input_hw} (the model's "
            f"output stride), got {heatmap_hw}: set both (--set input_hw={','.join(map(str, input_hw))} "
            f"--set heatmap_hw={','.join(map(str, expected))})"
        )
    if cfg.pretrain_hw is not None and (len(cfg.pretrain_hw) != 2 or any(v < 1 or v % stride for v in cfg.pretrain_hw)):
        raise ValueError(f"config key pretrain_hw must be None or (H, W) multiples of {stride}, got {cfg.pretrain_hw}")
    for name in ("seed", "data_seed"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"config key {name} must be >= 0, got {getattr(cfg, name)}")
    for name, low in (("epochs", 1), ("batch_size", 1), ("half_body_min_joints", 0), ("warmup_steps", 0)):
        if getattr(cfg, name) < low:
            raise ValueError(f"config key {name} must be >= {low}, got {getattr(cfg, name)}")
    for name in ("max_train_samples", "max_val_samples"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ValueError(f"config key {name} must be >= 1 or None (all samples), got {value}")
    for name in ("lr", "sigma", "sinkhorn_eps", "lr_factor", "pck_threshold", "head_init_std"):
        value = getattr(cfg, name)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"config key {name} must be a finite number > 0, got {value}")
    for name in ("scale_factor", "rotation_factor", "flip_shift_px", "level_weight", "level_margin"):
        value = getattr(cfg, name)
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"config key {name} must be a finite number >= 0, got {value}")
    if cfg.scale_factor >= 1:
        raise ValueError(f"config key scale_factor must be < 1 (scales are clipped to 1 +- sf), got {cfg.scale_factor}")
    for name in ("rotation_prob", "half_body_prob"):
        value = getattr(cfg, name)
        if not 0 <= value <= 1:
            raise ValueError(f"config key {name} is a probability: it must be in [0, 1], got {value}")
    if cfg.pck_threshold > 1:
        raise ValueError(f"config key pck_threshold is a fraction of the box size: at most 1, got {cfg.pck_threshold}")
    if list(cfg.lr_steps) != sorted(set(cfg.lr_steps)) or any(s < 1 for s in cfg.lr_steps):
        raise ValueError(f"config key lr_steps must be strictly increasing epochs >= 1, got {cfg.lr_steps}")
    if cfg.num_workers < 0:
        raise ValueError(f"config key num_workers must be >= 0, got {cfg.num_workers}")
    if cfg.init_from is not None:
        _, overrides = parse_variant(cfg.init_from)
        if "init_from" in overrides:
            raise ValueError(f"init_from {cfg.init_from!r} may not itself set init_from")
    check_device(cfg.device)


def check_device(device, key: str = "config key device") -> None:
    """``ValueError`` naming ``key`` unless ``device`` is auto, cpu, cuda or cuda:N (torch would raise a bare
    RuntimeError for e.g. "gpu")."""
    valid = isinstance(device, str) and (
        device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    )
    if not valid:
        raise ValueError(f"{key} must be auto, cpu, cuda or cuda:N, got {device!r}")


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
    synthetic_preset="smoke", model="hrnet_tiny", input_hw=(128, 96), heatmap_hw=(32, 24),
    epochs=2, batch_size=8, max_train_samples=24, max_val_samples=None, lr_steps=(),
)  # fmt: skip
# Sized for the whole reproduction (about 16 runs) within 20 minutes on a 2-core CPU: 10 epochs of the first 800
# training persons (50 steps of 16) plus validation on all 494 persons of the 300 val images, about 1 min a run.
_DEFAULT = dict(
    synthetic_preset="default", model="hrnet_tiny", input_hw=(128, 96), heatmap_hw=(32, 24),
    epochs=10, batch_size=16, max_train_samples=800, max_val_samples=None, lr_steps=(8, 9),
)  # fmt: skip
# The long CPU scale (hours, resumable): the part-segmentation pretrained backbone (our ImageNet stand-in),
# every person of 4000 generated training images (~7,800; not memorised: each is seen ~20 times, augmented),
# 20 epochs of batches of 32, x0.1 after epochs 16 and 19; validated on the 400 long val images. No mirroring:
# the generator draws a figure's left limbs lighter than its right ones, and a mirrored crop (its joints
# relabelled) shows the lighter limbs labelled right, so mirroring half the crops makes that cue label noise.
# With mirroring, 55 % of the Gaussian baseline's misses (> 0.1 x person size) sat on the left/right twin's
# truth (gaussian, long, seed 0: 8.7 % of 15.8 % of labelled joints; docs/assumptions.md).
_LONG = dict(
    synthetic_preset="long", model="hrnet_tiny", input_hw=(128, 96), heatmap_hw=(32, 24), init="pretrained",
    epochs=20, batch_size=32, max_train_samples=None, max_val_samples=None, lr_steps=(16, 19), flip=False,
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
    "coco": dict(model="hrnet_w48", input_hw=(256, 192), heatmap_hw=(64, 48)),
    "mpii": dict(model="hrnet_w32", input_hw=(256, 256), heatmap_hw=(64, 64)),
}
_AUGMENTATION = {  # HRNet's recipes
    "coco": dict(scale_factor=0.35, rotation_factor=45.0, rotation_prob=0.6, half_body_prob=0.3),
    "mpii": dict(scale_factor=0.25, rotation_factor=30.0, rotation_prob=0.6, half_body_prob=0.0),
}


def preset(scale: str, method: str = "hdm", dataset: str | None = None, seed: int = 0, **overrides) -> Config:
    """The config of ``scale`` for ``method`` and ``dataset``, then ``overrides`` (any Config field).

    - ``smoke``: synthetic "smoke" split, hrnet_tiny at 128x96 (H x W), 2 epochs of 3 batches of 8: seconds.
    - ``default``: synthetic "default" split, hrnet_tiny at 128x96, the first 800 training persons, 10 epochs of
      50 batches of 16, Adam 1e-3 x0.1 after epochs 8 and 9: about 1 min per run on a 2-core CPU.
    - ``long``: synthetic "long" split, hrnet_tiny at 128x96 from the pretrained backbone (``init="pretrained"``),
      every training person, 20 epochs of batches of 32 (x0.1 after 16 and 19), no mirroring (it would contradict
      the generator's left/right shading): hours on a 2-core CPU.
    - ``paper``: coco (default) HRNet-W48 at 256x192 or mpii HRNet-W32 at 256x256 with HRNet's recipe.
    smoke, default and long use HRNet's lighter MPII augmentation (scale 0.25, rotation 30, no half body) on every
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
        fields = {**{"smoke": _SMOKE, "default": _DEFAULT, "long": _LONG}[scale], **_SHORT_AUGMENTATION}
    return Config().replace(scale=scale, method=method, dataset=dataset, seed=seed, **fields).replace(**overrides)


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """A variant spec ``"method"`` or ``"method+key:value+key:value"`` (e.g. ``"hdm+supplier:softplus"``) as
    ``(method, {key: value})``; values stay strings for ``Config.replace`` to parse. Checks only the syntax.
    (``:`` rather than ``=`` so that a spec in a notebook's parameters cell stays readable to papermill.)"""
    method, *parts = spec.split("+")
    if method not in METHODS:
        raise ValueError(f"variant {spec!r}: unknown method {method!r}; expected one of {tuple(METHODS)}")
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


def check_parameters(**parameters) -> None:
    """Check a notebook's parameters before it computes anything; one clear ``ValueError`` naming the first bad
    one. Known names: ``scale``; ``seed``; ``seeds``, ``ablation_seeds``, ``variant_seeds`` (non-empty lists of
    seeds >= 0); ``dataset`` (None or a dataset); ``variants``, ``ablations``, ``ours_model`` (variant specs);
    names starting with ``n_`` (integers >= 1). Other names are accepted as they are."""
    for name, value in parameters.items():
        where = f"notebook parameter {name}={value!r}"
        if name == "scale":
            if value not in SCALES:
                raise ValueError(f"{where}: expected one of {SCALES}")
        elif name == "seed":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}: expected an integer >= 0")
        elif name in ("seeds", "ablation_seeds", "variant_seeds"):
            if not isinstance(value, (list, tuple)) or not value or not all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):  # fmt: skip
                raise ValueError(f"{where}: expected a non-empty list of integers >= 0, e.g. [0, 1, 2]")
        elif name == "dataset":
            if value is not None and value not in DATASETS:
                raise ValueError(f"{where}: expected None or one of {DATASETS}")
        elif name in ("variants", "ablations", "ours_model"):
            specs = [value] if name == "ours_model" else value
            if not isinstance(specs, (list, tuple)) or not all(isinstance(s, str) for s in specs):
                raise ValueError(f"{where}: expected {'a' if name == 'ours_model' else 'a list of'} variant spec "
                                 "'method+key:value'")  # fmt: skip
            for spec in specs:
                try:
                    variant_preset("smoke", spec)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
        elif name.startswith("n_"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}: expected an integer >= 1")


@dataclass(frozen=True)
class PretrainConfig:
    """The neutral pretraining of a backbone (``hdm.engine.pretraining``): body-part segmentation of synthetic
    person crops (``hdm.data.parts``), our stand-in for ImageNet weights. One run serves every method and seed
    of the pose configs with ``init="pretrained"`` and the same model and input size.

    Sizes are (H, W) px; ``num_images`` pretraining images give about 2 persons each, ``val_images`` of them are
    held out for the per-epoch pixel accuracy and mean IoU.
    """

    model: str = "hrnet_tiny"
    input_hw: tuple[int, int] = (128, 96)
    num_images: int = 3000
    val_images: int = 200
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    lr_steps: tuple[int, ...] = (16,)
    lr_factor: float = 0.1
    seed: int = 0
    data_seed: int = 0
    # naming and execution (not part of the identity)
    code_modules: tuple[str, ...] = ("__init__.py", "geometry.py", "models/*.py", "data/*.py", "engine/common.py",
                                     "engine/pretraining.py")  # the code its runs execute: hashed into their identity
    method: str = "parts"
    scale: str = "pretrain"
    num_workers: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"pretraining model must be one of {tuple(MODELS)}, got {self.model!r}")
        if not 0 < self.val_images < self.num_images:
            raise ValueError(f"val_images must be in (0, num_images), got {self.val_images} of {self.num_images}")
        if any(v % OUTPUT_STRIDE for v in self.input_hw):
            raise ValueError(f"input_hw must be multiples of {OUTPUT_STRIDE}, got {self.input_hw}")
        check_device(self.device, "pretraining key device")

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        return tuple(v // OUTPUT_STRIDE for v in self.input_hw)

    def resolved(self) -> "PretrainConfig":
        return self

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def identity(self) -> dict:
        cfg = self.to_dict()
        for name in ("method", "scale", "num_workers", "device", "code_modules"):
            cfg.pop(name)
        return {"task": "part_segmentation", "synthetic_generator": synthetic.generator_version(), **cfg}


#: Pretraining sizes by pose scale (others use the ``PretrainConfig`` defaults): smoke pretrains in seconds.
_PRETRAIN_BY_SCALE = {"smoke": dict(num_images=16, val_images=4, epochs=1, batch_size=8, lr_steps=())}


def pretrain_config(cfg: Config) -> PretrainConfig:
    """The pretraining run whose backbone starts ``cfg`` when ``cfg.init == "pretrained"``: the model of ``cfg``,
    its ``pretrain_hw`` (None: its input size), the ``PretrainConfig`` defaults (seconds-sized at the smoke scale).
    The backbone is fully convolutional, so a run at 256x192 can start from the 128x96 pretraining run."""
    input_hw = tuple(cfg.input_hw if cfg.pretrain_hw is None else cfg.pretrain_hw)
    return PretrainConfig(model=cfg.model, input_hw=input_hw, device=cfg.device, num_workers=cfg.num_workers,
                          **_PRETRAIN_BY_SCALE.get(cfg.scale, {}))  # fmt: skip
