"""How a trial trains: everything but the architecture and the data. Torch-free, so a
study file can be checked without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, fields

from hpsearch.tasks import CLASSIFY, Task


@dataclass(frozen=True)
class Stage:
    """A pass over the training data before the training proper (a pre-training): ``epochs``
    epochs of the model's own loss method, ``model.<loss>(x, y) -> scalar``, optimised at
    ``lr`` over ``model.<parameters>()`` only, with the recipe's optimizer and batch size.
    The method names belong to the model; the loop knows no more of them than this."""

    name: str
    epochs: int
    lr: float
    loss: str
    parameters: str = "parameters"


@dataclass(frozen=True)
class Recipe:
    """How to train: everything but the architecture and the data."""

    epochs: int
    batch_size: int
    lr: float
    task: Task = CLASSIFY  # the study's (``hpsearch.tasks``)
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    momentum: float = 0.0  # sgd and rmsprop only
    betas: tuple[float, float] = (0.9, 0.999)  # adam and adamw only
    weight_decay: float = 0.0
    loss: str = "cross_entropy"  # classify: cross_entropy | mse_softmax | multi_margin
    lr_step_size: int = 0  # StepLR period in optimizer steps; 0 = constant learning rate
    lr_gamma: float = 1.0
    # "step": StepLR by lr_step_size/lr_gamma (constant when lr_step_size is 0); "constant"; "cosine":
    # cosine annealing from lr to 0 over all the epochs; "onecycle": warm-up to lr, then
    # annealing (OneCycleLR; the optimizer's own momentum is left alone). Stepped every batch.
    lr_schedule: str = "step"
    label_smoothing: float = 0.0  # cross_entropy only
    crop_padding: int = 0  # random crop after zero padding by this many pixels
    hflip: bool = False  # random horizontal flip
    noise_sigma: float = 0.1  # denoise: std of the Gaussian noise added to the input
    stages: tuple[Stage, ...] = ()  # run in order before the training epochs (``StudySpec.stages``)
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16: the forward passes' arithmetic (``hpsearch.precision``)


# Set by the run, not by a study: the task is the study's, epochs and seed the trial's, the
# precision the run's.
RUN_FIELDS = ("task", "epochs", "seed", "precision", "stages")


def check_settings(names) -> None:
    """Raise ValueError naming every one of ``names`` that is no training setting a study
    may choose (a ``Recipe`` field other than ``RUN_FIELDS``)."""
    settings = {f.name for f in fields(Recipe)} - set(RUN_FIELDS)
    wrong = sorted(set(names) - settings)
    if wrong:
        raise ValueError(f"not a training setting: {', '.join(wrong)}; the settings are {', '.join(sorted(settings))}")
