"""What a run prints: a line per trial start, per epoch and per trial end, with the run's
pace and ETA, one estimate of the whole run after its first trials, and progress within
long epochs. It only prints.

Progress within an epoch is a redrawn line on a terminal, and on a pipe or a file a plain
line at most every ``PIPED_TICK_SECONDS``, so that a log stays one line per event.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.storage import grace_seconds, mask
from hpsearch.study import FINISHED, best_trial, count_finished

PIPED_TICK_SECONDS = 10.0  # within an epoch, at most one line this often into a pipe or file
TTY_TICK_SECONDS = 0.5  # and a terminal's line redrawn this often
# Trials this worker finishes before it estimates the rest of the run: on a CPU the first
# trial alone can take ten minutes, and the user should hear of hours before that is lost.
ESTIMATE_AFTER = 1
LONG_RUN_SECONDS = 30 * 60  # an estimate beyond this comes with the flags that shorten a run


def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def format_spread(stats: dict, digits: int = 4) -> str:
    """``mean ± std`` of a dict with ``mean`` and ``std`` (None below two values): ``-``
    without a mean, the mean alone without a std."""
    if stats.get("mean") is None:
        return "-"
    std = stats.get("std")
    return f"{stats['mean']:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def format_table(rows: list[tuple[str, ...]]) -> str:
    """Rows of cells as aligned text columns; the first row is the heading."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m04s``, ``48m``, ``2h10m``: seconds only where they are a real part of it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 10 * 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def format_rate(per_minute: float) -> str:
    return f"{per_minute:.1f}" if per_minute >= 1 else f"{per_minute:.2g}"


