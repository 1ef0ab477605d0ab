"""How a search spent its first hour: trials finished, their pace, and the share of the time
that went into trials ending below a bar (50 % validation accuracy by default), read from
the storage's own trial timestamps.

    python benchmarks/first_hour.py --storage sqlite:///runs/lenet.db --study fashion-lenet [--minutes 60] [--human V]

Time is wall time of a single worker (one trial at a time): each trial's share is the part
of its start-to-end span inside the window. A trial still running at the window's end
counts with what it had by then (its best value so far decides which side it falls on).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

import optuna
from optuna.trial import TrialState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--bar", type=float, default=0.5, help="a trial below this best value learned little")
    parser.add_argument(
        "--human",
        type=float,
        help="the value to beat (the report's configuration's seed mean + 2 std): when a complete trial first did",
    )
    args = parser.parse_args()
    trials = optuna.load_study(study_name=args.study, storage=args.storage).get_trials(deepcopy=False)
    started = [t for t in trials if t.datetime_start is not None]
    if not started:
        raise SystemExit("no trial has started")
    t0 = min(t.datetime_start for t in started)
    end = min(t0 + timedelta(minutes=args.minutes), datetime.now())
    finished, spent, below, rows = 0, 0.0, 0.0, []
    for t in sorted(started, key=lambda t: t.number):
        stop = min(t.datetime_complete or end, end)
        if t.datetime_start >= end:
            continue
        seconds = max(0.0, (stop - t.datetime_start).total_seconds())
        values = list(t.intermediate_values.values())
        best = max(values) if values else None
        in_window = t.datetime_complete is not None and t.datetime_complete <= end
        if in_window and t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            finished += 1
        spent += seconds
        if best is not None and best < args.bar:
            below += seconds
        rows.append((t.number, t.state.name, len(values), best, seconds))
    window = (end - t0).total_seconds() / 60
    print(f"study {args.study}: first {window:.1f} minutes from the first trial's start")
    print("trial  state     epochs  best     seconds in window")
    for number, state, epochs, best, seconds in rows:
        best_text = f"{best:.4f}" if best is not None else "-"
        print(f"{number:<5}  {state:<8}  {epochs:<6}  {best_text:<7}  {seconds:.0f}")
    print(f"finished in the window: {finished} trials, {finished / window:.2f} a minute")
    share = 100 * below / spent
    print(f"time in trials whose best stayed below {args.bar:g}: {below:.0f} s of {spent:.0f} s ({share:.1f} %)")
    complete = [t for t in started if t.state == TrialState.COMPLETE and t.datetime_complete <= end]
    best = max((t.value for t in complete), default=None)
    print("best complete value in the window: " + ("-" if best is None else f"{best:.4f}"))
    if args.human is not None:
        beaten = sorted((t.datetime_complete, t.number, t.value) for t in complete if t.value > args.human)
        if beaten:
            when, number, value = beaten[0]
            minutes = (when - t0).total_seconds() / 60
            print(f"time to beat {args.human:g}: {minutes:.1f} min (trial {number}, {value:.4f})")
        else:
            print(f"time to beat {args.human:g}: not in the {window:.0f} minutes")


if __name__ == "__main__":
    main()
