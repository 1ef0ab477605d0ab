"""Would a rule across Hyperband's brackets have saved more than it lost? A replay on a
stored study's own per-epoch values, training nothing.

The rule is Optuna's PercentilePruner's: stop a trial at epoch e when its value there is
worse than the --percentile of the values that trials COMPLETE by then had at epoch e (at
least --startup of them), from epoch --warmup on. Hyperband compares a trial only with its
own bracket; this rule compares it with every finished trial. For each trial the replay
takes the epoch times the trial itself measured (its ``epoch_seconds``) and the moment each
of its epochs ended (start + e x epoch time), and prints, per percentile: the trials it would
have stopped earlier than they did stop, the CPU seconds that saves, and what it loses, the
stopped trials that completed among the study's --top best (each named).

What a replay cannot tell: trials the sampler would have proposed instead, and the values
of trials that Hyperband or the dead-trial rule already stopped, had they run on.

    python benchmarks/prune_replay.py --storage sqlite:////work/runs/lenet.db --study fashion-lenet
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import timedelta

import numpy as np
import optuna
from optuna.trial import TrialState


def epoch_end(trial, epoch: int):
    return trial.datetime_start + timedelta(seconds=epoch * trial.user_attrs.get("epoch_seconds", 0.0))


def replay(trials, percentile: float, startup: int, warmup: int, maximize: bool):
    """[(trial, stop epoch, seconds saved)] for the trials the rule stops earlier than they stopped."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    stopped = []
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        for epoch in steps[:-1]:  # stopping at the last epoch it ran saves nothing
            if epoch < warmup:
                continue
            at = epoch_end(trial, epoch)
            ref = [
                t.intermediate_values[epoch]
                for t in complete
                if t.number != trial.number and t.datetime_complete < at and epoch in t.intermediate_values
            ]
            if len(ref) < startup:
                continue
            # Optuna's PercentilePruner: for maximisation, the (100 - p)-th percentile of the others.
            cut = np.percentile(ref, 100 - percentile if maximize else percentile)
            value = trial.intermediate_values[epoch]
            if (value < cut) if maximize else (value > cut):
                saved = (steps[-1] - epoch) * trial.user_attrs.get("epoch_seconds", 0.0)
                stopped.append((trial, epoch, saved))
                break
    return stopped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--percentile", type=float, action="append", help="default: 10, 25 and 50")
    parser.add_argument("--startup", type=int, default=1, help="complete trials needed at an epoch (default: 1)")
    parser.add_argument("--warmup", type=int, default=1, help="first epoch the rule may stop at (default: 1)")
    parser.add_argument("--top", type=int, default=5, help="a stopped trial among the best TOP is a loss (default: 5)")
    args = parser.parse_args()
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.intermediate_values]
    ranked = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and not math.isnan(t.value)),
        key=lambda t: t.value,
        reverse=maximize,
    )
    best = {t.number for t in ranked[: args.top]}
    spent = sum(len(t.intermediate_values) * t.user_attrs.get("epoch_seconds", 0.0) for t in trials)
    print(
        f"study {args.study}: {len(trials)} finished trials, {spent:,.0f} s of training; top {args.top}: {sorted(best)}"
    )
    for percentile in args.percentile or [10.0, 25.0, 50.0]:
        stopped = replay(trials, percentile, args.startup, args.warmup, maximize)
        saved = sum(s for _, _, s in stopped)
        lost = [(t, e) for t, e, _ in stopped if t.number in best]
        print(
            f"percentile {percentile:g}: stops {len(stopped)} trials earlier, saves {saved:,.0f} s "
            f"({saved / spent:.1%} of the training time); loses {len(lost)} of the top {args.top}"
            + "".join(f"; trial {t.number} ({t.value:.4f}) at epoch {e}" for t, e in lost)
        )
        for trial, epoch, seconds in stopped:
            print(
                f"  trial {trial.number}: stopped at epoch {epoch} of {max(trial.intermediate_values)} "
                f"({trial.intermediate_values[epoch]:.4f} there; it ended {trial.state.name} at {trial.value:.4f}), "
                f"{seconds:,.0f} s saved"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
