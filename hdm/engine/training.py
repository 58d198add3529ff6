"""The training loop: ``train(config) -> Run``, cached, resumable, single process or torchrun.

    python -m hdm train --scale smoke --method hdm --seed 0                 # seconds, CI
    python -m hdm train --scale default --method gaussian --seed 0          # minutes on a 2-core CPU
    python -m hdm train --scale paper --dataset coco --method hdm           # COCO, HRNet-W48 256x192
    torchrun --standalone --nproc_per_node 4 -m hdm train --scale paper --dataset mpii --method hdm

    from hdm.config import preset
    from hdm.engine import train
    run = train(preset("default", "hdm", seed=0))      # cached: a finished run returns at once
    run.metrics                                         # DataFrame, one row per epoch

After every epoch the loop validates (``hdm.engine.evaluation``) and appends one row to metrics.csv: ``epoch``
(1-based, epochs finished), ``lr`` (used during the epoch), ``train_loss`` (the method's loss, mean over the
epoch's batches), then the validation metrics, then the training diagnostics (``hdm.engine.diagnostics``):
``head_grad``, ``train_no_positive_share`` (share of the counted joint maps of the epoch's batches without a
pixel > 0) and ``train_guard_share`` (share of them the relu suppliers' guard serves; 0 for other suppliers,
for ``supply_guard="strict"`` and for the MSE methods). The final epoch's predictions go to predictions.npz.

Reproducibility: the model is initialised from ``seed``; epoch ``e`` shuffles with a generator seeded by
(seed, e), draws augmentation per (seed, e, sample index) (``TopDownDataset.set_epoch``) and reseeds torch with
(seed, e, rank) for anything random in the model. An interrupted run resumes from ``last.pt`` and ends with the
same numbers as an uninterrupted one (bitwise on the same CPU). See ``hdm.distributed`` for multi-GPU runs.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from hdm import distributed
from hdm.config import Config, pretrain_config
from hdm.data.sources import data_fingerprint
from hdm.engine.common import epoch_seed, progress_line
from hdm.engine.data import base_dataset, build_data
from hdm.engine.diagnostics import MapShares, loss_supplier
from hdm.engine.evaluation import reduce_device, resolve_device, validate
from hdm.engine.pretraining import backbone_state, pretrain
from hdm.methods import method_loss
from hdm.models import get_model
from hdm.runs import DamagedRunError, Run, RunLock, RunLockedError, run_identity

log = logging.getLogger(__name__)


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


def _format_row(row: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


def _headline(row: dict) -> str:
    return "  ".join(f"{k} {row[k]:.4g}" for k in ("train_loss", "AP", "PCKh", "PCK", "err_hm") if k in row)


def train(config: Config, *, progress: bool | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> Run:  # fmt: skip
    """Train (or resume, or fetch from the cache) the run of ``config``; returns its ``Run``.

    A finished run is returned at once once its files and identity verify (also when another process finished it
    while this one waited for its lock); an unfinished one resumes after its last checkpointed epoch. The run's
    identity covers the config, the training code and the data's fingerprint (``hdm.data.sources``): other data
    are another run. Under torchrun (RANK/WORLD_SIZE/LOCAL_RANK set) every rank calls this and rank 0 writes.

    Args:
        config: the experiment (``hdm.config.preset(...)`` or a ``Config``).
        progress: tqdm bars for epochs and batches (default: when stderr is a terminal; rank 0 only).
        on_epoch_end: called as ``on_epoch_end(epoch, row)`` on every rank after each epoch's checkpoint is
            written (``row``: the metrics.csv row on rank 0, {} elsewhere); an exception it raises stops training
            and leaves a resumable run.
    Raises:
        hdm.data.DatasetNotFoundError / EmptyDatasetError: missing or empty data (no run folder is left).
        hdm.runs.RunLockedError: another live process is training this run.
        hdm.runs.DamagedRunError: the cached run's files or its checkpoint do not verify (names the file).
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


