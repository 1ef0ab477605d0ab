"""What a study optimises: classification or denoising.

A task owns its metric (name and direction), its training loss and its per-example
evaluation, so the search, the exported checkpoint and ``hpsearch evaluate`` all score a
model the same way. Import-light: torch is imported by the methods that train or score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Task:
    name: str  # as stored in checkpoints
    metric: str  # "accuracy" | "mse": searched as val_<metric>, reported on the test split as test_<metric>
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
        """The validation metric of a model that learned nothing: 1/classes for accuracy; for
        denoising, the MSE of predicting the mean training image (``train``, ``val``: images)."""
        if self.name == "denoise":
            return (val - train.mean(0)).pow(2).mean().item()
        return 1.0 / num_classes

    def forward(self, model: nn.Module, x: torch.Tensor, noise_sigma: float, generator: torch.Generator):
        """The model's output on the batch ``x``; for denoising, on ``x`` plus N(0, ``noise_sigma``)
        noise drawn from ``generator``."""
        return model(x + _noise(x, noise_sigma, generator)) if self.name == "denoise" else model(x)

    def per_example(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric of each example, from ``forward``'s output: 1.0 or 0.0 for a correct or
        wrong class (labels ``y``); for denoising, the MSE against the clean image ``x``."""
        if self.name == "denoise":
            return (out - x).pow(2).flatten(1).mean(1)
        return (out.argmax(1) == y).double()

    def batch_loss(
        self,
        model: nn.Module,
        loss: str,
        num_classes: int,
        noise_sigma: float,
        generator: torch.Generator,
        label_smoothing: float = 0.0,
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The training loss of a batch ``(x, y)``: ``loss`` (cross_entropy, with
        ``label_smoothing``; mse_softmax; multi_margin) of the logits, or the denoising MSE
        against the clean images."""
        import torch.nn.functional as F

        if self.name == "denoise":
            return lambda x, y: F.mse_loss(model(x + _noise(x, noise_sigma, generator)), x)
        criteria = {
            "cross_entropy": lambda out, y: F.cross_entropy(out, y, label_smoothing=label_smoothing),
            # MSE between the softmax output and the one-hot target.
            "mse_softmax": lambda out, y: F.mse_loss(out.softmax(1), F.one_hot(y, num_classes).to(out.dtype)),
            "multi_margin": F.multi_margin_loss,
        }
        if loss not in criteria:
            raise ValueError(f"unknown loss {loss!r}: use {', '.join(criteria)}")
        criterion = criteria[loss]
        return lambda x, y: criterion(model(x), y)


def _noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    import torch

    return sigma * torch.randn(x.shape, device=x.device, generator=generator)


CLASSIFY = Task("classify", "accuracy", maximize=True)
DENOISE = Task("denoise", "mse", maximize=False)
TASKS = {task.name: task for task in (CLASSIFY, DENOISE)}


def get(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}: use {' or '.join(TASKS)}") from None
