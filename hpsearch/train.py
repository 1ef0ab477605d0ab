"""The training loop shared by every study. It knows nothing of Optuna.

Data is already on the device (``hpsearch.data``); a batch is a slice of an on-device
permutation, augmented on the device, so the loop launches kernels and never waits for
the device, except once per epoch, when the training loss and the validation metric come
back to the host together and are handed to ``on_epoch`` (where the runner reports to the
pruner).

Two tasks: ``classify`` (validation accuracy, higher is better) and ``denoise`` (the input
is the image plus Gaussian noise, the target the clean image; validation MSE, lower is
better).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.data import SearchData, Split
from hpsearch.spec import MAXIMIZED


@dataclass(frozen=True)
class Recipe:
    """How to train: everything but the architecture and the data."""

    epochs: int
    batch_size: int
    lr: float
    task: str = "classify"  # classify | denoise
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    momentum: float = 0.0  # sgd and rmsprop only
    betas: tuple[float, float] = (0.9, 0.999)  # adam and adamw only
    weight_decay: float = 0.0
    loss: str = "cross_entropy"  # classify: cross_entropy | mse_softmax | multi_margin
    lr_step_size: int = 0  # StepLR period in optimizer steps; 0 = constant learning rate
    lr_gamma: float = 1.0
    # Report 003's penalty: l2_lambda / (2 * batch) * sum of squared weights of the first
    # l2_layers Linear layers, added to the loss.
    l2_lambda: float = 0.0
    l2_layers: int = 0
    crop_padding: int = 0  # random crop after zero padding by this many pixels
    hflip: bool = False  # random horizontal flip
    noise_sigma: float = 0.1  # denoise: std of the Gaussian noise added to the input
    # Autoencoder pre-training (report 000): the model's ``reconstruct`` is trained on MSE
    # for this many epochs before the classification epochs.
    pretrain_epochs: int = 0
    pretrain_lr: float = 1e-3
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict, **overrides) -> Recipe:
        """Take every field this recipe has from ``params`` (a trial's parameters),
        ignoring the architecture's; ``overrides`` win."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in params.items() if k in names}, **overrides})


class Diverged(Exception):
    """The training loss or the model's outputs became NaN or infinite."""

    def __init__(self, epoch: int, loss: float | str):
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
    best_state: dict[str, torch.Tensor] | None = None  # the weights after the best epoch, on the device


def _classification_loss(name: str, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "mse_softmax":  # report 004: MSE between softmax output and the one-hot target
        return lambda out, y: F.mse_loss(out.softmax(1), F.one_hot(y, num_classes).to(out.dtype))
    if name == "multi_margin":
        return F.multi_margin_loss
    raise ValueError(f"unknown loss {name!r}")


def _optimizer(recipe: Recipe, params: Iterable[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    # One fused kernel (GPU) or one multi-tensor op per step (CPU) instead of one op per
    # parameter tensor: the step is launch-bound for models as small as LeNet-5.
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    common = {"lr": recipe.lr, "weight_decay": recipe.weight_decay}
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, betas=recipe.betas, **common, **fast)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, betas=recipe.betas, **common, **fast)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=recipe.momentum, **common, **fast)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, momentum=recipe.momentum, **common, foreach=True)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def augment(x: torch.Tensor, crop_padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-image random horizontal flip and random crop after zero padding, on the device."""
    n, c, h, w = x.shape
    device = x.device
    if hflip:
        flip = torch.rand(n, device=device, generator=generator) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if crop_padding:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2, n, 1), device=device, generator=generator)
        rows = (dy + torch.arange(h, device=device)).view(n, 1, h, 1)
        cols = (dx + torch.arange(w, device=device)).view(n, 1, 1, w)
        x = padded[
            torch.arange(n, device=device).view(n, 1, 1, 1), torch.arange(c, device=device).view(1, c, 1, 1), rows, cols
        ]
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _noise(shape, sigma: float, device, generator: torch.Generator) -> torch.Tensor:
    return sigma * torch.randn(shape, device=device, generator=generator)


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: Split, recipe: Recipe, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation metric summed over examples (correct predictions, or per-image MSE
    against the clean image) and the count of non-finite outputs, as device scalars (no
    host sync). The denoising noise is the same at every call, so epochs compare."""
    was_training = model.training
    model.eval()
    device = split.x.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    non_finite = torch.zeros((), dtype=torch.long, device=device)
    noise_generator = torch.Generator(device=device).manual_seed(0)
    for i in range(0, len(split), batch_size):
        x = split.x[i : i + batch_size]
        if recipe.task == "denoise":
            out = model(x + _noise(x.shape, recipe.noise_sigma, device, noise_generator))
            total += (out - x).pow(2).flatten(1).mean(1).sum()
        else:
            out = model(x)
            total += (out.argmax(1) == split.y[i : i + batch_size]).sum()
        non_finite += (~out.isfinite()).sum()
    model.train(was_training)
    return total, non_finite


def _l2_penalty(model: nn.Module, recipe: Recipe, batch_size: int) -> torch.Tensor | float:
    if not recipe.l2_lambda or not recipe.l2_layers:
        return 0.0
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)][: recipe.l2_layers]
    return recipe.l2_lambda / (2 * batch_size) * sum(m.weight.pow(2).sum() for m in linears)