def _train(cfg: Config, info, device: torch.device, progress, on_epoch_end) -> Run:
    fingerprint = data_fingerprint(cfg)  # synthetic: generates the splits on first use
    identity = run_identity(cfg, fingerprint)
    run = Run.of(cfg, identity)
    if distributed.broadcast_object(run.done if info.main else None):
        if info.main:
            run.verify(identity)
        log.info("%s: finished run found in the cache", run.dir)
        return run
    if cfg.init_from is not None:  # the run whose weights we start from (cached when already trained)
        _train(cfg.init_config(), info, device, progress, None)
    data = build_data(cfg, train=True)  # before the run folder exists: a missing dataset leaves no folder
    lock = RunLock(run.dir) if info.main else None
    outcome = None  # None: train; "done": finished meanwhile by another process; else the lock's error
    if lock is not None:
        try:
            lock.acquire()
            if run.done:
                lock.release()
                outcome = "done"
        except RunLockedError as exc:
            outcome = str(exc)
    outcome = distributed.broadcast_object(outcome)
    if outcome == "done":
        if info.main:
            run.verify(identity)
        log.info("%s: finished by another process while this one waited", run.dir)
        return run
    if outcome:
        raise RunLockedError(outcome)
    handler = None
    try:
        if info.main:
            run.write_config(cfg, identity)
            handler = run.log_handler()
            log.addHandler(handler)
        show = (sys.stderr.isatty() if progress is None else progress) and info.main
        _fit(cfg, data, run, info, device, show, on_epoch_end, fingerprint)
    except BaseException:
        if info.main:
            run.discard_if_empty()
        raise
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
                                 seed=epoch_seed(cfg.seed, 0, 1) % 2**31, drop_last=True)  # fmt: skip
    return DataLoader(train_set, batch_size=per_rank, sampler=sampler, num_workers=cfg.num_workers, drop_last=True,
                      pin_memory=device.type == "cuda")  # fmt: skip


def training_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, batch: dict,
                  device: torch.device, shares: MapShares | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One step: forward, the method's loss, backward, optimiser step.

    The batch (a collated sample dict) moves to ``device`` and the floating dtype of the model's parameters.
    Returns the detached loss (scalar) and the L2 norm of the loss's gradient w.r.t. the head's weights
    (``final_layer.weight``; a diagnostic of how much signal reaches the output). ``shares``: counts the batch's
    maps without a positive pixel and those the suppliers' guard serves (detached, ``hdm.engine.diagnostics``).
    """
    dtype = next(model.parameters()).dtype
    images = batch["image"].to(device, dtype, non_blocking=True)
    joints = batch["joints"].to(device, dtype, non_blocking=True)
    visibility = batch["visibility"].to(device, dtype, non_blocking=True)
    heatmaps = model(images)
    if shares is not None:
        shares.add(heatmaps, joints, visibility)
    loss = loss_fn(heatmaps, joints, visibility)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the training loss is {loss.item()}: the run diverged; lower lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    head = distributed.unwrap(model).final_layer.weight.grad
    optimizer.step()
    return loss.detach(), head.detach().norm() if head is not None else torch.zeros((), device=device)


def train_epoch(net: nn.Module, loader: DataLoader, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                epoch: int, seed: int, info: distributed.DistInfo, device: torch.device, show: bool = False,
                warmup_steps: int = 0, diagnostics: dict | None = None,
                shares: MapShares | None = None) -> float:  # fmt: skip
    """Train one epoch (0-based ``epoch``) from ``train_loader``'s loader; returns the mean loss over the batches
    of every rank. Data order, augmentation and torch's RNG depend on (seed, epoch) only.

    ``warmup_steps``: scale the epoch's learning rate by (step + 1) / warmup_steps over the first steps of the
    run (step counted from epoch 0). ``diagnostics``: a dict that receives ``head_grad``, the mean norm of the
    head's weight gradient over this rank's steps, and with ``shares`` (a fresh ``MapShares``, given on every
    rank) ``train_no_positive_share`` and ``train_guard_share`` over every rank's counted maps of the epoch."""
    torch.manual_seed(epoch_seed(seed, epoch, 2 + info.rank))  # anything random in the model
    base_dataset(loader.dataset).set_epoch(epoch)  # augmentation draws of this epoch
    loader.sampler.set_epoch(epoch)  # data order of this epoch
    net.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    head_grad = torch.zeros((), dtype=torch.float64, device=device)
    scheduled = [group["lr"] for group in optimizer.param_groups]
    batches = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=not show)
    for step, batch in enumerate(batches, 1):
        run_step = epoch * len(loader) + step  # 1-based over the run
        if run_step <= warmup_steps:
            for group, lr in zip(optimizer.param_groups, scheduled):
                group["lr"] = lr * run_step / warmup_steps
        loss, grad = training_step(net, loss_fn, optimizer, batch, device, shares)
        total += loss
        head_grad += grad
        if show and step % 10 == 0:
            batches.set_postfix(loss=f"{total.item() / step:.4g}")
    for group, lr in zip(optimizer.param_groups, scheduled):
        group["lr"] = lr  # the scheduler owns the epoch's rate
    if diagnostics is not None:
        diagnostics["head_grad"] = head_grad.item() / len(loader)
    if shares is not None:
        totals = distributed.all_reduce_sum(shares.totals(), reduce_device(device))
        if diagnostics is not None:
            diagnostics.update(MapShares.shares(totals))
    mean = total.item() / len(loader)
    return distributed.all_reduce_sum([mean], reduce_device(device))[0] / info.world_size


