"""Where should the pruner first look at a trial, and how many should it let on? The rank
correlation (Spearman) between a trial's validation value at an early point and its value
later, which decides the first rung and the reduction factor of the default pruner
(``hpsearch.algorithms``).

Two sources:

    python benchmarks/rung_correlation.py stored --storage sqlite:////work/runs/old-s1.db --study fashion-lenet
    python benchmarks/rung_correlation.py probe fashion-lenet --configs 16 --epochs 2 --seed 0

``stored`` reads a study's complete trials: each epoch's value against the trial's final
value (every epoch of every complete trial; a pruned trial has no final value). ``probe``
trains ``--configs`` configurations drawn uniformly from the study's space (Optuna's
RandomSampler, ``--seed``), each under its full-length schedule (the study's epochs: a cosine
or one-cycle schedule is not compressed) but only for ``--epochs`` epochs, taking the
validation metric at fractions of the first epoch, and correlates each point with the value
at the end of ``--epochs``. It also prints the seconds a validation pass costs, the price of a
rung inside an epoch. Nothing is stored.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import optuna

FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4)  # of the first epoch


def ranks(values) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank."""
    values = np.asarray(values, dtype=float)
    order = values.argsort(kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(len(values))
    for v in np.unique(values):
        tied = values == v
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(a, b) -> float:
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def stored(args) -> None:
    from hpsearch.study import epochs_reported

    study = optuna.load_study(study_name=args.study, storage=args.storage)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    curves = [epochs_reported(t) for t in complete]
    print(f"{args.study} in {args.storage}: {len(complete)} complete trials")
    print("epoch  trials  spearman(value there, final value)")
    for epoch in sorted({e for c in curves for e in c}):
        pairs = [(c[epoch], t.value) for c, t in zip(curves, complete, strict=True) if epoch in c]
        if len(pairs) >= 3:
            print(f"{epoch:<5g}  {len(pairs):<6}  {spearman(*zip(*pairs, strict=True)):.2f}")


class _Enough(Exception):
    """The probe has trained the epochs it wanted."""


def probe(args) -> None:
    import torch

    from hpsearch import api, registry
    from hpsearch.train import build_model, evaluate, fit
    from hpsearch.trainer import TorchTrainer

    spec = registry.get(args.study)
    cfg = api.config(spec, 1, storage="sqlite:///:memory:", device="cpu", data_dir=args.data_dir)
    trainer = TorchTrainer(cfg)
    n = trainer.images_per_epoch
    points = [round(f * n) for f in FRACTIONS]
    sampler = optuna.samplers.RandomSampler(seed=args.seed)
    draws = optuna.create_study(sampler=sampler, direction=spec.direction)
    draws.enqueue_trial(spec.baseline)
    rows, val_seconds = [], []
    for i in range(args.configs + 1):
        trial = draws.ask()
        params = spec.space(trial)
        seed = args.seed * 1000 + i
        name, kwargs = spec.model(params)
        model = build_model(name, kwargs, seed=seed, device=cfg.device)
        recipe = spec.recipe(params, epochs=spec.max_epochs, seed=seed, precision=cfg.precision)
        values: dict[float, float] = {}

        def on_check(images, value, values=values):
            values[images / n] = value

        def on_epoch(result, values=values):
            values[result.epoch] = result.value
            if result.epoch >= args.epochs:
                raise _Enough

        started = time.perf_counter()
        try:
            fit(model, trainer.data, recipe, on_epoch, checks=points, on_check=on_check)
        except _Enough:
            pass
        except Exception as exc:  # a diverged configuration is a data point too: the worst value
            print(f"config {i}: {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        clock = time.perf_counter()
        torch.stack([evaluate(model, trainer.data.val, spec.task)[0].sum()]).tolist()
        val_seconds.append(time.perf_counter() - clock)
        label = "baseline" if i == 0 else f"config {i}"
        shown = " ".join(f"{k:g}:{v:.3f}" for k, v in sorted(values.items()))
        print(f"{label}: batch {params.get('batch_size')}, {seconds:.0f}s: {shown}", flush=True)
        draws.tell(trial, values.get(args.epochs, spec.task.worst()))
        rows.append(values)
    worst = spec.task.worst()
    final = [r.get(args.epochs, worst) for r in rows]
    drawn = f"the baseline and {args.configs} uniform draws, seed {args.seed}"
    print(f"\n{args.study}: {len(rows)} configurations ({drawn})")
    print(f"validation pass: {len(trainer.data.val)} images, {np.median(val_seconds):.2f} s (median)")
    print(f"point (epochs)  spearman(value there, value at epoch {args.epochs})")
    for point in [*FRACTIONS, *range(1, args.epochs)]:
        here = [r.get(point, r.get(round(point * n) / n, worst)) for r in rows]
        print(f"{point:<14.4g}  {spearman(here, final):.2f}")


def main() -> None:
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="source", required=True)
    s = sub.add_parser("stored")
    s.add_argument("--storage", required=True)
    s.add_argument("--study", required=True)
    p = sub.add_parser("probe")
    p.add_argument("study")
    p.add_argument("--configs", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    args = parser.parse_args()
    stored(args) if args.source == "stored" else probe(args)


if __name__ == "__main__":
    main()
