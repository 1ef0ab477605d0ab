"""The objective every study runs: one trial from its parameters to its stored outcome.

It samples the parameters, seeds the trial, hands it to the study's trainer, reports each
epoch to the pruner, and records in the trial's user attributes and optuna-dashboard note
why it ended. How a trial trains is the trainer's business (``hpsearch.trainer`` for the
torch studies); this module imports no torch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from optuna_dashboard import save_note

from hpsearch import chance, interrupts
from hpsearch.study import FINISHED


class Report(Protocol):
    """What a trainer tells the run about its trial."""

    def __call__(self, epoch: int, value: float, train_loss: float, seconds: float) -> None:
        """After each epoch; raises optuna.TrialPruned when the pruner stops the trial."""

    def batch(self, what: str, done: int, total: int) -> None:
        """May be called as a pass starts (``done`` 0) and after each of its batches, for
        progress within a long epoch (``hpsearch.train.OnBatch``); cheap enough for every batch."""


class Trainer(Protocol):
    """Trains one trial. ``summary`` describes the data and device for the run's header.
    ``chance``, where the trainer has it, is the validation metric of a model that learned
    nothing (``hpsearch.chance``); a trainer without it is never pruned for that."""

    summary: str
    chance: float | None

    def __call__(
        self, trial: optuna.Trial, params: dict[str, Any], seed: int, epochs: int, report: Report, facts: dict[str, Any]
    ) -> float:
        """Train with ``params`` and ``seed`` for ``epochs`` epochs, calling ``report`` after
        every epoch; return the best epoch's metric. May set user attributes (``model``, ``best_epoch``, ...) and put
        ``model_text`` and ``weights_kept`` into ``facts`` for the note."""


class Surplus(Exception):
    """Two workers started a trial for the same last place; the later one gives way."""


class TrialOutOfMemory(Exception):
    """A trial ran out of device (or host) memory; its memory has been released."""


def within_n(cfg) -> Callable[[optuna.Trial], None]:
    """The admission of a search trial: it runs only while fewer than ``cfg.trials`` earlier
    trials are finished or running, else it gives way (Surplus)."""

    def admit(trial: optuna.Trial) -> None:
        ahead = [
            t
            for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if t.number < trial.number
        ]
        if len(ahead) >= cfg.trials:
            raise Surplus(f"surplus: {len(ahead)} earlier trials already fill the study's {cfg.trials}")

    return admit


def make_objective(
    cfg, trainer: Trainer, progress, admit: Callable[[optuna.Trial], None] | None = None
) -> Callable[[optuna.Trial], float]:
    """The objective for ``optuna.Study.optimize``. ``admit(trial)`` raises Surplus for a
    trial that must not run (default: ``within_n``). A trial trains for its ``epochs`` user
    attribute when it was enqueued with one (a replicate), else for ``cfg.epochs``; either
    way the attribute is stored. Signals are taken only while the trainer runs
    (``interrupts.allowed``); the bookkeeping before and after it runs to its end."""
    spec = cfg.spec
    admit = admit or within_n(cfg)
    maximize = spec.direction == "maximize"
    # --pruner none (and every replicate) trains each trial to its end, at chance or not.
    floor = getattr(trainer, "chance", None) if cfg.pruner != "none" else None

    def run_trial(trial: optuna.Trial, facts: dict[str, Any]) -> float:
        admit(trial)
        epochs = trial.user_attrs.get("epochs", cfg.epochs)
        trial.set_user_attr("epochs", epochs)
        params = spec.space(trial)
        # Without --seed each trial draws its own; either way it is stored, for reruns. A trial
        # that redoes an interrupted or dead one (Optuna's retry copies its user attrs) keeps its seed.
        seed = trial.user_attrs.get("seed")
        if seed is None:
            seed = cfg.seed + trial.number if cfg.seed is not None else int.from_bytes(os.urandom(4), "little")
        trial.set_user_attr("seed", seed)
        progress.start(trial)
        values: list[float] = []

        def report(epoch: int, value: float, train_loss: float, seconds: float) -> None:
            with interrupts.deferred():
                trial.report(value, epoch)
                facts["epoch_seconds"].append(seconds)
                progress.epoch(trial, epoch, value, train_loss, seconds)
                values.append(value)
                best = max(values) if maximize else min(values)
                stuck = floor is not None and chance.learned_nothing(best, floor, maximize, epoch)
                # A trial that has run all its epochs is complete: pruning it at the last one
                # would store a finished training as "pruned" and drop its value.
                prune = epoch < epochs and (stuck or trial.should_prune())
            if prune:
                raise optuna.TrialPruned(chance.reason(best, floor, epoch) if stuck else f"pruned at epoch {epoch}")

        # An attribute of report, not another argument: a trainer that only reports epochs
        # (tests/bookkeeping_study.py) keeps its signature.
        report.batch = functools.partial(progress.batch, trial.number)
        with interrupts.allowed():
            return trainer(trial, params, seed, epochs, report, facts)

    def objective(trial: optuna.Trial) -> float:
        progress.current = trial.number
        facts: dict[str, Any] = {"epoch_seconds": []}
        ended = "interrupted"
        try:
            value = run_trial(trial, facts)
            ended = "complete"
        except (optuna.TrialPruned, Surplus) as exc:
            ended = str(exc)
            raise
        except TrialOutOfMemory as exc:
            ended = f"failed: {exc}"
            raise
        except Exception as exc:
            ended = f"failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            trial.set_user_attr("ended", ended)
            if facts["epoch_seconds"]:
                trial.set_user_attr("epoch_seconds", sum(facts["epoch_seconds"]) / len(facts["epoch_seconds"]))
            save_note(trial, _note(trial, ended, facts))
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
        lines.append(
            f"- best epoch: {attrs['best_epoch']}; weights kept: {'yes' if facts.get('weights_kept') else 'no'}"
        )
    lines.append(f"- seed: {attrs.get('seed')}")
    if "model_text" in facts:
        lines += ["", "```", facts["model_text"], "```"]
    return "\n".join(lines)
