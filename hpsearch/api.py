"""hpsearch from Python: the functions behind ``import hpsearch``, which the command line
calls too.

A study is named as on the command line (a registered name, or a study file's path) or
given as a ``StudySpec`` built in the caller's own code, a notebook's included. Each function
opens the same storage as the CLI (``storage=None``: ``$HPSEARCH_STORAGE``, else
``sqlite:///hpsearch.db`` in the working directory), with the same defaults and the same
guarantees: ``run`` ends with exactly ``n_trials`` finished trials, a rerun continues where
an interrupted one stopped, and Ctrl-C (or SIGTERM) raises ``KeyboardInterrupt`` once the
study is consistent: the trial in training is stored as failed and queued again, nothing
finished is lost. Bad input raises ``UsageError`` (one line naming the problem and the fix)
before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpsearch import interrupts
from hpsearch.algorithms import DEFAULT_PRUNER, DEFAULT_SAMPLER
from hpsearch.errors import UsageError
from hpsearch.spec import StudySpec

if TYPE_CHECKING:
    import torch

    from hpsearch.runner import RunConfig

StudyLike = str | os.PathLike | StudySpec
PROGRESS = ("epoch", "trial", "none")


def run(
    study: StudyLike,
    n_trials: int,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int | None = None,
    sampler: str = DEFAULT_SAMPLER,
    pruner: str = DEFAULT_PRUNER,
    seed: int | None = None,
    fixed: dict[str, Any] | None = None,
    timeout: float | None = None,
    device: str = "auto",
    precision: str = "auto",
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    keep_weights: int | None = None,
    progress: str = "trial",
) -> optuna.Study:
    """Search ``study`` until its stored study holds ``n_trials`` finished trials (or
    ``timeout`` seconds pass) and return it, as ``hpsearch run`` does. ``fixed`` fixes
    parameters (``{"optimizer": "adam"}``, as ``--set``). ``progress``: ``"trial"`` (the
    default) prints a line per finished trial with the best so far and the ETA; ``"epoch"``
    also each trial's start and epochs, as the command line does; ``"none"`` prints nothing."""
    from hpsearch import runner

    if progress not in PROGRESS:
        raise UsageError(f"progress={progress!r}: use one of {', '.join(map(repr, PROGRESS))}")
    spec = _spec(study)
    cfg = config(
        spec,
        n_trials,
        storage=storage,
        study_name=study_name,
        epochs=epochs,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        fixed=fixed,
        timeout=timeout,
        device=device,
        precision=precision,
        data_dir=data_dir,
        subset=subset,
        keep_weights=keep_weights,
    )
    with _as_a_library():
        return runner.run(cfg, detail=progress)


def confirm(
    study: StudyLike,
    *,
    top: int = 3,
    trials: Sequence[int] = (),
    seeds: int = 3,
    epochs: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
) -> dict[str, Any]:
    """Train the ``top`` best complete trials and ``trials`` again with ``seeds`` seeds each,
    as ``hpsearch confirm`` does; return the stored confirmation: ``best`` (the trial with
    the best mean) and ``rows`` (per trial: ``value``, its single run, and ``mean``, ``std``,
    ``n``, ``seeds``, ``epochs``), best mean first."""
    from hpsearch import confirmation
    from hpsearch.study import open_study

    spec = _spec(study)
    cfg = config(
        spec, 1, storage=storage, study_name=study_name, epochs=epochs, device=device, precision=precision,
        data_dir=data_dir, subset=subset,
    )  # fmt: skip
    with _as_a_library():
        stored = open_study(spec, cfg.storage_url, cfg.study_name, run_as=_named(study))
        chosen = confirmation.select(stored, spec, top, list(trials))
        return confirmation.confirm(cfg, stored, chosen, seeds, argv=[], epochs=epochs)


