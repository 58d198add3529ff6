"""HRNet for top-down human pose estimation (Sun, Xiao, Liu, Wang, "Deep High-Resolution Representation
Learning for Human Pose Estimation", CVPR 2019).

The network keeps a high-resolution branch from the stem to the head and adds lower-resolution branches
stage by stage (each one half the size and twice the width of the one above). Inside every stage,
*high-resolution modules* run a few residual blocks per branch and then fuse all branches into each other:
a 1x1 conv + BN + nearest upsampling brings a lower resolution up, a chain of stride-2 3x3 convs brings a
higher resolution down. A 1x1 conv on the highest-resolution branch gives one heatmap per joint.

Symbols: B images, K joints, H x W input pixels. Output heatmaps are (B, K, ceil(H/4), ceil(W/4)): the
output stride is 4 (exactly H/4 x W/4 when H and W are multiples of 4; multiples of 32 keep every branch
an exact halving, as in the official code).

Layer names and their order equal those of the official pose code (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition1``, ``stage2``, ..., ``final_layer``), so its released checkpoints load with
``load_state_dict(strict=True)``. They must never change.

Contents, in order: the architecture as data (``HRNetCfg`` presets), the blocks, the high-resolution
module, the model, the constructors and checkpoint loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_MOMENTUM = 0.1  # BatchNorm running-statistics momentum of the official code (also PyTorch's default)
OUTPUT_STRIDE = 4  # input pixels per heatmap pixel: two stride-2 stem convs


# --------------------------------------------------------------------------------------------------
# Architecture as data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageCfg:
    """One stage: ``num_modules`` high-resolution modules with ``num_branches`` parallel branches.

    ``num_blocks[i]`` residual blocks of type ``block`` ("BASIC" or "BOTTLENECK") run on branch i with
    ``num_channels[i]`` planes (a Bottleneck outputs 4x planes). Branch i works at 1/(4 * 2**i) of the input.
    """

    num_modules: int
    num_branches: int
    block: str
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]


@dataclass(frozen=True)
class HRNetCfg:
    """A whole HRNet: the stem width, then the stages in order.

    ``stages[0]`` is ``layer1`` (one module, one branch, a plain chain of blocks, no fusion); every later
    stage ``s`` (1-based index ``s + 1`` in layer names: ``stage2``, ...) has at least as many branches as
    the one before, and new branches come from the previous lowest-resolution branch through ``transition``.
    Only the last module of the last stage returns the highest-resolution branch alone.
    """

    stem_width: int
    stages: tuple[StageCfg, ...]


def _hrnet_cfg(width: int) -> HRNetCfg:
    """The official pose HRNet-W{width}: layer1 of 4 Bottlenecks, then 1/4/3 modules of 4 BasicBlocks."""
    w = width
    return HRNetCfg(
        stem_width=64,
        stages=(
            StageCfg(1, 1, "BOTTLENECK", (4,), (64,)),
            StageCfg(1, 2, "BASIC", (4, 4), (w, 2 * w)),
            StageCfg(4, 3, "BASIC", (4, 4, 4), (w, 2 * w, 4 * w)),
            StageCfg(3, 4, "BASIC", (4, 4, 4, 4), (w, 2 * w, 4 * w, 8 * w)),
        ),
    )


CFGS: dict[str, HRNetCfg] = {
    "hrnet_w32": _hrnet_cfg(32),
    "hrnet_w48": _hrnet_cfg(48),
    # A CPU-sized HRNet: same topology (stem, layer1, 3 fused multi-resolution stages, 4 branches),
    # narrow stem (32) and branches (16/32/64/128), one module per stage, two blocks per branch
    # (1.2 M parameters; about 270 images/s for a training step at 128x96 on 2 CPU threads).
    "hrnet_tiny": HRNetCfg(
        stem_width=32,
        stages=(
            StageCfg(1, 1, "BOTTLENECK", (1,), (16,)),
            StageCfg(1, 2, "BASIC", (2, 2), (16, 32)),
            StageCfg(1, 3, "BASIC", (2, 2, 2), (16, 32, 64)),
            StageCfg(1, 4, "BASIC", (2, 2, 2, 2), (16, 32, 64, 128)),
        ),
    ),
}


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    """[conv (no bias, 'same' padding), BN]: the unit every HRNet layer is made of."""
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM),
    ]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection: (B, c_in, h, w) -> (B, planes, h/stride, w/stride)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), residual: (B, c_in, h, w) -> (B, 4 * planes, h/stride, w/stride)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, planes * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def _block_type(name: str) -> type[BasicBlock] | type[Bottleneck]:
    if name not in BLOCKS:
        raise ValueError(f"unknown HRNet block type {name!r}; expected one of {sorted(BLOCKS)}")
    return BLOCKS[name]


def make_blocks(block: type[BasicBlock] | type[Bottleneck], c_in: int, planes: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` blocks in a chain; the first gets a 1x1 conv-BN shortcut when its width changes.

    Returns a module mapping (B, c_in, h, w) -> (B, planes * block.expansion, h, w).
    """
    c_out = planes * block.expansion
    downsample = nn.Sequential(*_conv_bn(c_in, c_out, 1)) if c_in != c_out else None
    layers = [block(c_in, planes, downsample=downsample)]
    layers += [block(c_out, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------------
# High-resolution module
# --------------------------------------------------------------------------------------------------


def _fuse_down(c_from: int, c_to: int, steps: int) -> nn.Sequential:
    """``steps`` stride-2 3x3 conv-BN units; the intermediate ones keep ``c_from`` channels and end in ReLU,
    the last maps to ``c_to`` with no ReLU (the sum is rectified afterwards)."""
    units = []
    for k in range(steps):
        last = k == steps - 1
        unit = _conv_bn(c_from, c_to if last else c_from, 3, stride=2)
        units.append(nn.Sequential(*unit) if last else nn.Sequential(*unit, nn.ReLU(inplace=True)))
    return nn.Sequential(*units)


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks, then exchange between all resolutions.

    Input: a list of ``num_branches`` tensors, branch i of shape (B, c_i, h_i, w_i) with h_{i+1} = ceil(h_i/2).
    Output: the same list shapes (``multi_scale_output=True``), or only branch 0 (``False``).
    Fusion: out_i = ReLU(sum_j f_ij(x_j)), with f_ii = identity, f_ij for j > i = 1x1 conv-BN then nearest
    upsampling to (h_i, w_i), f_ij for j < i = (i - j) stride-2 3x3 conv-BN units.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, ...],
        in_channels: tuple[int, ...],
        num_channels: tuple[int, ...],
        multi_scale_output: bool = True,
    ):
        super().__init__()
        n = len(num_blocks)
        if not len(in_channels) == len(num_channels) == n:
            raise ValueError(
                f"one entry per branch expected: num_blocks {num_blocks}, in_channels {in_channels}, "
                f"num_channels {num_channels}"
            )
        self.num_branches = n
        self.branches = nn.ModuleList(
            make_blocks(block, in_channels[i], num_channels[i], num_blocks[i]) for i in range(n)
        )
        self.out_channels = tuple(c * block.expansion for c in num_channels)
        self.fuse_layers = self._make_fuse_layers(self.out_channels, multi_scale_output) if n > 1 else nn.ModuleList()
        self.relu = nn.ReLU(inplace=False)

    @staticmethod
    def _make_fuse_layers(channels: tuple[int, ...], multi_scale_output: bool) -> nn.ModuleList:
        """fuse_layers[i][j] = f_ij; Identity stands in for i == j (no parameters, keeps the indices)."""
        rows = []
        for i in range(len(channels) if multi_scale_output else 1):
            row = []
            for j, c in enumerate(channels):
                if j > i:
                    row.append(nn.Sequential(*_conv_bn(c, channels[i], 1)))  # upsampled in forward
                elif j < i:
                    row.append(_fuse_down(c, channels[i], i - j))
                else:
                    row.append(nn.Identity())
            rows.append(nn.ModuleList(row))
        return nn.ModuleList(rows)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        if len(xs) != self.num_branches:
            raise ValueError(f"expected {self.num_branches} branch tensors, got {len(xs)}")
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = None
            for j, (f, x) in enumerate(zip(row, xs)):
                z = f(x)
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode="nearest")
                y = z if y is None else y + z
            out.append(self.relu(y))
        return out


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def _make_transition(c_prev: tuple[int, ...], c_next: tuple[int, ...]) -> nn.ModuleList:
    """Maps the previous stage's branches to the next stage's.

    Existing branch i: Identity if its width is unchanged, else 3x3 conv-BN-ReLU. New branch i (from the
    previous lowest-resolution branch): (i - len(c_prev) + 1) stride-2 3x3 conv-BN-ReLU units, the last one
    changing the width to c_next[i].
    """
    layers = []
    for i, c in enumerate(c_next):
        if i < len(c_prev):
            same = c_prev[i] == c
            layers.append(nn.Identity() if same else nn.Sequential(*_conv_bn(c_prev[i], c, 3), nn.ReLU(inplace=True)))
        else:
            steps = i - len(c_prev) + 1
            units = []
            for k in range(steps):
                c_out = c if k == steps - 1 else c_prev[-1]
                units.append(nn.Sequential(*_conv_bn(c_prev[-1], c_out, 3, stride=2), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*units))
    return nn.ModuleList(layers)


