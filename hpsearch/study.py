"""Opening a stored study, and reading its trials the way every command needs them."""

from __future__ import annotations

import warnings
from collections import Counter

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import UsageError
from hpsearch.spec import StudySpec
from hpsearch.storage import HEARTBEAT_SECONDS, mask, open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_study(
    spec: StudySpec,
    storage_url: str,
    study_name: str,
    *,
    create: bool = False,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    heartbeat: int = HEARTBEAT_SECONDS,
    run_as: str | None = None,
) -> optuna.Study:
    """Load the study (or create it when ``create``), refusing one made for another metric.
    ``run_as`` is how the user named the study (a study file's path), for the hint to start it."""
    storage = open_storage(storage_url, heartbeat)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        if not create:
            raise UsageError(
                f"no study {study_name!r} in {mask(storage_url)}; start one with 'hpsearch run {run_as or spec.name}'"
            ) from None
        study_id = None
    if study_id is not None:
        attrs = storage.get_study_user_attrs(study_id)
        directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
        if directions != [spec.direction] or attrs.get("metric", spec.metric) != spec.metric:
            raise UsageError(
                f"study {study_name!r} in {mask(storage_url)} was made to {'/'.join(directions)} "
                f"{attrs.get('metric', 'an unknown metric')}, not to {spec.direction} {spec.metric}; "
                "choose another --study-name"
            )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=spec.direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if study_id is None:
        for key, value in {"hpsearch_study": spec.name, "metric": spec.metric, "dataset": spec.dataset}.items():
            study.set_user_attr(key, value)
    if create and study.metric_names != [spec.metric]:  # studies made before the name was set get it too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # optuna-dashboard and optuna.visualization call the value "Objective 0" without it.
            study.set_metric_names([spec.metric])
    return study


def state_counts(study: optuna.Study) -> Counter:
    """Trials by state (a Counter: absent states count 0)."""
    return Counter(trial.state for trial in study.get_trials(deepcopy=False))


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def baseline_trial(
    study: optuna.Study, states: tuple[TrialState, ...] | None = (TrialState.COMPLETE,)
) -> FrozenTrial | None:
    """The study's baseline (trial 0 as ``hpsearch run`` enqueued it, labelled in its
    ``baseline`` user attribute) if it is in one of ``states`` (None: any state), else None."""
    return next((t for t in study.get_trials(deepcopy=False, states=states) if "baseline" in t.user_attrs), None)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None while there is none."""
    try:
        return study.best_trial
    except ValueError:
        return None
