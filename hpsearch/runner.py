"""Runs a study: creates or resumes it, enqueues the report's baseline, and keeps asking
for trials until the study holds ``trials`` finished ones (COMPLETE or PRUNED).

Only this module and the objective glue in it speak Optuna; ``hpsearch.train`` gets plain
parameters and a per-epoch callback.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import optuna
import sqlalchemy
import torch
from optuna.trial import TrialState
from optuna_dashboard import save_note

import models
from hpsearch import data as datasets
from hpsearch import weights
from hpsearch.algorithms import make_pruner, make_sampler
from hpsearch.errors import StorageLost, StudyAborted, UsageError, first_line
from hpsearch.spec import StudySpec
from hpsearch.storage import (HEARTBEAT_SECONDS, MAX_RETRY, STORAGE_ERRORS, artifact_store, describe_error,
                              grace_seconds, mask, open_storage)
from hpsearch.train import Diverged, EpochResult, fit

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 3
WAIT_SECONDS = 2.0


@dataclass
class RunConfig:
    spec: StudySpec
    trials: int
    storage_url: str
    study_name: str
    epochs: int
    sampler: str
    pruner: str
    device: torch.device
    data_root: Path
    seed: int | None = None
    subset: int | None = None
    timeout: float | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    train_csv: Path | None = None
    artifacts: Path = Path("hpsearch-artifacts")
    keep_weights: int = weights.DEFAULT_KEEP
    heartbeat: int = HEARTBEAT_SECONDS  # seconds between a running trial's heartbeats
    jobs: int = 1  # worker processes sharing the study on this host
    worker: int = 0  # this process's index among them


def resolve_device(text: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UsageError(f"--device {text}: no CUDA GPU is visible here; use --device cpu (or auto)")
        if (device.index or 0) >= count:
            raise UsageError(f"--device {text}: only {count} GPU(s) visible (cuda:0 to cuda:{count - 1})")
    elif device.type != "cpu":
        raise UsageError(f"--device {text!r}: use auto, cpu, cuda or cuda:N")
    return device


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def open_study(
    spec: StudySpec,
    storage_url: str,
    study_name: str,
    *,
    create: bool = False,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    heartbeat: int = HEARTBEAT_SECONDS,
) -> optuna.Study:
    """Load the study (or create it when ``create``), refusing one made for another metric."""
    storage = open_storage(storage_url, heartbeat)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        if not create:
            raise UsageError(f"no study {study_name!r} in {mask(storage_url)}; start one with 'hpsearch run {spec.name}'") from None
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
        storage=storage, study_name=study_name, direction=spec.direction,
        sampler=sampler, pruner=pruner, load_if_exists=True,
    )
    if study_id is None:
        for key, value in {"hpsearch_study": spec.name, "metric": spec.metric, "dataset": spec.dataset}.items():
            study.set_user_attr(key, value)
    return study


def prepare(cfg: RunConfig, device: torch.device | None = None) -> tuple[datasets.SearchData, optuna.Study]:
    """Load the data, then create or load the study and, when it is new, enqueue the
    report's baseline. Data first: when it is missing, nothing has been written to the
    storage yet. ``device`` overrides ``cfg.device`` (a launcher checks the data on the CPU)."""
    spec = cfg.spec
    data = datasets.load(spec.dataset, device or cfg.device, cfg.data_root, subset=cfg.subset,
                         val_fraction=spec.val_fraction, train_csv=cfg.train_csv, standardize=spec.standardize)
    # Each worker seeds its sampler differently, or K workers would propose the same trials.
    seed = None if cfg.seed is None else cfg.seed + cfg.worker
    study = open_study(
        spec, cfg.storage_url, cfg.study_name, create=True,
        sampler=make_sampler(cfg.sampler, seed, cfg.fixed), pruner=make_pruner(cfg.pruner, cfg.epochs),
        heartbeat=cfg.heartbeat,
    )
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(
            {**spec.baseline, **cfg.fixed}, user_attrs={"baseline": spec.baseline_source}, skip_if_exists=True
        )
    return data, study


def run(cfg: RunConfig, out: TextIO | None = None) -> optuna.Study:
    """Run ``cfg.spec`` until the study holds ``cfg.trials`` finished trials (or the timeout).

    Safe with several workers (processes, hosts) on one storage: a worker starts a trial
    only while finished + running trials are fewer than ``cfg.trials``, and waits while the
    last ones run elsewhere (a dead worker's trial goes stale by heartbeat, is failed, and is
    retried). Rerunning the same command after an interruption continues: finished trials
    are kept and counted. Trials that fail (an exception) are recorded as FAIL and do not
    count; ``MAX_CONSECUTIVE_FAILURES`` in a row raise StudyAborted. A database that stops
    answering mid-run raises StorageLost: nothing is retried against it, finished trials stay
    as stored, and the trial that was running goes stale and is retried by the next run.
    """
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    data, study = prepare(cfg)
    progress = _Progress(cfg, out)
    objective = make_objective(cfg, data, progress)
    try:
        with _expected_failures_said_once():
            progress.header(study, len(data.train), len(data.val))
            _search(cfg, study, objective, progress)
    except Exception as exc:
        lost = _storage_error_in(exc)
        if lost is None:
            raise
        raise StorageLost(
            f"lost the storage {mask(cfg.storage_url)} mid-run: {describe_error(lost, cfg.storage_url)}; finished "
            "trials are kept there; once it answers again, run the same command to continue (the trial that was "
            "running is failed by heartbeat and retried)"
        ) from None
    return study


def _requeue(study: optuna.Study, number: int | None) -> None:
    """Queue an interrupted trial again with the same parameters, as Optuna's heartbeat
    retry does for a dead worker's trial, so that rerunning the command redoes that
    configuration first instead of losing it (trial 0, the report's baseline, included)."""
    if number is None:
        return
    with contextlib.suppress(*STORAGE_ERRORS):
        trial = study.get_trials(deepcopy=False)[number]
        if trial.state == TrialState.FAIL and trial.user_attrs.get("ended") == "interrupted":
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
    """Ctrl-C, SIGTERM, out of memory and a lost database each get one line from hpsearch;
    keep Optuna's failed-trial warning (with its traceback) and its heartbeat thread's dying
    traceback for failures nobody expected, where the traceback is the useful part."""
    expected = (KeyboardInterrupt, TrialOutOfMemory, *STORAGE_ERRORS)

    silenced: set[str] = set()  # "Trial N": Optuna follows the warning with "Trial N failed with value None"

    def log_filter(record: logging.LogRecord) -> bool:
        trial = " ".join(record.getMessage().split()[:2])
        if record.exc_info and isinstance(record.exc_info[1], expected):
            silenced.add(trial)
            return False
        return trial not in silenced

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if not issubclass(args.exc_type, STORAGE_ERRORS):
            previous_hook(args)

    optimize_logger = logging.getLogger("optuna.study._optimize")
    previous_hook = threading.excepthook
    optimize_logger.addFilter(log_filter)
    threading.excepthook = thread_hook
    try:
        yield
    finally:
        threading.excepthook = previous_hook
        optimize_logger.removeFilter(log_filter)


def _search(cfg: RunConfig, study: optuna.Study, objective: Callable, progress: "_Progress") -> None:
    deadline = time.monotonic() + cfg.timeout if cfg.timeout else None
    while not progress.failures_exhausted and (deadline is None or time.monotonic() < deadline):
        counts = _state_counts(study)
        if counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] >= cfg.trials:
            break
        if counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + counts[TrialState.RUNNING] >= cfg.trials:
            # The last trials run in other workers: wait for them, and fail them if their
            # worker died (heartbeat), so that this worker retries them.
            progress.waiting(counts[TrialState.RUNNING])
            optuna.storages.fail_stale_trials(study)
            time.sleep(WAIT_SECONDS)
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[progress.trial_done],
                           gc_after_trial=False)
        except KeyboardInterrupt:
            _requeue(study, progress.current)
            raise
    if progress.failures_exhausted:
        raise StudyAborted(
            f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed, the last with: {progress.last_failure}; "
            f"the {count_finished(study)} finished trials are stored"
        )
    progress.footer(study)


