"""The neutral pretraining: a backbone taught body-part segmentation, our stand-in for ImageNet weights.

    python -m hdm pretrain                       # hrnet_tiny at 128x96: the backbone of init="pretrained"
    from hdm.engine.pretraining import pretrain, backbone_state
    run = pretrain(PretrainConfig())             # cached like any run (runs/parts-pretrain-<hash>/)

The model is the pose network itself with ``NUM_CLASSES`` output channels (``hdm.data.parts``) trained with
pixel-wise cross-entropy at heatmap resolution. A pose run with ``init="pretrained"`` takes every weight but the
head (``final_layer``), which keeps HRNet's fresh initialisation, as the paper's runs do with ImageNet weights.
After each epoch: pixel accuracy and mean IoU over the parts on held-out images (metrics.csv).
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hdm.config import PretrainConfig
from hdm.data.parts import NUM_CLASSES, PartCrops, parts_split
from hdm.engine.evaluation import resolve_device
from hdm.engine.common import epoch_seed, progress_line
from hdm.models import get_model
from hdm.runs import DamagedRunError, Run, RunLock

log = logging.getLogger(__name__)

HEAD = "final_layer."


def _datasets(cfg: PretrainConfig) -> tuple[PartCrops, PartCrops]:
    import json

    folder = parts_split(cfg.num_images, cfg.data_seed)
    people = json.loads((folder / "people.json").read_text())["people"]
    held_out = {f"{i + 1:012d}" for i in range(cfg.num_images - cfg.val_images, cfg.num_images)}
    train_ids = [i for i, p in enumerate(people) if p["image"] not in held_out]
    val_ids = [i for i, p in enumerate(people) if p["image"] in held_out]
    return (PartCrops(folder, cfg.input_hw, cfg.heatmap_hw, train_ids, train=True, seed=cfg.seed),
            PartCrops(folder, cfg.input_hw, cfg.heatmap_hw, val_ids, train=False))  # fmt: skip


@torch.no_grad()
def segmentation_scores(model, loader, device) -> dict[str, float]:
    """Pixel accuracy and mean IoU over the classes present (background included)."""
    model.eval()
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    for batch in loader:
        predicted = model(batch["image"].to(device)).argmax(1).cpu()
        confusion += torch.bincount(batch["parts"].flatten() * NUM_CLASSES + predicted.flatten(),
                                    minlength=NUM_CLASSES**2).view(NUM_CLASSES, NUM_CLASSES)  # fmt: skip
    true_positive = confusion.diag().double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    present = union > 0
    return {"pixel_accuracy": float(true_positive.sum() / confusion.sum()),
            "mean_iou": float((true_positive[present] / union[present]).mean())}  # fmt: skip


def pretrain(cfg: PretrainConfig, progress: bool | None = None) -> Run:
    """Train (or resume, or fetch from the cache) the pretraining run of ``cfg``; returns its ``Run``."""
    run = Run.of(cfg)
    if run.done:
        return run.verify()
    device = resolve_device(cfg.device)
    train_set, val_set = _datasets(cfg)  # before the folder exists: a failure leaves none
    show = sys.stderr.isatty() if progress is None else progress
    with RunLock(run.dir):
        if run.done:  # finished by another process while this one built the data
            return run.verify()
        try:
            _fit(cfg, run, train_set, val_set, device, show)
        except BaseException:
            run.discard_if_empty()
            raise
    return run


def _fit(cfg: PretrainConfig, run: Run, train_set, val_set, device, show: bool) -> None:
    run.write_config(cfg)
    torch.manual_seed(cfg.seed)
    model = get_model(cfg.model, NUM_CLASSES).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.lr_steps), cfg.lr_factor)
    state, history, start = run.load_checkpoint(), [], 0
    if state is not None:
        if state.get("hash") != run.name:
            raise DamagedRunError(f"{run.dir / 'last.pt'} belongs to another run; delete it to restart this one")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start = list(state["history"]), int(state["epoch"])
    run.start_session(cfg.seed, device, 1, start + 1)
    progress_line(f"pretrain {run.name}: {'resuming after epoch ' + str(start) if start else 'start'} of {cfg.epochs}")
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    loss_fn = torch.nn.CrossEntropyLoss()
    began = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        tick = time.perf_counter()
        train_set.set_epoch(epoch)
        order = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 1) % 2**63)
        loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=order, drop_last=True,
                            num_workers=cfg.num_workers)  # fmt: skip
        torch.manual_seed(epoch_seed(cfg.seed, epoch, 2))
        model.train()
        total = 0.0
        lr = optimizer.param_groups[0]["lr"]
        for batch in tqdm(loader, desc=f"pretrain epoch {epoch + 1}", leave=False, disable=not show):
            loss = loss_fn(model(batch["image"].to(device)), batch["parts"].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        scheduler.step()
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": total / len(loader),
               **segmentation_scores(model, val_loader, device)}  # fmt: skip
        history.append(row)
        run.save_checkpoint({"epoch": epoch + 1, "hash": run.name, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "history": history})  # fmt: skip
        run.write_metrics(history)
        progress_line(f"  pretrain epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4g}  "
                      f"pixel acc {row['pixel_accuracy']:.3f}  mIoU {row['mean_iou']:.3f}  ({time.perf_counter() - tick:.0f} s)")
    run.finish({"epoch": cfg.epochs, "hash": run.name, "model": model.state_dict()},
               {"epoch": np.array([r["epoch"] for r in history])}, None, history)  # fmt: skip
    progress_line(f"pretrain {run.name}: done in {time.perf_counter() - began:.0f} s")


def backbone_state(run: Run) -> dict[str, torch.Tensor]:
    """The pretrained weights without the head (``final_layer``): what a pose model starts from."""
    return {k: v for k, v in run.verify().state_dict().items() if not k.startswith(HEAD)}
