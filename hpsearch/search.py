"""The search loop: ask for trials until the study holds N finished ones.

Safe with any number of workers (processes, hosts) on one storage: a worker starts a trial
only while finished + running trials are fewer than N, and waits while the last ones run
elsewhere (a dead worker's trial goes stale by heartbeat, is failed, and is retried; one
with no heartbeat at all is given one, ``BeatForTheSilent``). A trial that another worker
ended while it ran here (its heartbeat came too late) is dropped here with one line, never
a traceback. Optuna's bookkeeping runs with signals deferred (``hpsearch.interrupts``), so
Ctrl-C or SIGTERM never leaves a claimed trial without a heartbeat or a heartbeat thread
without its stop, and one that arrives between trials ends the run before another is claimed.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from hpsearch import interrupts
from hpsearch.errors import StorageLost, StudyAborted
from hpsearch.objective import Objective, Surplus, TrialOutOfMemory
from hpsearch.storage import MAX_RETRY, STORAGE_ERRORS, describe_error, grace_seconds, mask, open_storage
from hpsearch.study import FINISHED, count_finished, state_counts

MAX_CONSECUTIVE_FAILURES = 3
WAIT_SECONDS = 2.0


class StopAfterFailures:
    """Stop the study after ``limit`` trials in a row of this worker failed. A surplus trial
    (a worker giving way for the last place) is no failure."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_FAILURES):
        self.limit, self.count, self.last = limit, 0, ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        ended = trial.user_attrs.get("ended", "failed: unknown error")
        if trial.state == TrialState.FAIL and not ended.startswith("surplus"):
            self.count, self.last = self.count + 1, ended
            if self.count >= self.limit:
                study.stop()
        elif trial.state in FINISHED:
            self.count = 0


class BeatForTheSilent:
    """Optuna never finds a RUNNING trial stale that has no heartbeat at all (its worker was
    killed, or lost the storage, between the claim and the first beat), so such a trial
    would hold its place for ever and the study never reach N. Called while this worker
    waits for the last trials, this beats once for each trial RUNNING longer than the grace
    period: a live trial beats anyway; a silent one now has a beat, which goes stale, so a
    later wait fails it and queues it again. One beat per trial from this worker, so a dead
    trial's own last beat is outlived by one grace period at most."""

    def __init__(self, storage_url: str, heartbeat: int):
        self.url, self.heartbeat, self.beaten = storage_url, heartbeat, set()

    def __call__(self, study: optuna.Study) -> None:
        grace = datetime.timedelta(seconds=grace_seconds(self.heartbeat))
        now = datetime.datetime.now()  # Optuna stamps datetime_start with the worker's local time
        old = [
            t.number
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number not in self.beaten and t.datetime_start is not None and now - t.datetime_start > grace
        ]
        if not old:
            return
        storage = open_storage(self.url, self.heartbeat)  # the study's own is not public; rarely needed
        try:
            study_id = storage.get_study_id_from_name(study.study_name)
            for number in old:
                storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, number))
                self.beaten.add(number)
        finally:
            storage.engine.dispose()  # its connections are not held beside the worker's two


