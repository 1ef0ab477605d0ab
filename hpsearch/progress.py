"""What a run prints: a line per trial start, per epoch and per trial end. It only prints."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.storage import grace_seconds, mask
from hpsearch.study import best_trial, count_finished


def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    def __init__(self, cfg, out: TextIO | None = None):
        self.cfg, self.out = cfg, out
        self.said_waiting = False
        self.current: int | None = None  # the number of the trial this worker runs or ran last

    def say(self, line: str) -> None:
        prefix = f"[worker {self.cfg.worker}] " if self.cfg.jobs > 1 else ""
        print(prefix + line, file=self.out or sys.stdout, flush=True)

    def header(self, study: optuna.Study, summary: str) -> None:
        cfg = self.cfg
        self.say(
            f"study {study.study_name} ({cfg.spec.name}) in {mask(cfg.storage_url)}: "
            f"{count_finished(study)}/{cfg.trials} trials finished; {cfg.spec.direction} {cfg.spec.metric}; "
            f"{summary}; sampler {cfg.sampler}, pruner {cfg.pruner}, up to {cfg.epochs} epochs"
        )

    def waiting(self, running: int) -> None:
        if not self.said_waiting:
            self.said_waiting = True
            self.say(
                f"waiting for {running} trial(s) running elsewhere to finish the study; a trial whose "
                f"worker died is failed after {grace_seconds(self.cfg.heartbeat)} s without a heartbeat, "
                "then retried here"
            )

    def start(self, trial: optuna.Trial) -> None:
        self.said_waiting = False
        params = " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
        self.say(f"trial {trial.number}: {params}")

    def epoch(self, trial: optuna.Trial, epoch: int, value: float, train_loss: float, seconds: float) -> None:
        self.say(
            f"  trial {trial.number} epoch {epoch}/{self.cfg.epochs}: "
            f"{self.cfg.spec.metric} {value:.4f}  loss {train_loss:.4f}  {seconds:.1f}s"
        )

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """An Optuna callback: the trial's outcome, the best so far and the count."""
        if trial.state == TrialState.COMPLETE:
            outcome = (
                f"complete, {self.cfg.spec.metric} {trial.value:.4f} (best epoch {trial.user_attrs.get('best_epoch')})"
            )
        else:
            unknown = "failed: unknown error" if trial.state == TrialState.FAIL else "pruned"
            outcome = trial.user_attrs.get("ended", unknown)
        best = best_trial(study)
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no complete trial yet"
        self.say(f"trial {trial.number} {outcome} | {best_text} | {count_finished(study)}/{self.cfg.trials} finished")

    def ended_elsewhere(self, trial: FrozenTrial) -> None:
        self.say(
            f"trial {trial.number} was ended by another worker while it ran here ({trial.state.name}: "
            f"{trial.user_attrs.get('ended', 'no heartbeat from here in time')}); its result here is dropped"
        )

    def footer(self, study: optuna.Study) -> None:
        finished = count_finished(study)
        if finished < self.cfg.trials:
            self.say(f"stopped at the timeout with {finished}/{self.cfg.trials} trials finished; run again to continue")
        best = best_trial(study)
        if best is not None:
            params = " ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
            self.say(f"best {self.cfg.spec.metric} {best.value:.4f} in trial {best.number}: {params}")