def export(
    study: StudyLike,
    out: str | os.PathLike,
    *,
    trial: int | None = None,
    score: bool = False,
    storage: str | None = None,
    study_name: str | None = None,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the checkpoint of the confirmed best trial (else the best single trial, or
    ``trial``) to ``out``, and its ``.pt2`` program beside it, as ``hpsearch export`` does;
    with ``score``, also score it on the official test split. Returns the checkpoint's path."""
    from hpsearch import exporting, locations, runner
    from hpsearch import storage as storages
    from hpsearch.study import open_study

    spec = _spec(study)
    url = storages.resolve_url(storage)
    with _as_a_library():
        stored = open_study(spec, url, study_name or spec.name, run_as=_named(study))
        exporting.export(
            spec,
            stored,
            out=Path(out),
            storage_url=url,
            store_dir=storages.artifacts_dir(url),
            trial_number=trial,
            device=runner.resolve_device(device),
            score_root=locations.data_dir(data_dir) if score else None,
        )
    return Path(out)


def load(path: str | os.PathLike, *, study_file: str | os.PathLike | None = None) -> torch.nn.Module:
    """The model of a checkpoint written by ``export``, rebuilt from the file alone (a ``.pt``;
    ``study_file`` where the study file that registers its model has moved) or a ``.pt2``
    program (no model code needed), in eval mode on the CPU with its trained weights."""
    from hpsearch import checkpoint, program

    if Path(path).suffix == ".pt2":
        model, _ = program.load(Path(path))
        return model
    return checkpoint.rebuild(checkpoint.load(Path(path)), Path(study_file) if study_file else None)


def config(
    spec: StudySpec,
    n_trials: int,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int | None = None,
    sampler: str = DEFAULT_SAMPLER,
    pruner: str = DEFAULT_PRUNER,
    seed: int | None = None,
    fixed: dict[str, Any] | Sequence[str] | None = None,
    timeout: float | None = None,
    device: str | None = "auto",
    precision: str = "auto",
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    keep_weights: int | None = None,
    train_csv: str | os.PathLike | None = None,
    artifacts: str | os.PathLike | None = None,
    heartbeat: int | None = None,
    jobs: int = 1,
) -> RunConfig:
    """The settings of a run, a confirmation or an ablation, checked (UsageError): what the
    command line and this module's functions share. ``fixed`` is a dict, or ``KEY=VALUE``
    words as ``--set`` gives them."""
    from hpsearch import locations, runner, space, workers
    from hpsearch import precision as precisions
    from hpsearch import storage as storages
    from hpsearch.objective import SEARCH_SEEDS

    if not isinstance(n_trials, int) or n_trials < 1:
        raise UsageError(f"n_trials={n_trials!r}: a whole number of at least 1")
    if seed is not None and not 0 <= seed < SEARCH_SEEDS:
        raise UsageError(f"seed={seed}: outside 0 to {SEARCH_SEEDS - 1} (2**31 - 1)")
    url = storages.resolve_url(storage)
    words = [f"{k}={v}" for k, v in fixed.items()] if isinstance(fixed, dict) else list(fixed or [])
    # A study with its own trainer trains no torch model: no device, and no torch import.
    resolved = runner.resolve_device(device) if spec.trainer is None else None
    return runner.RunConfig(
        spec=spec,
        trials=n_trials,
        storage_url=url,
        study_name=study_name or spec.name,
        epochs=epochs or spec.max_epochs,
        sampler=sampler,
        pruner=pruner,
        device=resolved,
        precision=precisions.resolve(precision, resolved, spec.allow_bf16) if resolved is not None else "fp32",
        data_root=locations.data_dir(data_dir),
        seed=seed,
        subset=subset,
        timeout=timeout,
        fixed=space.parse_fixed(words, spec.space, spec.name),
        train_csv=Path(train_csv) if train_csv else None,
        artifacts=storages.artifacts_dir(url, artifacts),
        keep_weights=runner.DEFAULT_KEEP if keep_weights is None else max(0, keep_weights),
        heartbeat=heartbeat or storages.HEARTBEAT_SECONDS,
        jobs=jobs,
        worker=workers.worker_index() or 0,
    )


def _spec(study: StudyLike) -> StudySpec:
    from hpsearch import registry

    return study if isinstance(study, StudySpec) else registry.get(os.fspath(study))


def _named(study: StudyLike) -> str:
    return study.name if isinstance(study, StudySpec) else os.fspath(study)


@contextlib.contextmanager
def _as_a_library() -> Iterator[None]:
    """What a call needs around it outside the command line: Ctrl-C and SIGTERM taken only
    where the study stays consistent (``hpsearch.interrupts``), and Optuna's own INFO lines
    and experimental-feature warnings kept out of the caller's output; all restored after."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with interrupts.installed(), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
