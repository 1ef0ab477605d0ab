"""What a study file in ``studies/`` declares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from hpsearch.train import Recipe

# Whether a task's metric is maximised: validation accuracy is, validation MSE is not.
MAXIMIZED = {"classify": True, "denoise": False}


@dataclass(frozen=True)
class StudySpec:
    """One assignment as a search problem.

    ``space(trial)`` suggests the parameters define-by-run (conditional parameters are
    fine) and returns them as a dict; ``model(params)`` names the registered model and
    its keyword arguments. The trial is trained by a ``Recipe`` made of ``recipe_defaults``
    (fixed training settings: the task, the noise level, ...) overlaid by every ``Recipe``
    field found in the params. ``baseline`` is the report's own best configuration,
    enqueued as trial 0 of every new study: it must hold exactly the parameters that
    ``space`` suggests when it is followed.

    Data: ``dataset`` names a registered dataset; ``val_fraction`` of its training split is
    held out for validation (ignored where the dataset has an official validation split);
    ``standardize=False`` keeps pixels in [0, 1] instead of standardising per channel.

    ``trainer``, when set, replaces all of that: called with the run's settings, it returns
    the ``hpsearch.objective.Trainer`` that trains each trial (``dataset`` and ``model`` then
    go unused). A study with its own trainer runs without torch.
    """

    name: str
    description: str
    dataset: str
    model_family: str
    metric: str
    direction: str  # "maximize" | "minimize"
    max_epochs: int
    space: Callable[[optuna.Trial], dict[str, Any]]
    model: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
    baseline: dict[str, Any]
    baseline_source: str
    recipe_defaults: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 1 / 6
    standardize: bool = True
    trainer: Callable[[Any], Any] | None = None

    def __post_init__(self):
        task = self.recipe_defaults.get("task", "classify")
        if self.direction != ("maximize" if MAXIMIZED[task] else "minimize"):
            raise ValueError(f"study {self.name}: task {task!r} cannot be optimised in direction {self.direction!r}")

    def recipe(self, params: dict[str, Any], *, epochs: int, seed: int) -> Recipe:
        from hpsearch.train import Recipe

        return Recipe.from_params({**self.recipe_defaults, **params}, epochs=epochs, seed=seed)