def _check_cfg(cfg: HRNetCfg) -> None:
    first = cfg.stages[0] if cfg.stages else None
    if first is None or first.num_modules != 1 or first.num_branches != 1:
        raise ValueError(f"stages[0] (layer1) must have 1 module and 1 branch, got {first}")
    if len(cfg.stages) < 2 or cfg.stages[-1].num_branches < 2:
        raise ValueError(f"an HRNet needs a multi-branch stage after layer1; got stages {cfg.stages}")
    for s, st in enumerate(cfg.stages):
        _block_type(st.block)
        if not len(st.num_blocks) == len(st.num_channels) == st.num_branches or st.num_modules < 1:
            raise ValueError(
                f"stage {s + 1}: need num_modules >= 1 and one num_blocks/num_channels per branch, got {st}"
            )
        if s > 0 and st.num_branches < cfg.stages[s - 1].num_branches:
            raise ValueError(f"stage {s + 1} has fewer branches than stage {s}: {cfg.stages[s - 1 : s + 1]}")


class HRNet(nn.Module):
    """Top-down pose HRNet: image crop -> one heatmap per joint at 1/4 resolution.

    Input ``x``: (B, 3, H, W) float, normalised image crop. Output: (B, K, ceil(H/4), ceil(W/4)) float heatmaps.
    Attributes: ``num_joints`` (K), ``output_stride`` (4), ``cfg`` (the ``HRNetCfg``), ``num_features``
    (channels of the highest-resolution feature map that the head reads).
    """

    output_stride = OUTPUT_STRIDE

    def __init__(self, cfg: HRNetCfg, num_joints: int):
        super().__init__()
        _check_cfg(cfg)
        if num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {num_joints}")
        self.cfg = cfg
        self.num_joints = num_joints

        w = cfg.stem_width
        self.conv1, self.bn1 = _conv_bn(3, w, 3, stride=2)
        self.conv2, self.bn2 = _conv_bn(w, w, 3, stride=2)
        self.relu = nn.ReLU(inplace=True)

        st1 = cfg.stages[0]
        block1 = _block_type(st1.block)
        self.layer1 = make_blocks(block1, w, st1.num_channels[0], st1.num_blocks[0])
        channels = (st1.num_channels[0] * block1.expansion,)

        self._stage_names: list[tuple[str, str]] = []
        for s, st in enumerate(cfg.stages[1:], start=2):
            block = _block_type(st.block)
            c_next = tuple(c * block.expansion for c in st.num_channels)
            setattr(self, f"transition{s - 1}", _make_transition(channels, c_next))
            last_stage = s == len(cfg.stages)
            modules = []
            for m in range(st.num_modules):
                multi = not (last_stage and m == st.num_modules - 1)
                modules.append(HighResolutionModule(block, st.num_blocks, c_next, st.num_channels, multi))
                c_next = modules[-1].out_channels
            setattr(self, f"stage{s}", nn.Sequential(*modules))
            self._stage_names.append((f"transition{s - 1}", f"stage{s}"))
            channels = c_next

        self.num_features = channels[0]
        self.final_layer = nn.Conv2d(self.num_features, num_joints, kernel_size=1)
        self.init_weights()

    def init_weights(self) -> None:
        """HRNet's initialisation: conv weights ~ N(0, 0.001^2), conv biases 0, BN weight 1 and bias 0.

        The untrained network therefore predicts heatmaps close to 0 everywhere.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) image -> (B, num_features, ceil(H/4), ceil(W/4)) highest-resolution features."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch (B, 3, H, W), got shape {tuple(x.shape)}")
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for t_name, s_name in self._stage_names:
            transition = getattr(self, t_name)
            xs = [t(ys[i] if i < len(ys) else ys[-1]) for i, t in enumerate(transition)]
            ys = getattr(self, s_name)(xs)
        return ys[0]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) image -> (B, K, ceil(H/4), ceil(W/4)) heatmaps (1x1 conv on the features)."""
        return self.final_layer(self.forward_features(x))


