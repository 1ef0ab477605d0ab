"""Opening a stored study, and reading its trials the way every command needs them."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable

import optuna
from optuna.distributions import distribution_to_json
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch import space
from hpsearch.errors import UsageError
from hpsearch.spec import StudySpec
from hpsearch.storage import HEARTBEAT_SECONDS, mask, open_storage, storage_absent

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# The study's user attribute naming the study file that made it: written last by the process
# that created the study, after its first trial is queued, so that it also means "ready".
MADE_BY = "hpsearch_study"
SPACE = "space"  # the parameters and distributions of the space that made the study
STEPS = "steps"  # the unit of the trials' steps: "images" (seen in training) or "epochs"
# How long a process that finds a study without MADE_BY and without trials waits for its
# creator to finish (a study made outside hpsearch, e.g. by 'optuna create-study', waits once).
READY_SECONDS = 5.0


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
    on_create: Callable[[optuna.Study], None] | None = None,
    steps: str | None = None,
) -> optuna.Study:
    """Load the study (or create it when ``create``), refusing one made for another metric or
    by another study file, and (when ``create``: trials will be written) one whose space the
    study file has changed since. ``run_as`` is how the user named the study (a study file's
    path), for the hint to start it.

    ``on_create(study)`` runs once per study, in the one process that created it, before any
    other process opening it with ``create`` goes on: what it enqueues is trial 0, once, however
    many workers start together.

    ``steps`` is the unit of the steps that this run's trials report (``"images"`` seen or
    ``"epochs"``): a search into a study whose trials reported the other is refused, since its
    pruner's rungs and TPE's ranking of pruned trials would mix the two. For a study made before
    the unit was stored, its trials tell (``images_per_epoch``)."""
    if not create and storage_absent(storage_url):  # reading makes no database file
        raise UsageError(
            f"no study {study_name!r} in {mask(storage_url)} (no such file); start one with 'hpsearch run "
            f"{run_as or spec.name}'"
        )
    storage = open_storage(storage_url, heartbeat)
    made_here = False
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        if not create:
            raise UsageError(
                f"no study {study_name!r} in {mask(storage_url)}; start one with 'hpsearch run {run_as or spec.name}'"
            ) from None
        try:  # the storage's create is atomic: of workers starting together, one makes the study
            study_id = storage.create_new_study([StudyDirection[spec.direction.upper()]], study_name)
            made_here = True
        except optuna.exceptions.DuplicatedStudyError:
            study_id = storage.get_study_id_from_name(study_name)
    if not made_here:
        _check(spec, storage, study_id, study_name, storage_url, create)
        if create and steps is not None:
            _check_steps(storage, study_id, f"study {study_name!r} in {mask(storage_url)}", steps)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    if create and steps is not None and STEPS not in study.user_attrs:  # before the study is signed ready
        study.set_user_attr(STEPS, steps)
    if create and MADE_BY not in study.user_attrs:
        # This process made the study, or it was made outside hpsearch (or by a process that
        # died before its first trial): queue the first trial, then sign the study.
        if on_create is not None and (made_here or not study.get_trials(deepcopy=False)):
            on_create(study)
        _sign(study, spec)
    elif create and SPACE not in study.user_attrs:  # a study made before the space was stored
        study.set_user_attr(SPACE, space_signature(spec))
    if create and study.metric_names != [spec.metric]:  # studies made before the name was set get it too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # optuna-dashboard and optuna.visualization call the value "Objective 0" without it.
            study.set_metric_names([spec.metric])
    return study


def space_signature(spec: StudySpec) -> dict[str, str]:
    """Each parameter the study's space can suggest, with its distribution as Optuna stores it."""
    return {name: distribution_to_json(d) for name, d in space.distributions(spec.space).items()}


def _sign(study: optuna.Study, spec: StudySpec) -> None:
    for key, value in {"metric": spec.metric, "dataset": spec.dataset, SPACE: space_signature(spec)}.items():
        study.set_user_attr(key, value)
    study.set_user_attr(MADE_BY, spec.name)  # last: the study is ready


def _check(spec: StudySpec, storage, study_id: int, study_name: str, url: str, writing: bool) -> None:
    """UsageError (one line) unless the stored study was made by ``spec`` as it is now."""
    where = f"study {study_name!r} in {mask(url)}"
    attrs = storage.get_study_user_attrs(study_id)
    directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
    if writing and MADE_BY not in attrs and "metric" not in attrs:
        attrs = _wait_until_ready(storage, study_id) or attrs
    if directions != [spec.direction] or attrs.get("metric", spec.metric) != spec.metric:
        raise UsageError(
            f"{where} was made to {'/'.join(directions)} {attrs.get('metric', 'an unknown metric')}, not to "
            f"{spec.direction} {spec.metric}; choose another --study-name"
        )
    made_by = attrs.get(MADE_BY)
    if made_by is not None and made_by != spec.name:
        raise UsageError(
            f"{where} was made by the study {made_by!r}, not by {spec.name!r}; choose another --study-name, or name "
            f"{made_by!r} to read it"
        )
    stored = attrs.get(SPACE)
    if writing and stored is not None and stored != (now := space_signature(spec)):
        changed = [n for n in {**stored, **now} if stored.get(n) != now.get(n)]
        raise UsageError(
            f"{where} was made with another search space (changed since: {', '.join(changed)}); its trials would mix "
            "two spaces: choose another --study-name for the study file as it is now"
        )


def _check_steps(storage, study_id: int, where: str, steps: str) -> None:
    stored = storage.get_study_user_attrs(study_id).get(STEPS)
    if stored is None:  # a study stored before the unit was: its trials tell
        reported = [t for t in storage.get_all_trials(study_id, deepcopy=False) if t.intermediate_values]
        if reported:
            stored = "images" if any("images_per_epoch" in t.user_attrs for t in reported) else "epochs"
    if stored is not None and stored != steps:
        raise UsageError(
            f"{where} holds trials whose steps are {stored}, and this run's trials report {steps}: the pruner "
            "would compare the two; choose another --study-name (show, report, export and confirm still read it)"
        )


def _wait_until_ready(storage, study_id: int) -> dict | None:
    """The study's user attributes once its creator has signed it or queued a trial (None
    after ``READY_SECONDS`` without either)."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        attrs = storage.get_study_user_attrs(study_id)
        if MADE_BY in attrs or storage.get_n_trials(study_id) > 0:
            return attrs
        time.sleep(0.05)
    return None


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


def epochs_reported(trial: FrozenTrial) -> dict[float, float]:
    """The trial's intermediate values by epoch (fractional at a pruner's rung inside one):
    steps are training images seen where the trial stored ``images_per_epoch``, else epochs."""
    per_epoch = trial.user_attrs.get("images_per_epoch")
    if not per_epoch:
        return dict(trial.intermediate_values)
    return {step / per_epoch: value for step, value in trial.intermediate_values.items()}


def epochs_trained(trial: FrozenTrial) -> int:
    """How many whole epochs the trial reported."""
    return sum(1 for epoch in epochs_reported(trial) if float(epoch).is_integer())