def _train_epoch(model, train: Split, recipe: Recipe, batch_loss, optimizer, scheduler, generator) -> torch.Tensor:
    """One pass over a fresh permutation; returns the mean training loss as a device scalar."""
    n = len(train)
    batch_size = min(recipe.batch_size, n)
    steps = n // batch_size  # drop the ragged tail: BatchNorm cannot train on a batch of one
    order = torch.randperm(n, device=train.x.device, generator=generator)
    loss_sum = torch.zeros((), device=train.x.device)
    model.train()
    for step in range(steps):
        idx = order[step * batch_size : (step + 1) * batch_size]
        x = train.x[idx]
        if recipe.crop_padding or recipe.hflip:
            x = augment(x, recipe.crop_padding, recipe.hflip, generator)
        loss = batch_loss(x, train.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach()
    return loss_sum / steps


def _pretrain_autoencoder(model: nn.Module, data: SearchData, recipe: Recipe, generator: torch.Generator) -> None:
    """Stage 1 of report 000: train ``model.reconstruct`` (encoder + decoder) on MSE."""
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    optimizer = _optimizer(replace(recipe, lr=recipe.pretrain_lr), params, data.train.x.device)
    for epoch in range(1, recipe.pretrain_epochs + 1):
        loss = _train_epoch(
            model, data.train, recipe, lambda x, y: F.mse_loss(model.reconstruct(x), x), optimizer, None, generator
        )
        if not math.isfinite(loss.item()):  # one sync per pre-training epoch
            raise Diverged(epoch, "autoencoder pre-training")


def fit(
    model: nn.Module, data: SearchData, recipe: Recipe, on_epoch: Callable[[EpochResult], None] = lambda r: None
) -> FitResult:
    """Train ``model`` (already on the data's device) by ``recipe``; return the best epoch.

    The metric is validation accuracy for ``classify`` (maximised) and validation MSE for
    ``denoise`` (minimised). ``on_epoch`` is called after each epoch and may raise to stop
    training (the runner raises ``optuna.TrialPruned``). Raises ``Diverged`` at the end of
    the first epoch whose training loss or validation outputs are not finite.
    """
    device = data.train.x.device
    if data.train.x.dim() == 4:
        # NHWC lets oneDNN (CPU) and cuDNN (GPU) pick their faster convolution and pooling
        # kernels: measured 1.2-1.4x on the CPU for LeNet-5 (docs/benchmarks.md).
        model.to(memory_format=torch.channels_last)
    generator = torch.Generator(device=device).manual_seed(recipe.seed)
    if recipe.pretrain_epochs:
        _pretrain_autoencoder(model, data, recipe, generator)

    if recipe.task == "denoise":

        def batch_loss(x, y):
            return F.mse_loss(model(x + _noise(x.shape, recipe.noise_sigma, device, generator)), x)
    else:
        loss_fn = _classification_loss(recipe.loss, len(data.classes))

        def batch_loss(x, y):
            return loss_fn(model(x), y) + _l2_penalty(model, recipe, len(y))

    optimizer = _optimizer(recipe, model.parameters(), device)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, recipe.lr_step_size, recipe.lr_gamma)
        if recipe.lr_step_size
        else None
    )
    maximize = MAXIMIZED[recipe.task]
    result = FitResult(best_value=-math.inf if maximize else math.inf, best_epoch=0)
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        mean_loss = _train_epoch(model, data.train, recipe, batch_loss, optimizer, scheduler, generator)
        total, non_finite = evaluate(model, data.val, recipe)
        # The one host sync of the epoch.
        mean_loss, total, non_finite = torch.stack([mean_loss.double(), total, non_finite.double()]).tolist()
        # Some losses stay finite on NaN outputs (multi-margin's max(0, NaN) is 0): check both.
        if not math.isfinite(mean_loss) or non_finite:
            raise Diverged(
                epoch, mean_loss if not math.isfinite(mean_loss) else f"{int(non_finite)} non-finite outputs"
            )
        epoch_result = EpochResult(epoch, mean_loss, total / len(data.val), time.perf_counter() - started)
        result.history.append(epoch_result)
        if (epoch_result.value > result.best_value) if maximize else (epoch_result.value < result.best_value):
            result.best_value, result.best_epoch = epoch_result.value, epoch
            # A device-side copy: no host sync, and the trial keeps its best epoch, not its last.
            result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        on_epoch(epoch_result)
    return result
