"""What a study file in ``studies/`` declares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import optuna

from hpsearch.train import Recipe


@dataclass(frozen=True)
class StudySpec:
    """One assignment as a search problem.

    ``space(trial)`` suggests the parameters define-by-run (conditional parameters are
    fine) and returns them as a dict; ``model(params)`` names the registered model and
    its keyword arguments; ``recipe(params, epochs, seed)`` says how to train it (by
    default every ``Recipe`` field found in ``params``). ``baseline`` is the report's own
    best configuration, enqueued as trial 0 of every new study: it must hold exactly the
    parameters that ``space`` suggests when it is followed.
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
    recipe: Callable[..., Recipe] = field(
        default=lambda params, epochs, seed: Recipe.from_params(params, epochs=epochs, seed=seed)
    )
