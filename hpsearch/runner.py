"""``hpsearch run`` in one process: the run's settings, the study created or resumed with
the baseline enqueued, the trainer, and the search loop.

torch is imported only for studies that train a torch model (``hpsearch.trainer``); a study
that brings its own trainer (``StudySpec.trainer``) runs without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import optuna

from hpsearch import storage
from hpsearch.algorithms import make_pruner, make_sampler
from hpsearch.errors import UsageError
from hpsearch.notes import StudyNote
from hpsearch.objective import Objective, Trainer
from hpsearch.progress import Progress
from hpsearch.search import search
from hpsearch.spec import StudySpec
from hpsearch.storage import HEARTBEAT_SECONDS
from hpsearch.study import open_study

DEFAULT_KEEP = 3  # best-epoch weights kept for the K best complete trials


@dataclass
class RunConfig:
    spec: StudySpec
    trials: int
    storage_url: str
    study_name: str
    epochs: int
    sampler: str
    pruner: str
    device: Any  # a torch.device; None for a study with its own trainer
    data_root: Path
    seed: int | None = None
    subset: int | None = None
    timeout: float | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    train_csv: Path | None = None
    artifacts: Path = Path("hpsearch-artifacts")
    keep_weights: int = DEFAULT_KEEP
    heartbeat: int = HEARTBEAT_SECONDS  # seconds between a running trial's heartbeats
    jobs: int = 1  # worker processes sharing the study on this host
    worker: int = 0  # this process's index among them
    precision: str = "fp32"  # fp32 | bf16, resolved for the device (``hpsearch.precision.resolve``)


def resolve_device(text: str):
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    import torch

    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UsageError(f"--device {text}: no CUDA GPU is visible here; use --device cpu (or auto)")
        if (device.index or 0) >= count:
            raise UsageError(f"--device {text}: only {count} GPU(s) visible (cuda:0 to cuda:{count - 1})")
    elif device.type != "cpu":
        raise UsageError(f"--device {text!r}: use auto, cpu, cuda or cuda:N")
    return device


def make_trainer(cfg: RunConfig, device: str | None = None) -> Trainer:
    """The study's trainer; for torch studies this loads the data (on ``device``, else
    ``cfg.device``), so missing data is found before anything is written to the storage."""
    if cfg.spec.trainer is not None:
        return cfg.spec.trainer(cfg)
    from hpsearch.trainer import TorchTrainer

    return TorchTrainer(cfg, device)


def prepare(cfg: RunConfig, device: str | None = None) -> tuple[Trainer, optuna.Study]:
    """The storage checked, the trainer (data), then the study, created or loaded; the
    process that creates a study enqueues the baseline as its first trial, once.

    The storage is opened first, so a typo in its URL or a folder that cannot be written is
    said before the data loads; the study is created after, so that missing data leaves
    nothing in the storage."""
    storage.check(cfg.storage_url)
    trainer = make_trainer(cfg, device)
    # Each worker seeds its sampler differently, or K workers would propose the same trials.
    seed = None if cfg.seed is None else cfg.seed + cfg.worker
    study = open_study(
        cfg.spec,
        cfg.storage_url,
        cfg.study_name,
        create=True,
        sampler=make_sampler(cfg.sampler, seed, cfg.fixed, cfg.spec.baseline),
        pruner=make_pruner(cfg.pruner, cfg.epochs, getattr(trainer, "images_per_epoch", None)),
        heartbeat=cfg.heartbeat,
        on_create=lambda new: enqueue_baseline(new, cfg.spec, cfg.fixed),
        steps="images" if getattr(trainer, "images_per_epoch", None) else "epochs",
    )
    return trainer, study


def enqueue_baseline(study: optuna.Study, spec: StudySpec, fixed: dict[str, Any]) -> None:
    """Queue the study's baseline, with the ``--set`` values ``fixed``, as the next trial."""
    study.enqueue_trial({**spec.baseline, **fixed}, user_attrs={"baseline": baseline_label(spec, fixed)})


def baseline_label(spec: StudySpec, fixed: dict[str, Any]) -> str:
    """What trial 0 is: the study's baseline, and any ``--set`` value that changed it (trial 0
    is then no longer the report's configuration, and says so wherever it is shown)."""
    changed = {k: v for k, v in fixed.items() if k not in spec.baseline or spec.baseline[k] != v}
    if not changed:
        return spec.baseline_source
    return f"{spec.baseline_source}; changed by --set: " + ", ".join(f"{k}={v}" for k, v in changed.items())


def run(cfg: RunConfig, out: TextIO | None = None, detail: str = "epoch") -> optuna.Study:
    """Run ``cfg.spec`` until the study holds ``cfg.trials`` finished trials (or the timeout);
    see ``hpsearch.search.search`` for what may be raised. Rerunning after an interruption
    continues: finished trials are kept and counted. ``detail``: what it prints (``Progress``)."""
    trainer, study = prepare(cfg)
    progress = Progress(cfg, out, detail=detail)
    progress.header(study, trainer.summary)
    search(cfg, study, Objective(cfg, trainer, progress), progress, [StudyNote(cfg.spec)])
    return study
