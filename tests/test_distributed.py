"""Data-parallel training on the CPU (gloo): the environment, BatchNorm over the global batch, and a whole
2-process torchrun run against the one-process run on the same global batch."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from hdm import distributed, runs
from hdm.engine import build_data, training
from hdm.methods import method_loss
from hdm.config import preset
from hdm.engine import train
from hdm.models import get_model
from hdm.paths import REPO_ROOT

WORLD = 2


def test_environment_decides_the_world():
    assert distributed.from_env({}) == distributed.DistInfo(0, 1, 0)
    info = distributed.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.distributed, info.main) == (3, 4, 1, True, False)
    with pytest.raises(ValueError, match="missing"):
        distributed.from_env({"RANK": "0"})
    with pytest.raises(ValueError, match="invalid distributed environment"):
        distributed.from_env({"RANK": "4", "WORLD_SIZE": "4", "LOCAL_RANK": "0"})
    assert distributed.backend_for("cuda") == "nccl" and distributed.backend_for("cpu") == "gloo"


def test_without_a_process_group_the_helpers_are_identities():
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.all_gather_objects(5) == [5]
    assert distributed.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    bn = distributed.convert_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    assert isinstance(bn[1], distributed.GlobalBatchNorm2d)
    x = torch.randn(6, 3, 5, 5)
    ref = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ref.load_state_dict(bn.state_dict())  # the same keys as plain BatchNorm
    torch.testing.assert_close(bn(x), ref(x))


def _batchnorm_case():
    """A batch (8, 3, 5, 4), a BatchNorm with non-trivial affine parameters, and per-output loss weights."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 4, generator=g) * 2 + 1
    w = torch.randn(8, 3, 5, 4, generator=g)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return x, w, bn


def _batchnorm_worker(out_dir: str) -> None:
    """Rank r normalises rows r::2 with GlobalBatchNorm2d; writes its outputs and gradients."""
    info = distributed.from_env()
    distributed.setup(info, "cpu")
    try:
        x, w, bn = _batchnorm_case()
        rows = slice(info.rank, None, info.world_size)
        bn = distributed.convert_batchnorm(bn)
        xs = x[rows].clone().requires_grad_(True)
        y = bn(xs)
        (y * w[rows]).sum().backward()
        torch.save({"y": y.detach(), "x_grad": xs.grad, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
                    "running_mean": bn.running_mean, "running_var": bn.running_var},
                   os.path.join(out_dir, f"rank{info.rank}.pt"))  # fmt: skip
    finally:
        distributed.teardown()


def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    distributed.launch_local(_batchnorm_worker, WORLD, (str(tmp_path),))
    x, w, bn = _batchnorm_case()
    x = x.clone().requires_grad_(True)
    y = bn(x)
    (y * w).sum().backward()
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for r, part in enumerate(parts):
        torch.testing.assert_close(part["y"], y[r::WORLD].detach())
        torch.testing.assert_close(part["x_grad"], x.grad[r::WORLD])
        torch.testing.assert_close(part["running_mean"], bn.running_mean)  # identical on every rank
        torch.testing.assert_close(part["running_var"], bn.running_var)  # unbiased over all 160 pixels
    # a rank's parameter gradient is its share; DDP sums (and averages) the shares
    torch.testing.assert_close(sum(p["weight_grad"] for p in parts), bn.weight.grad)
    torch.testing.assert_close(sum(p["bias_grad"] for p in parts), bn.bias.grad)


METHODS = ("gaussian", "hdm")
STEPS = dict(epochs=2, batch_size=8, max_train_samples=16)  # 2 epochs x 2 steps of a global batch of 8
SMALL = dict(input_hw=(64, 64), heatmap_hw=(16, 16))  # float64 convolutions are slow on a CPU