class Progress:
    """The lines of one worker's run. ``detail``: ``"epoch"`` says every trial's start, epochs
    and progress within long ones (the command line); ``"trial"`` only each finished trial,
    the estimate and the run's first and last lines (a notebook); ``"none"`` nothing."""

    def __init__(
        self, cfg, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic, detail: str = "epoch"
    ):
        self.cfg, self.out, self.clock, self.detail = cfg, out, clock, detail
        self.said_waiting = False
        self.started = clock()
        self.finished_before = 0  # the study's finished trials when this worker started
        self.finished_here = 0
        # Workers share one terminal, where their redrawn lines would overwrite each other.
        stream = out or sys.stdout
        self.redraw = cfg.jobs == 1 and stream.isatty()
        self.tick_seconds = TTY_TICK_SECONDS if self.redraw else PIPED_TICK_SECONDS
        self.pass_started = self.next_tick = self.started
        self.drawn = 0  # the length of the redrawn line on the terminal, 0 when there is none

    def say(self, line: str, detail: str = "trial") -> None:
        """Print ``line`` when this run's ``detail`` includes lines of that ``detail``."""
        if self.detail == "none" or (detail == "epoch" and self.detail != "epoch"):
            return
        prefix = f"[worker {self.cfg.worker}] " if self.cfg.jobs > 1 else ""
        stream = self.out or sys.stdout
        if self.drawn:
            stream.write("\r" + " " * self.drawn + "\r")
            self.drawn = 0
        print(prefix + line, file=stream, flush=True)

    def header(self, study: optuna.Study, summary: str) -> None:
        cfg = self.cfg
        self.finished_before = count_finished(study)
        self.say(
            f"study {study.study_name} ({cfg.spec.name}) in {mask(cfg.storage_url)}: "
            f"{self.finished_before}/{cfg.trials} trials finished; {cfg.spec.direction} {cfg.spec.metric}; "
            f"{summary}; sampler {cfg.sampler}, pruner {cfg.pruner}, up to {plural(cfg.epochs, 'epoch')}"
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
        self.say(f"trial {trial.number}: {params}", "epoch")

    def epoch(self, trial: optuna.Trial, epoch: int, value: float, train_loss: float, seconds: float) -> None:
        self.say(
            f"  {self.trial_name(trial.number)} epoch {epoch}/{trial.user_attrs.get('epochs', self.cfg.epochs)}: "
            f"{self.cfg.spec.metric} {value:.4f}  loss {train_loss:.4f}  {seconds:.1f}s",
            "epoch",
        )

    def check(self, trial: optuna.Trial, images: int, value: float) -> None:
        """The validation metric at a pruner's rung inside an epoch."""
        per_epoch = trial.user_attrs.get("images_per_epoch") or images
        self.say(
            f"  {self.trial_name(trial.number)} at {images:,} images (epoch {images / per_epoch:.2f}): "
            f"{self.cfg.spec.metric} {value:.4f}",
            "epoch",
        )

    def batch(self, number: int, what: str, done: int, total: int) -> None:
        """Within a pass of trial ``number``: ``done`` of its ``total`` batches launched
        (``hpsearch.train.OnBatch``). Called for every batch, so all but a due line is one
        clock read and a comparison; nothing at all unless this run says its epochs."""
        if self.detail != "epoch":
            return
        now = self.clock()
        if done == 0:
            self.pass_started, self.next_tick = now, now + self.tick_seconds
            return
        if now < self.next_tick or done >= total:  # the epoch's own line follows the last batch
            return
        self.next_tick = now + self.tick_seconds
        line = f"  {self.trial_name(number)} {what}: {100 * done // total}% of batches, "
        line += format_duration(now - self.pass_started)
        if self.redraw:
            stream = self.out or sys.stdout
            stream.write("\r" + line.ljust(self.drawn))
            stream.flush()
            self.drawn = len(line)
        else:
            self.say(line, "epoch")

    def trial_name(self, number: int) -> str:
        """Trial ``number`` as the lines of its epochs, and of a pass within one, name it."""
        return f"trial {number}"

    def pace(self, finished: int) -> tuple[float, float | None]:
        """Seconds since this worker started and the study's finished trials a minute since then."""
        elapsed = self.clock() - self.started
        gained = finished - self.finished_before
        return elapsed, gained * 60 / elapsed if gained > 0 and elapsed > 0 else None

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """An Optuna callback: the trial's outcome, the best so far, the count and the pace."""
        if trial.state == TrialState.COMPLETE:
            outcome = (
                f"complete, {self.cfg.spec.metric} {trial.value:.4f} (best epoch {trial.user_attrs.get('best_epoch')})"
            )
        else:
            unknown = "failed: unknown error" if trial.state == TrialState.FAIL else "pruned"
            outcome = trial.user_attrs.get("ended", unknown)
        best = best_trial(study)
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no complete trial yet"
        finished = count_finished(study)
        elapsed, per_minute = self.pace(finished)
        pace = f"{format_duration(elapsed)} elapsed"
        if per_minute is not None:
            pace += f", {format_rate(per_minute)} trials/min"
            if finished < self.cfg.trials:
                pace += f", ETA {format_duration((self.cfg.trials - finished) * 60 / per_minute)}"
        self.say(f"trial {trial.number} {outcome} | {best_text} | {finished}/{self.cfg.trials} finished | {pace}")
        if trial.state in FINISHED:
            self.finished_here += 1
            # Once, and from one worker: every worker would estimate the same shared study.
            if self.finished_here == ESTIMATE_AFTER and self.cfg.worker == 0 and per_minute is not None:
                self.estimate(finished, per_minute)

    def estimate(self, finished: int, per_minute: float) -> None:
        """How long the rest of the run takes at the pace so far, and when that is long, how to
        make it shorter: a 200-trial search on a CPU takes hours, which nothing else says."""
        cfg = self.cfg
        left = cfg.trials - finished
        if left <= 0:
            return
        seconds = left * 60 / per_minute
        # A pruner stops few of the first trials (it has little to compare them with), so a
        # pace taken from them overstates the rest.
        caveat = ", likely less as pruning sets in" if cfg.pruner != "none" else ""
        self.say(
            f"estimate: about {format_duration(seconds)} for the {plural(left, 'trial')} left, at "
            f"{format_rate(per_minute)} trials/min so far{caveat}"
        )
        if seconds <= LONG_RUN_SECONDS:
            return
        minutes = LONG_RUN_SECONDS // 60
        ways = [
            f"--trials {finished + max(1, int(per_minute * minutes))} (about {minutes} min from now)",
            f"--timeout {LONG_RUN_SECONDS} (start no trial after {minutes} min)",
        ]
        if cfg.epochs > 1:
            ways.append(f"--epochs {max(1, cfg.epochs // 4)} (now {cfg.epochs} at most per trial)")
        if cfg.device is not None:  # a study that trains on data, not one with its own trainer
            ways.append("--subset N (train on the first N images only)")
            if cfg.device.type == "cpu":
                ways.append("--device cuda (on a machine with a GPU)")
        self.say("to finish sooner, stop with Ctrl-C (finished trials are kept) and run again with: " + ", ".join(ways))

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