def _state_counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


class _Surplus(Exception):
    """Two workers started a trial for the same last place; the later one gives way."""


class TrialOutOfMemory(Exception):
    """A trial ran out of device (or host) memory; its memory has been released."""


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure (a plain RuntimeError)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def make_objective(cfg: RunConfig, data: datasets.SearchData, progress: "_Progress") -> Callable[[optuna.Trial], float]:
    """The objective: build the trial's model, train it, report every epoch, offer the best
    epoch's weights to the keep-top-k store, and record in the trial's user attributes its
    seed, model, size, epoch time and why it ended (also as its optuna-dashboard note)."""
    spec = cfg.spec
    store = artifact_store(cfg.artifacts) if cfg.keep_weights > 0 else None

    def train_trial(trial: optuna.Trial, facts: dict[str, Any]) -> float:
        ahead = [t for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                 if t.number < trial.number]
        if len(ahead) >= cfg.trials:
            raise _Surplus(f"surplus: {len(ahead)} earlier trials already fill the study's {cfg.trials}")
        params = spec.space(trial)
        # Without --seed each trial draws its own; either way it is stored, for reruns.
        seed = cfg.seed + trial.number if cfg.seed is not None else int.from_bytes(os.urandom(4), "little")
        model_name, model_kwargs = spec.model(params)
        for key, value in {"seed": seed, "model": model_name, "model_kwargs": model_kwargs}.items():
            trial.set_user_attr(key, value)
        torch.manual_seed(seed)
        model = models.create(model_name, **model_kwargs).to(cfg.device)
        trial.set_user_attr("n_params", sum(p.numel() for p in model.parameters()))
        facts["model"] = model
        progress.start(trial)

        def report(result: EpochResult) -> None:
            trial.report(result.value, result.epoch)
            facts["epoch_seconds"].append(result.seconds)
            progress.epoch(trial, result)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {result.epoch}")

        try:
            result = fit(model, data, spec.recipe(params, epochs=cfg.epochs, seed=seed), report)
        except Diverged as exc:
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        trial.set_user_attr("best_epoch", result.best_epoch)
        if store is not None and result.best_state is not None:
            facts["weights_kept"] = weights.offer(trial, result.best_value, result.best_state, store, cfg.keep_weights)
        return result.best_value

    def objective(trial: optuna.Trial) -> float:
        facts: dict[str, Any] = {"epoch_seconds": []}
        ended = "interrupted"
        out_of_memory = False
        try:
            value = train_trial(trial, facts)
            ended = "complete"
        except (optuna.TrialPruned, _Surplus) as exc:
            ended = str(exc)
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):
                ended = f"failed: {type(exc).__name__}: {exc}"
                raise
            out_of_memory = True
            ended = f"failed: out of memory: {first_line(exc)}"
        finally:
            trial.set_user_attr("ended", ended)
            if facts["epoch_seconds"]:
                trial.set_user_attr("epoch_seconds", sum(facts["epoch_seconds"]) / len(facts["epoch_seconds"]))
            save_note(trial, _note(trial, ended, facts))
        if out_of_memory:
            # Out here the caught exception and its traceback are gone, and with them the
            # frames that held the model, its optimizer state and the batch; free them before
            # the next trial asks for memory.
            facts.clear()
            release_memory(cfg.device)
            raise TrialOutOfMemory(ended.removeprefix("failed: "))
        return value

    return objective


