"""How a search spent its first hour: trials finished, their pace, and the share of the time
that went into trials ending below a bar (50 % validation accuracy by default), read from
the storage's own trial timestamps.

    python benchmarks/first_hour.py --storage sqlite:///runs/lenet.db --study fashion-lenet [--minutes 60] [--human V]
        [--paused FROM TO ...]

Time is the search's wall time from its first trial's start, less the spans given by
``--paused`` (UTC, ``2026-12-07T21:51:26``): a run that was stopped and resumed counts the
time it ran, not the time between. Each trial's share is the part of its start-to-end span
inside the window. A trial still running at the window's end counts with what it had by then
(its best value so far decides which side it falls on).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

import optuna
from optuna.trial import TrialState

from hpsearch.study import epochs_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--bar", type=float, default=0.5, help="a trial below this best value learned little")
    parser.add_argument(
        "--paused",
        nargs=2,
        action="append",
        default=[],
        metavar=("FROM", "TO"),
        type=datetime.fromisoformat,
        help="a span in which the run was stopped (UTC); repeatable",
    )
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
    pauses = sorted((a, b) for a, b in args.paused if b > a)

    def running(a: datetime, b: datetime) -> float:
        """Seconds between ``a`` and ``b`` that the run was not paused."""
        if b <= a:
            return 0.0
        paused = sum(max(0.0, (min(b, p1) - max(a, p0)).total_seconds()) for p0, p1 in pauses)
        return (b - a).total_seconds() - paused

    end = t0 + timedelta(minutes=args.minutes)
    for p0, p1 in pauses:  # the window's end moves by every pause that starts inside it
        if p0 < end:
            end += p1 - p0
    end = min(end, datetime.now())
    finished, spent, below, rows = 0, 0.0, 0.0, []
    for t in sorted(started, key=lambda t: t.number):
        stop = min(t.datetime_complete or end, end)
        if t.datetime_start >= end:
            continue
        seconds = running(t.datetime_start, stop)
        values = list(t.intermediate_values.values())
        best = max(values) if values else None
        in_window = t.datetime_complete is not None and t.datetime_complete <= end
        if in_window and t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            finished += 1
        spent += seconds
        if best is not None and best < args.bar:
            below += seconds
        rows.append((t.number, t.state.name, epochs_trained(t), best, seconds))
    window = running(t0, end) / 60
    paused = f", less {len(pauses)} pause(s)" if pauses else ""
    print(f"study {args.study}: first {window:.1f} minutes from the first trial's start{paused}")
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
            minutes = running(t0, when) / 60
            print(f"time to beat {args.human:g}: {minutes:.1f} min (trial {number}, {value:.4f})")
        else:
            print(f"time to beat {args.human:g}: not in the {window:.0f} minutes")


if __name__ == "__main__":
    main()
