"""What a study optimises: classification or denoising.

A task owns its metric (name and direction), its training loss, its per-example
evaluation and what a model that learned nothing scores, so the search, the exported
checkpoint and ``hpsearch evaluate`` all score a model the same way. A study holds its task
object (``StudySpec.task``); a checkpoint stores the task's name (``get``). Import-light:
torch is imported by the methods that train or score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

BatchLoss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class Task:
    name: str  # as stored in checkpoints
    metric: str  # searched as val_<metric>, reported on the test split as test_<metric>
    maximize: bool

    @property
    def val_metric(self) -> str:
        return f"val_{self.metric}"

    @property
    def test_metric(self) -> str:
        return f"test_{self.metric}"

    @property
    def direction(self) -> str:
        """Optuna's name of the direction: "maximize" or "minimize"."""
        return "maximize" if self.maximize else "minimize"

    def better(self, value: float, than: float) -> bool:
        return value > than if self.maximize else value < than

    def worst(self) -> float:
        return -float("inf") if self.maximize else float("inf")

    def chance(self, train: torch.Tensor, val: torch.Tensor, num_classes: int) -> float:
        """The validation metric of a model that learned nothing (``train``, ``val``: images)."""
        raise NotImplementedError

    def forward(self, model: nn.Module, x: torch.Tensor, noise_sigma: float, generator: torch.Generator):
        """The model's output on the batch ``x`` as it is scored."""
        raise NotImplementedError

    def per_example(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric of each example, from ``forward``'s output, the images ``x`` and labels ``y``."""
        raise NotImplementedError

    def batch_loss(
        self, model: nn.Module, loss: str, num_classes: int, noise_sigma: float, generator, label_smoothing: float = 0.0
    ) -> BatchLoss:
        """The training loss of a batch ``(x, y)``."""
        raise NotImplementedError


class Classify(Task):
    """Accuracy, maximised; chance is 1/classes. Losses: cross_entropy (with label
    smoothing), mse_softmax (MSE of the softmax against the one-hot target), multi_margin."""

    def __init__(self):
        super().__init__("classify", "accuracy", maximize=True)

    def chance(self, train, val, num_classes):
        return 1.0 / num_classes

    def forward(self, model, x, noise_sigma, generator):
        return model(x)

    def per_example(self, out, x, y):
        return (out.argmax(1) == y).double()

    def batch_loss(self, model, loss, num_classes, noise_sigma, generator, label_smoothing=0.0):
        import torch.nn.functional as F

        criteria = {
            "cross_entropy": lambda out, y: F.cross_entropy(out, y, label_smoothing=label_smoothing),
            "mse_softmax": lambda out, y: F.mse_loss(out.softmax(1), F.one_hot(y, num_classes).to(out.dtype)),
            "multi_margin": F.multi_margin_loss,
        }
        if loss not in criteria:
            raise ValueError(f"unknown loss {loss!r}: use {', '.join(criteria)}")
        criterion = criteria[loss]
        return lambda x, y: criterion(model(x), y)


class Denoise(Task):
    """MSE against the clean image of the model's output on the image plus N(0, noise_sigma)
    noise, minimised; chance is the MSE of predicting the mean training image."""

    def __init__(self):
        super().__init__("denoise", "mse", maximize=False)

    def chance(self, train, val, num_classes):
        return (val - train.mean(0)).pow(2).mean().item()

    def forward(self, model, x, noise_sigma, generator):
        import torch

        return model(x + noise_sigma * torch.randn(x.shape, device=x.device, generator=generator))

    def per_example(self, out, x, y):
        return (out - x).pow(2).flatten(1).mean(1)

    def batch_loss(self, model, loss, num_classes, noise_sigma, generator, label_smoothing=0.0):
        import torch.nn.functional as F

        return lambda x, y: F.mse_loss(self.forward(model, x, noise_sigma, generator), x)


CLASSIFY = Classify()
DENOISE = Denoise()
TASKS = {task.name: task for task in (CLASSIFY, DENOISE)}


def get(name: str) -> Task:
    """The task a checkpoint names."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}: use {' or '.join(TASKS)}") from None