def _train_steps(out_path: str) -> None:
    """The engine's loader, data-parallel wrapper and epochs, in float64, for each method in METHODS; the world
    comes from the environment (one process without it). Rank 0 saves the weights and mean losses."""
    info = distributed.from_env()
    owns = distributed.setup(info, "cpu")
    cpu = torch.device("cpu")
    try:
        out = {}
        for method in METHODS:
            cfg = preset("smoke", method, seed=0, **STEPS, **SMALL)
            data = build_data(cfg)
            torch.manual_seed(cfg.seed)
            model = get_model(cfg.model, data.num_joints).double()
            net = distributed.wrap_model(model, info, cpu)
            optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            loader = training.train_loader(data.train, cfg, info, cpu)
            loss_fn = method_loss(method, cfg)
            losses = [training.train_epoch(net, loader, loss_fn, optimizer, e, cfg.seed, info, cpu) for e in range(2)]
            out[method] = {"model": model.state_dict(), "losses": losses, "batches": len(loader)}
        if info.main:
            torch.save(out, out_path)
    finally:
        if owns:
            distributed.teardown()


def test_two_ranks_train_like_one_process_on_the_global_batch(tmp_path, monkeypatch):
    """Float64, so that the comparison is not drowned in float32 noise: HRNet's tiny initial weights make float32
    gradients only ~3 % accurate, and Adam's first steps (about lr x sign(gradient)) turn that into 2 lr
    differences. In float64 two gloo ranks with BatchNorm over the global batch give one process's weights."""
    monkeypatch.setenv("HDM_DATA", str(tmp_path / "data"))
    _train_steps(str(tmp_path / "solo.pt"))  # also generates the smoke data the ranks read
    distributed.launch_local(_train_steps, WORLD, (str(tmp_path / "ddp.pt"),))
    solo, ddp = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("solo", "ddp"))
    torch.manual_seed(0)
    initial = get_model("hrnet_tiny", 17).state_dict()
    for method in METHODS:
        a, b = solo[method], ddp[method]
        assert a["batches"] == b["batches"] == 2  # 16 samples / 8 per step; 4 per rank and step
        np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-9)
        moved = 0.0
        for key, value in a["model"].items():
            if value.is_floating_point():
                torch.testing.assert_close(b["model"][key], value, rtol=1e-7, atol=1e-9, msg=f"{method} {key}")
                moved = max(moved, (value - initial[key].double()).abs().max().item())
        assert moved > 1e-3  # the weights did train


def test_torchrun_runs_the_engine_with_two_processes(tmp_path, monkeypatch):
    """``torchrun --nproc_per_node 2 -m hdm train`` (gloo, 127.0.0.1, a free port): one run folder written by rank 0,
    validation gathered in dataset order, and the same first epoch as the one-process run (float32: later epochs
    drift apart, see the float64 test above)."""
    data, solo_root, ddp_root = tmp_path / "data", tmp_path / "solo", tmp_path / "ddp"
    monkeypatch.setenv("HDM_DATA", str(data))
    monkeypatch.setenv("HDM_RUNS", str(solo_root))
    solo = train(preset("smoke", "gaussian", seed=0, **STEPS), progress=False)  # also generates the data

    env = {**os.environ, "HDM_DATA": str(data), "HDM_RUNS": str(ddp_root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(WORLD),
               "--master_addr", "127.0.0.1", "--master_port", str(distributed.free_port()),
               "-m", "hdm", "train", "--scale", "smoke", "--method", "gaussian", "--seed", "0", "--no-progress"]
    command += [arg for k, v in STEPS.items() for arg in ("--set", f"{k}={v}")]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert [p.name for p in ddp_root.iterdir()] == [solo.dir.name]  # world size is not part of the identity
    ddp = runs.Run(ddp_root / solo.dir.name)
    assert ddp.done and ddp.provenance["sessions"][0]["world_size"] == WORLD
    assert not any(".tmp-" in p.name for p in ddp.dir.iterdir())  # no temporary file left
    with runs.RunLock(ddp.dir):  # and the lock is free
        pass
    ma, mb = solo.metrics, ddp.metrics
    assert list(ma.columns) == list(mb.columns) and mb["epoch"].tolist() == [1, 2]
    assert math.isclose(mb["train_loss"].iloc[0], ma["train_loss"].iloc[0], rel_tol=1e-3)
    assert np.isfinite(mb[["val_mse", "val_hdm", "PCK", "err_px"]].to_numpy()).all()
    pa, pb = solo.predictions(), ddp.predictions()
    assert pb["index"].tolist() == list(range(len(pa["index"])))  # every sample once, in dataset order
    assert np.array_equal(pb["annotation_id"], pa["annotation_id"])
