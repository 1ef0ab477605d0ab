"""What a study file in ``studies/`` declares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from hpsearch import tasks
from hpsearch.recipe import Recipe, Stage, check_settings


@dataclass(frozen=True)
class StudySpec:
    """One assignment as a search problem.

    ``task`` (``hpsearch.tasks.CLASSIFY`` or ``DENOISE``; a name is looked up once) owns the
    metric, its direction, the loss and the scoring. ``space(trial)`` suggests the parameters define-by-run (conditional
    parameters are fine) and returns them as a dict; ``model(params)`` names the registered
    model and its keyword arguments. The trial is trained by the ``Recipe`` of
    ``training_fixed`` (settings the search does not vary) and of the params named in
    ``training_params`` that the trial has; each name must be a training setting, or the
    spec raises ValueError. ``baseline`` is the hand-tuned configuration to beat,
    enqueued as trial 0 of every new study: it must hold exactly the parameters that
    ``space`` suggests when it is followed.

    Data: ``dataset`` names a registered dataset; ``val_fraction`` of its training split is
    held out for validation (ignored where the dataset has an official validation split);
    ``standardize=False`` keeps pixels in [0, 1] instead of standardising per channel.

    ``stages(params)``, when set, gives the ``Stage`` passes (a pre-training) that run before
    the training epochs; the params it reads are the study's, as ``model``'s are.

    ``reference_ablation``: the assignment's own one-knob-at-a-time figures, as (change,
    value) rows, shown in the HTML report beside ``hpsearch ablate``'s path under
    ``reference_label`` (how they were measured: split and runs).

    ``allow_bf16=False`` keeps ``--precision auto`` at fp32 for this study (say why in the
    study file: a measured loss of accuracy in bf16).

    ``trainer``, when set, replaces all of that: called with the run's settings, it returns
    the ``hpsearch.objective.Trainer`` that trains each trial (``dataset`` and ``model`` then
    go unused). A study with its own trainer runs without torch.
    """

    name: str
    description: str
    dataset: str
    model_family: str
    max_epochs: int
    space: Callable[[optuna.Trial], dict[str, Any]]
    model: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
    baseline: dict[str, Any]
    baseline_source: str
    task: tasks.Task = tasks.CLASSIFY
    training_params: tuple[str, ...] = ()
    training_fixed: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 1 / 6
    standardize: bool = True
    trainer: Callable[[Any], Any] | None = None
    reference_ablation: tuple[tuple[str, float], ...] = ()
    reference_label: str = "reference (1 run)"
    allow_bf16: bool = True
    stages: Callable[[dict[str, Any]], tuple[Stage, ...]] | None = None

    def __post_init__(self):
        try:
            if isinstance(self.task, str):
                object.__setattr__(self, "task", tasks.get(self.task))
            check_settings([*self.training_params, *self.training_fixed])
        except ValueError as exc:
            raise ValueError(f"study {self.name}: {exc}") from None

    @property
    def metric(self) -> str:
        """The searched metric, as stored with the study: val_accuracy or val_mse."""
        return self.task.val_metric

    @property
    def direction(self) -> str:
        return self.task.direction

    def recipe(self, params: dict[str, Any], *, epochs: int, seed: int, precision: str = "fp32") -> Recipe:
        chosen = {name: params[name] for name in self.training_params if name in params}
        stages = tuple(self.stages(params)) if self.stages else ()
        return Recipe(
            **self.training_fixed,
            **chosen,
            task=self.task,
            epochs=epochs,
            seed=seed,
            precision=precision,
            stages=stages,
        )