def initial_model(cfg: Config, run: Run, num_joints: int) -> nn.Module:
    """The model at epoch 0: HRNet's initialisation from ``seed``; with ``init="pretrained"`` every weight but the
    head then comes from the part-segmentation pretraining (trained on first use, cached); with ``init_from``
    every weight comes from that run's final model."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = get_model(cfg.model, num_joints)
    if cfg.head_init_std != 0.001:  # HRNet's head init is normal(0, 0.001), bias 0 (hdm.models.hrnet)
        nn.init.normal_(model.final_layer.weight, std=cfg.head_init_std)
    if cfg.head_bias != 0.0:  # a repair: maps start at this level (> 0: every pixel positive)
        nn.init.constant_(model.final_layer.bias, cfg.head_bias)
    if cfg.init == "pretrained" and cfg.init_from is None:
        source = pretrain(pretrain_config(cfg), progress=False)
        missing, unexpected = model.load_state_dict(backbone_state(source), strict=False)
        if unexpected or any(not k.startswith("final_layer.") for k in missing):
            raise DamagedRunError(f"{source.dir}: its weights do not fit {cfg.model} (missing {missing}, "
                                  f"unexpected {unexpected}); delete it to rebuild")  # fmt: skip
        log.info("%s: backbone from %s", run.dir, source.dir)
    if cfg.init_from is not None:
        source = Run.of(cfg.init_config())
        model.load_state_dict(source.verify().state_dict())
        log.info("%s: initialised from %s", run.dir, source.dir)
    return model


def _fit(cfg: Config, data, run: Run, info, device: torch.device, show: bool, on_epoch_end,
         fingerprint: dict | None = None) -> None:  # fmt: skip
    loader = train_loader(data.train, cfg, info, device)  # checks the batch size before building the model
    model = initial_model(cfg, run, data.num_joints).to(device)
    state = run.load_checkpoint() if info.main else None
    resumed = distributed.broadcast_object(state is not None)
    if resumed and not info.main:
        state = run.load_checkpoint()
    if state is not None:
        if state.get("hash") != run.name:
            raise DamagedRunError(f"{run.dir / 'last.pt'} belongs to another run ({state.get('hash')}); delete it to "
                                  "restart this run from epoch 1")  # fmt: skip
        model.load_state_dict(state["model"])
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
        run.start_session(cfg.seed, device, info.world_size, start + 1, data=fingerprint)
        progress_line(f"train {run.name}: {'resuming after epoch ' + str(start) if start else 'start'} of {cfg.epochs}")
    began = time.perf_counter()

    loss_fn = method_loss(cfg.method, cfg)
    arrays = results = None
    epochs = tqdm(range(start, cfg.epochs), desc=run.name, unit="epoch", initial=start, total=cfg.epochs,
                  disable=not show)  # fmt: skip
    for epoch in epochs:
        tick = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        step_stats: dict = {}
        shares = MapShares(loss_supplier(cfg), getattr(cfg, "supply_guard", "guarded"))
        train_loss = train_epoch(net, loader, loss_fn, optimizer, epoch, cfg.seed, info, device, show,
                                 cfg.warmup_steps, step_stats, shares)  # fmt: skip
        scheduler.step()
        # evaluation mode needs no collective (BatchNorm uses its running statistics): the bare model
        metrics, arrays, results = validate(model, data, cfg, device, info, cfg.decoder, cfg.flip_test, show)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in dict(lr=lr, train_loss=train_loss, **metrics,
                                                                    **step_stats).items()}}  # fmt: skip
        row = row if info.main else {}
        if info.main:
            history.append(row)
            run.save_checkpoint({
                "epoch": epoch + 1, "hash": run.name, "model": distributed.unwrap(net).state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history,
                "rng": _rng_state(),
            })  # fmt: skip
            run.write_metrics(history)
            seconds = time.perf_counter() - tick
            log.info("%s  %s  (%.1f s)", run.name, _format_row(row), seconds)
            progress_line(f"  epoch {epoch + 1}/{cfg.epochs}  {_headline(row)}  ({seconds:.0f} s)")
            epochs.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("train_loss", "AP", "PCKh")})
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)

    if arrays is None:  # resumed after the last epoch but before the final files: recompute them
        _, arrays, results = validate(model, data, cfg, device, info, cfg.decoder, cfg.flip_test, show)
    if info.main:
        run.finish({"epoch": cfg.epochs, "hash": run.name, "model": distributed.unwrap(net).state_dict()},
                   arrays, results, history)  # fmt: skip
        progress_line(f"train {run.name}: done in {time.perf_counter() - began:.0f} s  {_headline(history[-1])}")
    distributed.barrier()
