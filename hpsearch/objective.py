"""The objective every study runs: one trial from its parameters to its stored outcome.

It samples the parameters, seeds the trial, hands it to the study's trainer in a
``TrialContext``, passes each epoch's value to the pruner, and records in the trial's user
attributes and optuna-dashboard note why it ended. How a trial trains is the trainer's
business (``hpsearch.trainer`` for the torch studies); this module imports no torch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from optuna_dashboard import save_note

from hpsearch import chance, interrupts
from hpsearch.algorithms import rung_steps
from hpsearch.study import FINISHED

# on_epoch(epoch, value, train_loss, seconds, images=None): raises optuna.TrialPruned when the
# trial must stop; ``images``, the training images seen by then, is the step reported (else the epoch).
OnEpoch = Callable[..., None]
# on_check(images, value): the same within an epoch, at one of ``TrialContext.checks``.
OnCheck = Callable[[int, float], None]
# on_batch(what, done, total): ``done`` of the ``total`` batches of the pass ``what`` (``hpsearch.train``).
OnBatch = Callable[[str, int, int], None]


@dataclass
class TrialContext:
    """What a trainer gets for one trial, and what it says back for the trial's note.

    The trainer trains ``params`` under ``seed`` for ``epochs`` epochs, calls ``on_epoch``
    after every epoch and may call ``on_batch`` within one. A trainer that counts training
    images (``images_per_epoch``, ``Trainer``) also takes the validation metric at each of
    ``checks`` (images seen, the pruner's rungs inside an epoch) and calls ``on_check`` with
    it; ``checks`` is empty otherwise. It may set user attributes on
    ``trial`` (``model``, ``best_epoch``, ...), ``model_text`` (the model as printed) and
    ``weights_kept``. ``epoch_seconds`` is filled by ``on_epoch``."""

    trial: optuna.Trial
    params: dict[str, Any]
    seed: int
    epochs: int
    on_epoch: OnEpoch
    on_batch: OnBatch = lambda what, done, total: None
    checks: tuple[int, ...] = ()
    on_check: OnCheck = lambda images, value: None
    model_text: str = ""
    weights_kept: bool = False
    epoch_seconds: list[float] = field(default_factory=list)


class Trainer(Protocol):
    """Trains one trial. ``summary`` describes the data and device for the run's header.
    ``chance``, where the trainer has it, is the validation metric of a model that learned
    nothing (``hpsearch.chance``); a trainer without it is never pruned for that.
    ``images_per_epoch``, where the trainer has it, makes the steps that trials report (and the
    pruner's rungs) training images seen, not epochs (``hpsearch.algorithms``)."""

    summary: str
    chance: float | None
    images_per_epoch: int | None

    def __call__(self, ctx: TrialContext) -> float:
        """Train the trial of ``ctx``; return the best epoch's metric."""


# Search trials train with seeds below SEARCH_SEEDS; replicates (``hpsearch.replicates``) with
# seeds from it up, so that no replicate repeats a search trial, whatever ``--seed`` was.
SEARCH_SEEDS = 2**31
REPLICATE_KEY = "config_id"  # the user attribute that makes a trial a replicate


def search_seed(seed: int | None, number: int) -> int:
    """The training seed of search trial ``number``: ``seed + number`` (wrapped below
    ``SEARCH_SEEDS``) with ``--seed``, else a random one."""
    if seed is None:
        return int.from_bytes(os.urandom(4), "little") % SEARCH_SEEDS
    return (seed + number) % SEARCH_SEEDS


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


class Objective:
    """The objective for ``optuna.Study.optimize``. ``admit(trial)`` raises Surplus for a
    trial that must not run (default: ``within_n``). A replicate trains for its own ``epochs``
    user attribute; a search trial for ``cfg.epochs``, a retried one too; either way the
    attribute is stored. Signals are taken only while the trainer runs
    (``interrupts.allowed``); the bookkeeping before and after it runs to its end.
    ``last_trial`` is the number of the trial it was given last (None before one)."""

    def __init__(self, cfg, trainer: Trainer, progress, admit: Callable[[optuna.Trial], None] | None = None):
        self.cfg, self.trainer, self.progress = cfg, trainer, progress
        self.admit = admit or within_n(cfg)
        self.last_trial: int | None = None
        # --pruner none (and every replicate) trains each trial to its end, at chance or not.
        self.floor = getattr(trainer, "chance", None) if cfg.pruner != "none" else None
        self.images_per_epoch = getattr(trainer, "images_per_epoch", None)

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_trial = trial.number
        ctx = None
        ended = "interrupted"
        try:
            ctx = self._context(trial)
            with interrupts.allowed():
                value = self.trainer(ctx)
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
            if ctx is not None and ctx.epoch_seconds:
                trial.set_user_attr("epoch_seconds", sum(ctx.epoch_seconds) / len(ctx.epoch_seconds))
            save_note(trial, _note(trial, ended, ctx))
        return value

    def _context(self, trial: optuna.Trial) -> TrialContext:
        cfg, progress, maximize = self.cfg, self.progress, self.cfg.spec.task.maximize
        self.admit(trial)
        # A replicate trains its own stored budget; a search trial the run's, also where it redoes
        # an earlier run's trial (Optuna's retry copies the failed trial's user attrs).
        epochs = trial.user_attrs["epochs"] if REPLICATE_KEY in trial.user_attrs else cfg.epochs
        trial.set_user_attr("epochs", epochs)
        params = cfg.spec.space(trial)
        # Without --seed each trial draws its own; either way it is stored, for reruns. A trial
        # that redoes an interrupted or dead one keeps its seed.
        seed = trial.user_attrs.get("seed")
        if seed is None:
            seed = search_seed(cfg.seed, trial.number)
        trial.set_user_attr("seed", seed)
        progress.start(trial)
        values: list[float] = []
        checks = ()
        if self.images_per_epoch:  # the unit of the trial's steps, for whoever reads them back
            trial.set_user_attr("images_per_epoch", self.images_per_epoch)
            if REPLICATE_KEY not in trial.user_attrs:  # replicates are never pruned
                checks = tuple(rung_steps(cfg.pruner, self.images_per_epoch, epochs))

        def on_check(images: int, value: float) -> None:
            with interrupts.deferred():
                trial.report(value, images)
                progress.check(trial, images, value)
                prune = trial.should_prune()
            if prune:
                raise optuna.TrialPruned(f"pruned at {images:,} images (epoch {images / self.images_per_epoch:.2f})")

        def on_epoch(epoch: int, value: float, train_loss: float, seconds: float, images: int | None = None) -> None:
            with interrupts.deferred():
                trial.report(value, images if images is not None else epoch)
                ctx.epoch_seconds.append(seconds)
                progress.epoch(trial, epoch, value, train_loss, seconds)
                values.append(value)
                best = max(values) if maximize else min(values)
                stuck = self.floor is not None and chance.learned_nothing(best, self.floor, maximize, epoch)
                # A trial that has run all its epochs is complete: pruning it at the last one
                # would store a finished training as "pruned" and drop its value.
                prune = epoch < epochs and (stuck or trial.should_prune())
            if prune:
                why = chance.reason(best, self.floor, epoch) if stuck else f"pruned at epoch {epoch}"
                raise optuna.TrialPruned(why)

        ctx = TrialContext(
            trial, params, seed, epochs, on_epoch, functools.partial(progress.batch, trial.number), checks, on_check
        )
        return ctx


def _note(trial: optuna.Trial, ended: str, ctx: TrialContext | None) -> str:
    """The trial's optuna-dashboard note (Markdown)."""
    attrs = trial.user_attrs
    seconds = ctx.epoch_seconds if ctx else []
    lines = [f"**{ended}**", ""]
    if "model" in attrs:
        lines.append(f"- model: `{attrs['model']}` {attrs['model_kwargs']}, {attrs.get('n_params', 0):,} parameters")
    if seconds:
        lines.append(f"- epoch time: {sum(seconds) / len(seconds):.2f} s (mean of {len(seconds)} epochs)")
    if "best_epoch" in attrs:
        kept = "yes" if ctx and ctx.weights_kept else "no"
        lines.append(f"- best epoch: {attrs['best_epoch']}; weights kept: {kept}")
    lines.append(f"- seed: {attrs.get('seed')}")
    if ctx and ctx.model_text:
        lines += ["", "```", ctx.model_text, "```"]
    return "\n".join(lines)
