"""Data-parallel training helpers: one engine for one process, one GPU, many GPUs and many nodes.

The engine (``hdm.engine.train``) switches to DistributedDataParallel when it finds the variables that
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)::

    python -m hdm train --scale paper --method hdm                                   # one process
    torchrun --standalone --nproc_per_node 4 -m hdm train --scale paper --method hdm  # 4 GPUs, one node
    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --master_addr HOST --master_port 29500 \\
        -m hdm train --scale paper --method hdm                                       # 2 nodes (shared run folder)

Conventions:
- ``batch_size`` in the config is the *global* batch; each of the W ranks takes ``batch_size / W`` (it must
  divide). HRNet's "32 images per GPU x 4 GPUs" is therefore ``batch_size = 128``, whatever the GPU count.
- Backend: nccl on CUDA, gloo on the CPU.
- BatchNorm statistics span the global batch: ``torch.nn.SyncBatchNorm`` on CUDA; on the CPU, where PyTorch's
  SyncBatchNorm refuses to run (torch 2.13: "SyncBatchNorm expected input tensor to be on GPU"), our
  ``GlobalBatchNorm2d`` does the same with autograd-aware all-reduces. A W-rank run therefore computes the
  same function as a one-process run on the same global batch, up to float summation order.
  (HRNet's DataParallel kept per-GPU statistics over 32 images; ours are over the global batch.)
- Only rank 0 writes files; every rank reads the run folder, so multi-node runs need a shared file system.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` in [0, world_size), ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files, logs and shows progress bars."""
        return self.rank == 0


def from_env(environ=None) -> DistInfo:
    """The ``DistInfo`` that torchrun's variables describe; one process (rank 0 of 1) when they are absent."""
    env = os.environ if environ is None else environ
    present = [v for v in ENV_VARS if v in env]
    if not present:
        return DistInfo()
    if len(present) < len(ENV_VARS):
        missing = sorted(set(ENV_VARS) - set(present))
        raise ValueError(f"distributed launch needs {ENV_VARS}; {missing} missing: launch with torchrun")
    try:
        rank, world, local = (int(env[v]) for v in ENV_VARS)
    except ValueError:
        raise ValueError(f"RANK, WORLD_SIZE, LOCAL_RANK must be integers, got {[env[v] for v in ENV_VARS]}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"invalid distributed environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return DistInfo(rank, world, local)


def backend_for(device_type: str) -> str:
    """nccl for CUDA, gloo for the CPU."""
    return "nccl" if device_type == "cuda" else "gloo"


def setup(info: DistInfo, device_type: str) -> bool:
    """Join the process group described by ``info`` (env:// rendezvous) if it is distributed and not joined yet.

    Returns True when this call created the group (the caller then tears it down with ``teardown``).
    """
    if not info.distributed or dist.is_initialized():
        return False
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend_for(device_type), rank=info.rank, world_size=info.world_size)
    return True


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (any picklable object); ``obj`` itself without a process group."""
    if not dist.is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_objects(obj) -> list:
    """One entry per rank, in rank order: every rank's ``obj`` (``[obj]`` without a process group)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Sum of each number over the ranks, in float64 (the numbers themselves without a process group)."""
    if not dist.is_initialized():
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


# ---------------------------------------------------------------------------------------------------------
# BatchNorm over the global batch


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with autograd: the gradient of each rank's input is the sum of every rank's output gradient
    (``y = Σ_r x_r`` on every rank, so ``∂L/∂x_r = Σ_r' ∂L_r'/∂y``)."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_reduce_with_grad(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """``Σ_ranks tensor`` on every rank, differentiable (identity without a process group)."""
    if not dist.is_initialized():
        return tensor
    return _AllReduceSum.apply(tensor, group)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics span the batches of every rank (any backend, CPU included).

    In training mode, with N_r pixels of channel c on rank r and ``N = Σ_r N_r``:
    ``μ = Σ x / N``, ``σ² = Σ (x - μ)² / N`` (two all-reduces, both differentiable),
    ``y = (x - μ) / sqrt(σ² + eps) · weight + bias``; the running mean and the unbiased running variance
    ``σ² N / (N - 1)`` follow ``momentum`` exactly as in BatchNorm. Evaluation mode is plain BatchNorm.
    Parameter and buffer names are BatchNorm's, so checkpoints are interchangeable.

    Args:
        group: the process group to reduce over (default: the whole world). Use a group of its own when the
            model is wrapped in DistributedDataParallel, so that these collectives never interleave with its
            gradient all-reduces.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, group=None):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True, track_running_stats=True)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        if x.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) input, got shape {tuple(x.shape)}")
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = all_reduce_with_grad(torch.cat([x.sum((0, 2, 3)), count]), self.group)
        total = stats[-1].detach()
        mean = stats[:-1] / total
        centred = x - mean[None, :, None, None]
        var = all_reduce_with_grad(centred.pow(2).sum((0, 2, 3)), self.group) / total
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            unbiased = var.detach() * total / max(float(total) - 1, 1.0)
            self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        scale = torch.rsqrt(var + self.eps) * self.weight
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def convert_batchnorm(module: nn.Module, group=None) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a ``GlobalBatchNorm2d`` sharing its parameter and buffer
    tensors (children are replaced in place; returns the converted module)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        if not (module.affine and module.track_running_stats):
            raise ValueError("GlobalBatchNorm2d converts affine BatchNorm2d with running statistics only")
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, group)
        # the same Parameter and buffer objects: an optimiser built on the old module keeps working
        new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child, group))
    return module


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` ready for data-parallel training: BatchNorm over the global batch, then DDP.

    Returns ``model`` itself when ``info`` is not distributed. The wrapped model's ``.module`` is ``model``
    (its BatchNorms converted in place), whose ``state_dict`` keeps the plain model's keys.
    """
    if not info.distributed:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index], forward_sync_buffers=False)
    # gloo collectives on a group of their own, so that BatchNorm's and DDP's reductions never interleave
    model = convert_batchnorm(model, dist.new_group(backend="gloo"))
    # running statistics are identical on every rank already: no buffer broadcast before each forward
    return nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------------------------------------------------
# Local launcher (tests, quick CPU checks)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _entry(rank: int, fn, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    fn(*args)


def launch_local(fn, world_size: int, args: tuple = ()) -> None:
    """Run ``fn(*args)`` in ``world_size`` fresh processes on this machine, with torchrun's variables set
    (127.0.0.1, a free port), and wait for all of them; a failure in any process raises here.

    ``fn`` must be importable by name (a module-level function), as ``torch.multiprocessing.spawn`` requires.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    mp.spawn(_entry, args=(fn, world_size, free_port(), tuple(args)), nprocs=world_size, join=True)