def _note(trial: optuna.Trial, ended: str, facts: dict[str, Any]) -> str:
    """The trial's optuna-dashboard note (Markdown)."""
    attrs = trial.user_attrs
    seconds = facts["epoch_seconds"]
    lines = [f"**{ended}**", ""]
    if "model" in attrs:
        lines.append(f"- model: `{attrs['model']}` {attrs['model_kwargs']}, {attrs.get('n_params', 0):,} parameters")
    if seconds:
        lines.append(f"- epoch time: {sum(seconds) / len(seconds):.2f} s (mean of {len(seconds)} epochs)")
    if "best_epoch" in attrs:
        lines.append(f"- best epoch: {attrs['best_epoch']}; weights kept: {'yes' if facts.get('weights_kept') else 'no'}")
    lines.append(f"- seed: {attrs.get('seed')}")
    if "model" in facts:
        lines += ["", "```", str(facts["model"]), "```"]
    return "\n".join(lines)


def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _Progress:
    """Terminal progress: one line per trial start, per epoch and per trial end."""

    def __init__(self, cfg: RunConfig, out: TextIO):
        self.cfg, self.out = cfg, out
        self.consecutive_failures = 0
        self.last_failure = ""
        self.said_waiting = False
        self.current: int | None = None  # number of the trial this worker runs or ran last

    @property
    def failures_exhausted(self) -> bool:
        return self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES

    def say(self, line: str) -> None:
        prefix = f"[worker {self.cfg.worker}] " if self.cfg.jobs > 1 else ""
        print(prefix + line, file=self.out or sys.stdout, flush=True)

    def header(self, study: optuna.Study, n_train: int, n_val: int) -> None:
        cfg = self.cfg
        self.say(
            f"study {study.study_name} ({cfg.spec.name}) in {mask(cfg.storage_url)}: "
            f"{count_finished(study)}/{cfg.trials} trials finished; {cfg.spec.direction} {cfg.spec.metric}; "
            f"{n_train} train / {n_val} validation images on {cfg.device}; "
            f"sampler {cfg.sampler}, pruner {cfg.pruner}, up to {cfg.epochs} epochs"
        )

    def waiting(self, running: int) -> None:
        if not self.said_waiting:
            self.said_waiting = True
            self.say(f"waiting for {running} trial(s) running elsewhere to finish the study; a trial whose "
                     f"worker died is failed after {grace_seconds(self.cfg.heartbeat)} s without a heartbeat, "
                     "then retried here")

    def start(self, trial: optuna.Trial) -> None:
        self.said_waiting = False
        self.current = trial.number
        params = " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
        self.say(f"trial {trial.number}: {params}")

    def epoch(self, trial: optuna.Trial, result: EpochResult) -> None:
        self.say(
            f"  trial {trial.number} epoch {result.epoch}/{self.cfg.epochs}: "
            f"{self.cfg.spec.metric} {result.value:.4f}  loss {result.train_loss:.4f}  {result.seconds:.1f}s"
        )

    def trial_done(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        surplus = trial.user_attrs.get("ended", "").startswith("surplus")
        if trial.state == TrialState.FAIL and not surplus:
            self.consecutive_failures += 1
            self.last_failure = trial.user_attrs.get("ended", "failed: unknown error")
            outcome = self.last_failure
            if self.failures_exhausted:
                study.stop()
        elif surplus:
            outcome = trial.user_attrs["ended"]
        else:
            self.consecutive_failures = 0
            if trial.state == TrialState.COMPLETE:
                outcome = f"complete, {self.cfg.spec.metric} {trial.value:.4f} (best epoch {trial.user_attrs.get('best_epoch')})"
            else:
                outcome = trial.user_attrs.get("ended", "pruned")
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        self.say(f"trial {trial.number} {outcome} | {best} | {count_finished(study)}/{self.cfg.trials} finished")

    def footer(self, study: optuna.Study) -> None:
        finished = count_finished(study)
        if finished < self.cfg.trials:
            self.say(f"stopped at the timeout with {finished}/{self.cfg.trials} trials finished; run again to continue")
        try:
            best = study.best_trial
        except ValueError:
            return
        params = " ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
        self.say(f"best {self.cfg.spec.metric} {best.value:.4f} in trial {best.number}: {params}")
