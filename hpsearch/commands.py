"""What each ``hpsearch`` command does, given its parsed arguments (``hpsearch.cli`` parses
them). A command returns an exit status, or None for 0; bad input raises UsageError."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hpsearch.algorithms import DEFAULT_PRUNER, DEFAULT_SAMPLER

if TYPE_CHECKING:
    from hpsearch.spec import StudySpec


def _run_config(args, spec, trials: int, device: str | None = None):
    """The run's settings from the options that ``run``, ``confirm`` and ``ablate`` share
    (``device`` instead of ``--device``: where the workers run on other hosts)."""
    from hpsearch import api

    return api.config(
        spec,
        trials,
        storage=args.storage,
        study_name=args.study_name,
        epochs=getattr(args, "epochs", None),
        sampler=getattr(args, "sampler", DEFAULT_SAMPLER),
        pruner=getattr(args, "pruner", DEFAULT_PRUNER),
        seed=getattr(args, "seed", None),
        fixed=getattr(args, "fixed", []),
        timeout=getattr(args, "timeout", None),
        device=device or args.device,
        precision=args.precision,
        data_dir=args.data_dir,
        subset=args.subset,
        keep_weights=getattr(args, "keep_weights", None),
        train_csv=args.train_csv,
        artifacts=args.artifacts,
        heartbeat=args.heartbeat,
        jobs=args.jobs or 1,
    )


def cmd_run(args) -> int | None:
    from hpsearch import registry, runner, slurm, workers

    if args.slurm and workers.worker_index() is None:  # the workers run on the cluster's nodes
        return slurm.submit(_run_config(args, registry.get(args.study), args.trials, device="cpu"), args)
    cfg = _run_config(args, registry.get(args.study), args.trials)
    if args.jobs is None:
        cfg = dataclasses.replace(cfg, jobs=workers.default_jobs(cfg.device))
    if cfg.jobs > 1 and workers.worker_index() is None:
        why = "" if args.jobs else f" (the default on a CPU of {os.cpu_count()} cores; --jobs 1 for one worker)"
        return workers.launch(cfg, args.argv, why)
    runner.run(cfg)
    return None


def _replicate_run(args, keep_weights: bool):
    """The search study and the settings of ``confirm`` / ``ablate``; None in a worker of
    ``--jobs``, which has trained the waiting replicates by then."""
    from hpsearch import registry, replicates, workers
    from hpsearch.study import open_study

    spec = registry.get(args.study)
    cfg = _run_config(args, spec, trials=1)
    study = open_study(spec, cfg.storage_url, cfg.study_name, run_as=args.study)
    if workers.worker_index() is not None:
        replicates.drain(cfg, keep_weights=keep_weights)
        return None
    return cfg, study


def cmd_confirm(args) -> None:
    from hpsearch import confirmation

    opened = _replicate_run(args, keep_weights=True)
    if opened is not None:
        cfg, study = opened
        top = args.top if args.top is not None else (0 if args.trial else 3)
        trials = confirmation.select(study, cfg.spec, top, args.trial)
        confirmation.confirm(cfg, study, trials, args.seeds, args.argv, epochs=args.epochs)


def cmd_ablate(args) -> None:
    from hpsearch import ablation

    opened = _replicate_run(args, keep_weights=False)
    if opened is not None:
        cfg, study = opened
        baseline, target = ablation.endpoints(cfg.spec, study, args.to, sys.stdout)
        ablation.ablate(
            cfg, study, baseline, target, method=args.method, seeds=args.seeds, argv=args.argv, epochs=args.epochs
        )


def cmd_create(args) -> None:
    """Create the study with its baseline queued as trial 0, training nothing; a study that
    exists already is checked and left as it is."""
    from hpsearch import registry, runner, space, storage
    from hpsearch.progress import plural
    from hpsearch.study import open_study

    spec = registry.get(args.study)
    url = storage.resolve_url(args.storage)
    fixed = space.parse_fixed(args.fixed, spec.space, spec.name)
    made = []

    def on_create(study) -> None:
        runner.enqueue_baseline(study, spec, fixed)
        made.append(study)

    study = open_study(spec, url, args.study_name or spec.name, create=True, on_create=on_create)
    where = f"study {study.study_name} ({spec.name}) in {storage.mask(url)}"
    if made:
        print(f"created {where}; trial 0 queued: {runner.baseline_label(spec, fixed)}")
    else:
        print(f"{where} exists already, with {plural(len(study.get_trials(deepcopy=False)), 'trial')}; left as it is")


def cmd_list(args) -> None:
    from hpsearch import registry
    from hpsearch.progress import format_table

    if args.study:
        print(study_details(registry.get(args.study)))
        return
    rows = [("study", "dataset", "model family", "metric", "direction", "epochs")]
    rows += [
        (s.name, s.dataset, s.model_family, s.metric, s.direction, str(s.max_epochs))
        for s in registry.all_specs().values()
    ]
    print(format_table(rows))


def cmd_show(args) -> None:
    from optuna.trial import TrialState

    from hpsearch import registry, storage
    from hpsearch.progress import format_table, format_value
    from hpsearch.study import epochs_trained, open_study

    spec = registry.get(args.study)
    url = storage.resolve_url(args.storage)
    study = open_study(spec, url, args.study_name or spec.name, run_as=args.study)
    trials = study.get_trials(deepcopy=False)
    order = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)
    counts = ", ".join(f"{state.name} {sum(t.state == state for t in trials)}" for state in order)
    print(f"study {study.study_name} ({spec.name}) in {storage.mask(url)}: {spec.direction} {spec.metric}")
    print(f"trials: {len(trials)} ({counts})")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        print("no complete trial yet")
        return
    best = study.best_trial
    print(f"best value: {best.value:.4f} (trial {best.number})")
    print("best params: " + " ".join(f"{k}={format_value(v)}" for k, v in best.params.items()))
    ranked = sorted(complete, key=lambda t: t.value, reverse=spec.direction == "maximize")[: args.top]
    keys = sorted({k for t in ranked for k in t.params})
    rows = [("trial", "value", "epochs", "seconds", *keys)]
    for t in ranked:
        seconds = f"{t.duration.total_seconds():.1f}" if t.duration else ""
        rows.append(
            (
                str(t.number),
                f"{t.value:.4f}",
                str(epochs_trained(t)),
                seconds,
                *(format_value(t.params[k]) if k in t.params else "-" for k in keys),
            )
        )
    print(f"top {len(ranked)}:")
    print(format_table(rows))


def study_details(spec: StudySpec) -> str:
    """What ``hpsearch list STUDY`` and ``hpsearch run STUDY --help`` say about a study."""
    from hpsearch import space
    from hpsearch.progress import format_table, format_value, plural

    rows = [("parameter", "values", "baseline", "only when")]
    for param in space.parameters(spec.space):
        when = " and ".join(
            f"{name}={_alternatives([format_value(v) for v in values])}" for name, values in param.only_when.items()
        )
        baseline = format_value(spec.baseline[param.name]) if param.name in spec.baseline else "-"
        rows.append((param.name, _values(param.distribution), baseline, when))
    fixed = ", ".join(f"{k}={format_value(v)}" for k, v in spec.training_fixed.items())
    return "\n".join(
        [
            f"{spec.name}: {spec.description}",
            f"{spec.direction} {spec.metric}; data {spec.dataset}; model {spec.model_family}; "
            f"up to {plural(spec.max_epochs, 'epoch')} a trial (--epochs)",
            "parameters (--set NAME=VALUE fixes one; the baseline is trial 0 of a new study):",
            format_table(rows),
            *([f"fixed training settings: {fixed}"] if fixed else []),
            f"baseline: {spec.baseline_source}",
        ]
    )


def _values(dist) -> str:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from hpsearch.progress import format_value

    if isinstance(dist, CategoricalDistribution):
        return " | ".join(format_value(c) for c in dist.choices)
    kind = "float" if isinstance(dist, FloatDistribution) else "int"
    text = f"{kind} {format_value(dist.low)} .. {format_value(dist.high)}"
    if dist.step is not None and dist.step != 1:
        text += f" step {format_value(dist.step)}"
    return text + (", log" if dist.log else "")


def _alternatives(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def cmd_export(args) -> None:
    from hpsearch import data, exporting, locations, registry, runner, storage
    from hpsearch.study import open_study

    spec = registry.get(args.study)
    url = storage.resolve_url(args.storage)
    study = open_study(spec, url, args.study_name or spec.name, run_as=args.study)
    device = runner.resolve_device(args.device)
    root = locations.data_dir(args.data_dir)
    search_data = None
    if args.retrain:
        search_data = data.load(
            spec.dataset,
            device,
            root,
            val_fraction=spec.val_fraction,
            train_csv=Path(args.train_csv) if args.train_csv else None,
            standardize=spec.standardize,
        )
    exporting.export(
        spec,
        study,
        out=Path(args.out),
        storage_url=url,
        store_dir=storage.artifacts_dir(url, args.artifacts),
        trial_number=args.trial,
        retrain_on=search_data,
        device=device,
        score_root=root if args.score else None,
    )


def cmd_evaluate(args) -> None:
    from hpsearch import exporting, locations, runner

    exporting.evaluate(
        Path(args.checkpoint),
        root=locations.data_dir(args.data_dir),
        csv=Path(args.csv) if args.csv else None,
        device=runner.resolve_device(args.device),
        study_file=Path(args.study) if args.study else None,
    )


def cmd_report(args) -> None:
    from hpsearch import registry, report, storage
    from hpsearch.study import open_study

    spec = registry.get(args.study)
    study = open_study(spec, storage.resolve_url(args.storage), args.study_name or spec.name, run_as=args.study)
    path = report.write_report(study, spec, Path(args.out))
    print(f"wrote {path}")


def cmd_dashboard(args) -> None:
    from hpsearch import dashboard, storage

    url = storage.resolve_url(args.storage)
    dashboard.serve(
        url, storage.artifacts_dir(url, args.artifacts), host=args.host, port=args.port, study_name=args.study_name
    )


COMMANDS = {
    "dashboard": cmd_dashboard,
    "run": cmd_run,
    "create": cmd_create,
    "confirm": cmd_confirm,
    "ablate": cmd_ablate,
    "list": cmd_list,
    "show": cmd_show,
    "export": cmd_export,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
}