# --------------------------------------------------------------------------------------------------
# Constructors and checkpoints
# --------------------------------------------------------------------------------------------------


def hrnet_w32(num_joints: int = 17) -> HRNet:
    """HRNet-W32 (branch widths 32/64/128/256): 28,536,113 parameters for K = 17."""
    return HRNet(CFGS["hrnet_w32"], num_joints)


def hrnet_w48(num_joints: int = 17) -> HRNet:
    """HRNet-W48 (branch widths 48/96/192/384): 63,595,745 parameters for K = 17."""
    return HRNet(CFGS["hrnet_w48"], num_joints)


def hrnet_tiny(num_joints: int = 17) -> HRNet:
    """A small 4-branch HRNet (16/32/64/128) that trains on a CPU; see ``CFGS['hrnet_tiny']``."""
    return HRNet(CFGS["hrnet_tiny"], num_joints)


MODELS = {"hrnet_w32": hrnet_w32, "hrnet_w48": hrnet_w48, "hrnet_tiny": hrnet_tiny}


def get_model(name: str, num_joints: int) -> HRNet:
    """The preset ``name`` (one of ``MODELS``) predicting ``num_joints`` heatmaps, freshly initialised."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_joints)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    """A plain state_dict, or the one under 'state_dict' / 'model'; a leading 'module.' (DDP) is removed."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(
            f"{path} holds no state_dict: expected a mapping of names to tensors (optionally under "
            f"'state_dict' or 'model'), got {type(obj).__name__}"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True):
    """Loads the local checkpoint ``path`` into ``model`` (on the model's device); never downloads.

    Accepts a plain state_dict, or a dict with it under 'state_dict' or 'model'; keys prefixed with
    'module.' (saved from DDP) are stripped. Returns ``load_state_dict``'s (missing_keys, unexpected_keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {path}. Place the file there yourself (e.g. the official HRNet "
            f"pose_hrnet_w32_256x192.pth); this project never downloads weights."
        )
    device = next(model.parameters()).device
    state = _unwrap_state_dict(torch.load(path, map_location=device, weights_only=True), path)
    try:
        return model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        joints = getattr(model, "num_joints", "?")
        raise RuntimeError(
            f"checkpoint {path} does not fit this {type(model).__name__} (num_joints={joints}): check the "
            f"model name and num_joints, or pass strict=False to load the matching part.\n{err}"
        ) from err
