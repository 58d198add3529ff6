"""HRNet presets against the official model's facts (parameter counts, state_dict layout), checkpoint loading,
output geometry (stride 4), initialisation, and the fusion's nearest upsampling."""

from __future__ import annotations

import json

import pytest
import torch

from hdm.models import MODELS, HighResolutionModule, get_model, load_checkpoint
from hdm.models.hrnet import BasicBlock
from hdm.paths import REPO_ROOT

# statedict_keys_*.json: every key and shape of the official model, in order (a copy in tests/data wins)
REFERENCE_DIRS = (REPO_ROOT / "tests" / "data", REPO_ROOT.parent / "shared" / "reference")

# facts.md: parameter counts of the official model built from its own configs
OFFICIAL_PARAMS = {
    ("hrnet_w32", 17): 28_536_113,
    ("hrnet_w32", 16): 28_536_080,
    ("hrnet_w48", 17): 63_595_745,
    ("hrnet_w48", 16): 63_595_696,
}


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def big_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: get_model(name, 17) for name in ("hrnet_w32", "hrnet_w48")}


@pytest.mark.parametrize("name,num_joints", sorted(OFFICIAL_PARAMS))
def test_parameter_count_matches_official(name, num_joints, big_models):
    model = big_models[name] if num_joints == 17 else get_model(name, num_joints)
    assert _num_params(model) == OFFICIAL_PARAMS[(name, num_joints)]
    assert model.num_joints == num_joints


@pytest.mark.parametrize("name,ref", [("hrnet_w32", "w32"), ("hrnet_w48", "w48")])
def test_state_dict_keys_and_shapes_match_official(name, ref, big_models):
    found = [d / f"statedict_keys_{ref}_256x192.json" for d in REFERENCE_DIRS]
    found = [p for p in found if p.is_file()]
    if not found:
        pytest.skip(f"statedict_keys_{ref}_256x192.json not found in {[str(d) for d in REFERENCE_DIRS]}")
    path = found[0]
    expected = json.loads(path.read_text())  # [[key, shape], ...] in the official order
    got = [[k, list(v.shape)] for k, v in big_models[name].state_dict().items()]
    assert len(got) == len(expected) == 1754
    assert got == expected


def test_last_module_outputs_only_highest_resolution(big_models):
    model = big_models["hrnet_w32"]
    assert [len(m.fuse_layers) for m in model.stage4] == [4, 4, 1]
    assert all(len(m.fuse_layers) == 3 for m in model.stage3)


@pytest.mark.parametrize("name", ["hrnet_w32", "hrnet_w48"])
def test_big_preset_output_shape_small_input(name, big_models):
    model = big_models[name].eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 48))
    assert out.shape == (1, 17, 16, 12)
    assert model.output_stride == 4


@pytest.mark.parametrize(
    "size,heatmap", [((128, 96), (32, 24)), ((64, 64), (16, 16)), ((70, 50), (18, 13))]  # ceil(H/4) x ceil(W/4)
)
def test_tiny_output_shape(size, heatmap):
    torch.manual_seed(0)
    model = get_model("hrnet_tiny", 16)
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 16, *heatmap)
    assert model.num_joints == 16


def test_tiny_is_multi_resolution():
    """Every stage after layer1 fuses at least two resolutions; the last one reaches >= 3 branches."""
    model = get_model("hrnet_tiny", 17)
    stages = [model.stage2, model.stage3, model.stage4]
    assert all(len(m.fuse_layers[0]) >= 2 for stage in stages for m in stage)
    assert stages[-1][-1].num_branches >= 3


def test_untrained_output_near_zero():
    """Compared with target heatmaps that peak at 1: train-mode BN keeps features O(1), so the 1x1 head
    (std 0.001) gives ~1e-2; eval mode with fresh running statistics shrinks every layer by ~1e-3."""
    torch.manual_seed(0)
    model = get_model("hrnet_tiny", 17)
    x = torch.randn(4, 3, 64, 48)
    out_train = model.train()(x)
    with torch.no_grad():
        out_eval = model.eval()(x)
    assert out_train.abs().max() < 0.1 and out_train.std() < 0.02
    assert out_eval.abs().max() < 1e-3
    assert torch.equal(model.final_layer.bias.detach(), torch.zeros(17))


def test_dtype_follows_input():
    model = get_model("hrnet_tiny", 3).double().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (1, 3, 8, 8)


def test_fusion_upsamples_nearest_and_downsamples_by_strided_conv():
    """out_0 = ReLU(x0 + up_nearest(BN(conv1x1(x1)))), out_1 = ReLU(BN(conv3x3_s2(x0)) + x1), with
    nearest upsampling written independently as repeat_interleave."""
    torch.manual_seed(0)
    module = HighResolutionModule(BasicBlock, (1, 1), (4, 8), (4, 8))
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.5)
    module.eval()
    x0, x1 = torch.randn(2, 4, 8, 6), torch.randn(2, 8, 4, 3)
    with torch.no_grad():
        out0, out1 = module([x0, x1])
        b0, b1 = module.branches[0](x0), module.branches[1](x1)
        up = module.fuse_layers[0][1](b1).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        down = module.fuse_layers[1][0](b0)
    assert down.shape == b1.shape
    torch.testing.assert_close(out0, torch.relu(b0 + up))
    torch.testing.assert_close(out1, torch.relu(down + b1))


@pytest.mark.parametrize("wrap", ["state_dict", "model", None])
def test_checkpoint_round_trip_with_ddp_prefix(tmp_path, wrap):
    torch.manual_seed(0)
    source = get_model("hrnet_tiny", 17)
    with torch.no_grad():  # non-trivial weights and BN statistics, so equality means something
        for p in source.parameters():
            p.normal_(std=0.1)
        source.train()(torch.randn(4, 3, 64, 48))
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({wrap: state, "epoch": 3} if wrap else state, path)

    torch.manual_seed(1)
    target = get_model("hrnet_tiny", 17)
    result = load_checkpoint(target, path)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(source.eval()(x), target.eval()(x))


def test_checkpoint_for_other_joint_count_fails_clearly(tmp_path):
    path = tmp_path / "k17.pth"
    torch.save(get_model("hrnet_tiny", 17).state_dict(), path)
    with pytest.raises(RuntimeError, match="num_joints=16"):
        load_checkpoint(get_model("hrnet_tiny", 16), path)


def test_missing_checkpoint_raises_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_checkpoint(get_model("hrnet_tiny", 17), tmp_path / "absent.pth")


def test_unknown_model_name_lists_available():
    with pytest.raises(ValueError, match="hrnet_w99") as err:
        get_model("hrnet_w99", 17)
    assert all(name in str(err.value) for name in MODELS)


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        get_model("hrnet_tiny", 17)(torch.randn(1, 1, 64, 48))