def search(
    cfg,
    study: optuna.Study,
    objective: Objective,
    progress,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> None:
    """Run ``objective`` until ``study`` holds ``cfg.trials`` finished trials or ``cfg.timeout``
    passes, calling ``callbacks`` (Optuna's) after each trial. Raises StudyAborted after
    ``MAX_CONSECUTIVE_FAILURES`` failures in a row, and StorageLost when the database
    stops answering (finished trials stay as stored)."""
    try:
        with _expected_failures_said_once(), interrupts.deferred():
            _loop(cfg, study, objective, progress, callbacks)
    except Exception as exc:
        lost = _storage_error_in(exc)
        if lost is None:
            raise
        raise StorageLost(
            f"lost the storage {mask(cfg.storage_url)} mid-run: {describe_error(lost, cfg.storage_url)}; finished "
            "trials are kept there; once it answers again, run the same command to continue (the trial that was "
            "running is failed by heartbeat and retried)"
        ) from None


def _loop(cfg, study: optuna.Study, objective, progress, callbacks) -> None:
    stop, beat_once = StopAfterFailures(), BeatForTheSilent(cfg.storage_url, cfg.heartbeat)
    deadline = time.monotonic() + cfg.timeout if cfg.timeout else None
    while stop.count < stop.limit and (deadline is None or time.monotonic() < deadline):
        counts = state_counts(study)
        finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        if finished >= cfg.trials:
            break
        if finished + counts[TrialState.RUNNING] >= cfg.trials:
            # The last trials run in other workers: wait for them, and fail them if their
            # worker died (heartbeat), so that this worker retries them.
            progress.waiting(counts[TrialState.RUNNING])
            with warnings.catch_warnings():  # experimental since Optuna 2.9: a warning per wait says nothing
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            beat_once(study)
            with interrupts.allowed():
                time.sleep(WAIT_SECONDS)
            continue
        objective.last_trial = None  # set by the objective once Optuna has given it a trial
        # A signal held since the last trial ends the run here, before a trial is claimed
        # only to be failed as interrupted and queued again.
        interrupts.raise_held()
        try:
            study.optimize(
                objective,
                n_trials=1,
                catch=(Exception,),
                callbacks=[stop, *callbacks, progress.trial_done],
                gc_after_trial=False,
            )
        except KeyboardInterrupt:
            _requeue(study, objective.last_trial)
            raise
        except (ValueError, AssertionError, UpdateFinishedTrialError):
            # Optuna's tell refuses a trial that is no longer RUNNING; where another worker
            # ended it (it found this worker's heartbeat stale), that is no error of this run.
            trial = _trial(study, objective.last_trial)
            if trial is None or not trial.state.is_finished():
                raise
            progress.ended_elsewhere(trial)
    if stop.count >= stop.limit:
        raise StudyAborted(
            f"{stop.limit} trials in a row failed, the last with: {stop.last}; "
            f"the {count_finished(study)} finished trials are stored"
        )
    progress.footer(study)


def _trial(study: optuna.Study, number: int | None) -> FrozenTrial | None:
    if number is None:
        return None
    trials = study.get_trials(deepcopy=False)
    return trials[number] if number < len(trials) else None


def _requeue(study: optuna.Study, number: int | None) -> None:
    """Queue an interrupted trial again with the same parameters, as Optuna's heartbeat
    retry does for a dead worker's trial, so that rerunning the command redoes that
    configuration first instead of losing it (trial 0, the baseline, included)."""
    with contextlib.suppress(*STORAGE_ERRORS):
        trial = _trial(study, number)
        if trial is not None and trial.state == TrialState.FAIL and trial.user_attrs.get("ended") == "interrupted":
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


def _storage_error_in(exc: BaseException | None) -> BaseException | None:
    """The storage error that ``exc`` is or arose from. Optuna 5.0's trial loop can turn a
    failed write into an UnboundLocalError of its own, chained to the storage error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, STORAGE_ERRORS):
            return exc.__cause__ if isinstance(exc.__cause__, sqlalchemy.exc.SQLAlchemyError) else exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def _expected_failures_said_once():
    """Ctrl-C, SIGTERM, out of memory, a lost database, a trial ended by another worker and a
    worker giving way for the last place each get one line from hpsearch; keep Optuna's
    failed-trial warning (with its traceback) and its heartbeat thread's dying traceback for
    failures nobody expected, where the traceback is the useful part."""
    expected = (KeyboardInterrupt, TrialOutOfMemory, Surplus, UpdateFinishedTrialError, *STORAGE_ERRORS)

    # Optuna follows the failed-trial warning with a second one ("... failed with value None"),
    # without the exception; trials run one at a time here, so it is the next warning.
    second_warning_due = False

    def log_filter(record: logging.LogRecord) -> bool:
        nonlocal second_warning_due
        if record.exc_info and isinstance(record.exc_info[1], expected):
            second_warning_due = True
            return False
        if second_warning_due and record.levelno == logging.WARNING and not record.exc_info:
            second_warning_due = False
            return False
        second_warning_due = False
        return True

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if not issubclass(args.exc_type, STORAGE_ERRORS):
            previous_hook(args)

    def storage_filter(record: logging.LogRecord) -> bool:
        # When the database goes away mid-read, RDBStorage logs the failed SQL (tens of
        # lines) and retries another way; either that works, or hpsearch's one line follows.
        return not record.getMessage().startswith("Caught an error from sqlalchemy")

    # Optuna has no public switch for these messages: filter the loggers of the modules that write them.
    optimize_logger = logging.getLogger("optuna.study._optimize")
    storage_logger = logging.getLogger("optuna.storages._rdb.storage")
    previous_hook = threading.excepthook
    optimize_logger.addFilter(log_filter)
    storage_logger.addFilter(storage_filter)
    threading.excepthook = thread_hook
    try:
        yield
    finally:
        threading.excepthook = previous_hook
        optimize_logger.removeFilter(log_filter)
        storage_logger.removeFilter(storage_filter)
