"""The training loop shared by every study. It knows nothing of Optuna.

Data is already on the device (``hpsearch.data``); a batch is a slice of an on-device
permutation, so the loop launches kernels and never waits for the device, except once per
epoch, when the training loss and the validation metric come back to the host together
and are handed to ``on_epoch`` (where the runner reports to the pruner).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from hpsearch.data import SearchData, Split


@dataclass(frozen=True)
class Recipe:
    """How to train: everything but the architecture and the data."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    momentum: float = 0.0  # sgd and rmsprop only
    betas: tuple[float, float] = (0.9, 0.999)  # adam and adamw only
    weight_decay: float = 0.0
    loss: str = "cross_entropy"  # cross_entropy | mse_softmax | multi_margin
    lr_step_size: int = 0  # StepLR period in optimizer steps; 0 = constant learning rate
    lr_gamma: float = 1.0
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict, **overrides) -> "Recipe":
        """Take every field this recipe has from ``params`` (a trial's parameters),
        ignoring the architecture's; ``overrides`` win."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names}, **overrides)


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"non-finite training loss or outputs ({loss}) in epoch {epoch}")
        self.epoch, self.loss = epoch, loss


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    value: float  # the validation metric
    seconds: float


@dataclass
class FitResult:
    best_value: float
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)


def _loss_fn(name: str, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "mse_softmax":  # report 004: MSE between softmax output and the one-hot target
        return lambda out, y: F.mse_loss(out.softmax(1), F.one_hot(y, num_classes).to(out.dtype))
    if name == "multi_margin":
        return F.multi_margin_loss
    raise ValueError(f"unknown loss {name!r}")


def _optimizer(recipe: Recipe, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    params = model.parameters()
    # One fused kernel (GPU) or one multi-tensor op per step (CPU) instead of one op per
    # parameter tensor: the step is launch-bound for models as small as LeNet-5.
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay, **fast)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay, **fast)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, **fast)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


@torch.inference_mode()
def correct_count(model: nn.Module, split: Split, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Correctly classified examples and non-finite outputs, as device scalars (no host sync)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=split.x.device)
    non_finite = torch.zeros((), dtype=torch.long, device=split.x.device)
    for i in range(0, len(split), batch_size):
        out = model(split.x[i : i + batch_size])
        correct += (out.argmax(1) == split.y[i : i + batch_size]).sum()
        non_finite += (~out.isfinite()).sum()
    model.train(was_training)
    return correct, non_finite


def fit(
    model: nn.Module,
    data: SearchData,
    recipe: Recipe,
    on_epoch: Callable[[EpochResult], None] = lambda r: None,
) -> FitResult:
    """Train ``model`` (already on the data's device) by ``recipe``; return the best epoch.

    The metric is validation accuracy (higher is better). ``on_epoch`` is called after each
    epoch and may raise to stop training (the runner raises ``optuna.TrialPruned``).
    Raises ``Diverged`` at the end of the first epoch whose training loss is not finite.
    """
    train, device = data.train, data.train.x.device
    if train.x.dim() == 4:
        # NHWC lets oneDNN (CPU) and cuDNN (GPU) pick their faster convolution and pooling
        # kernels: measured 1.2-1.4x on the CPU for LeNet-5 (docs/benchmarks.md).
        model.to(memory_format=torch.channels_last)
    n = len(train)
    batch_size = min(recipe.batch_size, n)
    steps = n // batch_size  # drop the ragged tail: BatchNorm cannot train on a batch of one
    loss_fn = _loss_fn(recipe.loss, len(data.classes))
    optimizer = _optimizer(recipe, model, device)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, recipe.lr_step_size, recipe.lr_gamma)
        if recipe.lr_step_size
        else None
    )
    generator = torch.Generator(device=device).manual_seed(recipe.seed)
    result = FitResult(best_value=-math.inf, best_epoch=0)

    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            loss = loss_fn(model(train.x[idx]), train.y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach()
        correct, non_finite = correct_count(model, data.val)
        # The one host sync of the epoch.
        mean_loss, correct, non_finite = torch.stack([loss_sum / steps, correct.float(), non_finite.float()]).tolist()
        # Some losses stay finite on NaN outputs (multi-margin's max(0, NaN) is 0): check both.
        if not math.isfinite(mean_loss) or non_finite:
            raise Diverged(epoch, mean_loss if not math.isfinite(mean_loss) else f"finite, but {int(non_finite)} non-finite outputs")
        epoch_result = EpochResult(epoch, mean_loss, correct / len(data.val), time.perf_counter() - started)
        result.history.append(epoch_result)
        if epoch_result.value > result.best_value:
            result.best_value, result.best_epoch = epoch_result.value, epoch
        on_epoch(epoch_result)
    return result
