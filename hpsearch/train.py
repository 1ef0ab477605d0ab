"""The training loop shared by every study. It knows nothing of Optuna.

Data is already on the device (``hpsearch.data``); a batch is a slice of an on-device
permutation, augmented on the device, so the loop launches kernels and never waits for
the device, except once per epoch, when the training loss and the validation metric come
back to the host together and are handed to ``on_epoch`` (where the runner reports to the
pruner). ``on_batch`` hears of each batch from a host-side counter, so progress within a long
epoch costs no sync either.

The recipe's task (``hpsearch.tasks``: classify or denoise) gives the batch loss, the
validation metric and its direction.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch import models, precision
from hpsearch.data import SearchData, Split
from hpsearch.recipe import Recipe, Stage
from hpsearch.tasks import Task

# on_batch(what, done, total): ``done`` of the ``total`` batches of the pass ``what`` are launched.
OnBatch = Callable[[str, int, int], None]
# on_check(images, value): the validation metric after ``images`` training images, within an epoch.
OnCheck = Callable[[int, float], None]


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
    images: int  # training images seen by the end of the epoch, counted as epoch x training split


@dataclass
class FitResult:
    best_value: float
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None  # the weights after the best epoch, on the device


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


def _scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    schedulers = torch.optim.lr_scheduler
    total = recipe.epochs * steps_per_epoch
    if recipe.lr_schedule == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=total)
    if recipe.lr_schedule == "onecycle":
        return schedulers.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total, cycle_momentum=False)
    if recipe.lr_schedule == "constant":
        return None
    if recipe.lr_schedule != "step":
        raise ValueError(f"unknown lr_schedule {recipe.lr_schedule!r}: use step, constant, cosine or onecycle")
    return schedulers.StepLR(optimizer, recipe.lr_step_size, recipe.lr_gamma) if recipe.lr_step_size else None


def augment(x: torch.Tensor, crop_padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-image random horizontal flip and random crop after zero padding, on the device;
    the result keeps the memory format of ``x``."""
    n, c, h, w = x.shape
    memory_format = torch.contiguous_format if x.is_contiguous() else torch.channels_last
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
        x = x.contiguous(memory_format=memory_format)
    return x


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: Split, task: Task, noise_sigma: float = 0.1, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's metric of each example of ``split`` (``Task.per_example``, float64) and the
    count of non-finite outputs, on the device, with no host sync: the one scorer of a
    trial's epochs, of ``export --score`` and of ``hpsearch evaluate``. The denoising noise is
    the same at every call, so epochs compare. Always in fp32, whatever the trial trained in:
    bf16 rounding of a reconstruction would shift an MSE of a few thousandths."""
    was_training = model.training
    # A torch.export program stays in the eval mode it was traced in and refuses both calls.
    with contextlib.suppress(NotImplementedError):
        model.eval()
    device = split.x.device
    values, non_finite = [], torch.zeros((), dtype=torch.long, device=device)
    noise_generator = torch.Generator(device=device).manual_seed(0)
    for i in range(0, len(split), batch_size):
        x, y = split.x[i : i + batch_size], split.y[i : i + batch_size]
        out = task.forward(model, x, noise_sigma, noise_generator)
        values.append(task.per_example(out, x, y).double())
        non_finite += (~out.isfinite()).sum()
    with contextlib.suppress(NotImplementedError):
        model.train(was_training)
    return torch.cat(values), non_finite


def build_model(
    name: str, kwargs: dict, *, seed: int | None = None, state_dict: dict | None = None, device="cpu"
) -> nn.Module:
    """The registered model ``name(**kwargs)`` on ``device``: initialised under ``seed`` (a
    trial's) or holding ``state_dict`` (stored weights). The one way a trial's model is made,
    by the trainer, ``export`` and a checkpoint alike."""
    if seed is not None:
        torch.manual_seed(seed)
    model = models.create(name, **kwargs)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.to(device)


def _train_epoch(
    model,
    train: Split,
    recipe: Recipe,
    batch_loss,
    optimizer,
    scheduler,
    generator,
    on_batch: OnBatch,
    what: str,
    seen: int = 0,
    checks: list[int] | None = None,
    check: Callable[[int], None] = lambda images: None,
) -> torch.Tensor:
    """One pass over a fresh permutation; returns the mean training loss as a device scalar.
    ``seen`` images came before it; each point of ``checks`` (images seen, ascending) that a
    batch before the pass's last one reaches is taken off the list and handed to ``check``."""
    n = len(train)
    batch_size = min(recipe.batch_size, n)
    steps = n // batch_size  # drop the ragged tail: BatchNorm cannot train on a batch of one
    order = torch.randperm(n, device=train.x.device, generator=generator)
    loss_sum = torch.zeros((), device=train.x.device)
    model.train()
    on_batch(what, 0, steps)
    for step in range(steps):
        idx = order[step * batch_size : (step + 1) * batch_size]
        x = train.x[idx]
        if recipe.crop_padding or recipe.hflip:
            x = augment(x, recipe.crop_padding, recipe.hflip, generator)
        with precision.autocast(recipe.precision, x.device):
            loss = batch_loss(x, train.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach()
        # Counts batches launched, not finished: on a GPU the host runs ahead by at most the
        # launch queue, and waiting for the device here would cost the sync this loop avoids.
        on_batch(what, step + 1, steps)
        seen += batch_size
        if checks and seen >= checks[0] and step + 1 < steps:  # the epoch's end reports anyway
            point = checks.pop(0)
            while checks and seen >= checks[0]:
                point = checks.pop(0)
            check(point)
    return loss_sum / steps


def _run_stage(
    model: nn.Module, stage: Stage, data: SearchData, recipe: Recipe, generator: torch.Generator, on_batch: OnBatch
) -> None:
    """``stage.epochs`` epochs of ``model.<stage.loss>`` over ``model.<stage.parameters>()``."""
    optimizer = _optimizer(replace(recipe, lr=stage.lr), getattr(model, stage.parameters)(), data.train.x.device)
    for epoch in range(1, stage.epochs + 1):
        loss = _train_epoch(
            model,
            data.train,
            recipe,
            getattr(model, stage.loss),
            optimizer,
            None,
            generator,
            on_batch,
            f"{stage.name} epoch {epoch}/{stage.epochs}",
        )
        if not math.isfinite(loss.item()):  # one sync per stage epoch
            raise Diverged(epoch, stage.name)


# A rung inside an epoch is scored on at most this many validation images: on the 2-core CPU
# the whole 10,000-image Fashion-MNIST split took 5 s with one thread, about as long as the
# quarter epoch that the first rung trains (docs/search.md).
RUNG_VAL_IMAGES = 2500


def rung_split(val: Split) -> Split:
    """The fixed part of the validation split that the rungs inside an epoch score: every k-th
    image, so that a split stored class by class keeps every class."""
    stride = -(-len(val) // RUNG_VAL_IMAGES)
    return val if stride == 1 else Split(val.x[::stride].clone(), val.y[::stride].clone())


def _has_strided_pointwise_conv(model: nn.Module) -> bool:
    """Whether ``model`` has a 1x1 convolution with a stride (a ResNet's downsampling
    shortcut). On the CPU its channels-last backward crashes the process (SIGSEGV/SIGABRT in
    oneDNN, torch 2.14.1, 2-core AMD EPYC) for an odd batch and few input channels (8 to
    12 seen, 16 and 24+ not): such a model trains in NCHW there, slower but alive."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) for m in model.modules())


def fit(
    model: nn.Module,
    data: SearchData,
    recipe: Recipe,
    on_epoch: Callable[[EpochResult], None] = lambda r: None,
    on_batch: OnBatch = lambda what, done, total: None,
    checks: Iterable[int] = (),
    on_check: OnCheck = lambda images, value: None,
) -> FitResult:
    """Train ``model`` (already on the data's device) by ``recipe``; return the best epoch.

    The metric is the recipe's task's (``hpsearch.tasks``): validation accuracy, maximised,
    or validation MSE, minimised. ``on_epoch`` is called after each epoch and may raise to stop
    training (the runner raises ``optuna.TrialPruned``). ``on_batch(what, done, total)`` is
    called as each pass starts (``done`` 0) and after each of its batches, ``what`` naming the
    pass (``"epoch 2/20"``); it runs once per batch, so it must be cheap. Raises ``Diverged``
    at the end of the first epoch whose training loss or validation outputs are not finite.

    ``checks`` are points within the epochs, in training images seen (the first epoch ends at
    the size of the training split), where the validation metric is taken too and handed to
    ``on_check(point, value)``, which may raise like ``on_epoch``: the pruner's rungs that lie
    inside an epoch. Each costs a pass over ``rung_split`` of the validation split (at most
    ``RUNG_VAL_IMAGES``) and a host sync; a point is taken after the
    first batch that reaches it (at most one batch late) and reported at the point itself, so
    that trials of any batch size compare at the same steps. A point at an epoch's end is that
    epoch's report.

    What a model may bring: ``model.penalty(batch_size) -> scalar`` is added to every
    training batch's loss (not to the validation metric); the recipe's ``stages`` name the
    model's own loss and parameter methods for the passes that run before the training epochs.
    """
    device = data.train.x.device
    if data.train.x.dim() == 4 and device.type == "cpu" and _has_strided_pointwise_conv(model):
        # Inputs too: a channels-last input makes the convolution channels-last again.
        data = replace(
            data, train=Split(data.train.x.contiguous(), data.train.y), val=Split(data.val.x.contiguous(), data.val.y)
        )
    elif data.train.x.dim() == 4:
        # NHWC lets oneDNN (CPU) and cuDNN (GPU) pick their faster convolution and pooling
        # kernels: measured 1.2-1.7x on the CPU for LeNet-5 (docs/benchmarks.md).
        model.to(memory_format=torch.channels_last)
    generator = torch.Generator(device=device).manual_seed(recipe.seed)
    for stage in recipe.stages:
        _run_stage(model, stage, data, recipe, generator, on_batch)

    task = recipe.task
    task_loss = task.batch_loss(
        model, recipe.loss, len(data.classes), recipe.noise_sigma, generator, recipe.label_smoothing
    )

    penalty = getattr(model, "penalty", None)
    batch_loss = task_loss
    if penalty is not None:

        def batch_loss(x, y):
            return task_loss(x, y) + penalty(len(y))

    optimizer = _optimizer(recipe, model.parameters(), device)
    scheduler = _scheduler(recipe, optimizer, len(data.train) // min(recipe.batch_size, len(data.train)))
    result = FitResult(best_value=task.worst(), best_epoch=0)
    pending = sorted(checks)
    rung_val = rung_split(data.val)

    def check(point: int) -> None:
        values, non_finite = evaluate(model, rung_val, task, recipe.noise_sigma)
        total, non_finite = torch.stack([values.sum(), non_finite.double()]).tolist()  # a sync, at a rung only
        if non_finite:
            raise Diverged(epoch, f"{int(non_finite)} non-finite outputs")
        on_check(point, total / len(rung_val))

    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        mean_loss = _train_epoch(
            model,
            data.train,
            recipe,
            batch_loss,
            optimizer,
            scheduler,
            generator,
            on_batch,
            f"epoch {epoch}/{recipe.epochs}",
            (epoch - 1) * len(data.train),
            pending,
            check,
        )
        while pending and pending[0] <= epoch * len(data.train):
            pending.pop(0)
        values, non_finite = evaluate(model, data.val, task, recipe.noise_sigma)
        total = values.sum()
        # The one host sync of the epoch.
        mean_loss, total, non_finite = torch.stack([mean_loss.double(), total, non_finite.double()]).tolist()
        # Some losses stay finite on NaN outputs (multi-margin's max(0, NaN) is 0): check both.
        if not math.isfinite(mean_loss) or non_finite:
            raise Diverged(
                epoch, mean_loss if not math.isfinite(mean_loss) else f"{int(non_finite)} non-finite outputs"
            )
        seconds = time.perf_counter() - started
        epoch_result = EpochResult(epoch, mean_loss, total / len(data.val), seconds, epoch * len(data.train))
        result.history.append(epoch_result)
        if task.better(epoch_result.value, result.best_value):
            result.best_value, result.best_epoch = epoch_result.value, epoch
            # A device-side copy: no host sync, and the trial keeps its best epoch, not its last.
            result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        on_epoch(epoch_result)
    return result
