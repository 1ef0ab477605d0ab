"""Checkpoints: a trial's model as plain data, safe to load and self-describing.

A checkpoint is one ``torch.save`` of a dict holding only tensors, strings, numbers, lists
and dicts, so it loads with ``torch.load(..., weights_only=True)`` (no pickled code runs):

    format        "hpsearch-checkpoint/1"
    model         {"name": registry name, "kwargs": constructor arguments}
    state_dict    the weights
    sha256        hash of the weights, to refuse a file edited after export
    study, spec, trial, params         where it came from
    task, noise_sigma, dataset, metric what it was trained for
    normalization {"mean": [...], "std": [...]}, applied to [0, 1] pixels
    classes       class names, by label
    metrics       {"val_...": value, "test_...": value or None}
    versions      torch, torchvision, optuna, hpsearch

``models.create(name, **kwargs)`` + ``load_state_dict`` rebuild the model with no study
database.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import optuna
import torch
import torchvision
from torch import nn

import hpsearch
import models
from hpsearch import data as datasets
from hpsearch import tasks
from hpsearch.atomic import replacing
from hpsearch.errors import UsageError, first_line

FORMAT = "hpsearch-checkpoint/1"
REQUIRED = ("model", "state_dict", "sha256", "task", "dataset", "normalization", "classes", "metrics")


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def build(
    *,
    state_dict: dict[str, torch.Tensor],
    model_name: str,
    model_kwargs: dict[str, Any],
    spec,
    study_name: str,
    trial: optuna.trial.FrozenTrial,
    noise_sigma: float,
) -> dict[str, Any]:
    info = datasets.DATASETS[spec.dataset]
    mean, std = datasets.normalization(spec.dataset, spec.standardize)
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return {
        "format": FORMAT,
        "model": {"name": model_name, "kwargs": model_kwargs},
        "state_dict": state,
        "sha256": weights_hash(state),
        "study": study_name,
        "spec": spec.name,
        "trial": trial.number,
        "params": dict(trial.params),
        "task": spec.task,
        "noise_sigma": noise_sigma,
        "dataset": spec.dataset,
        "metric": spec.metric,
        "normalization": {"mean": list(mean), "std": list(std)},
        "classes": list(info.classes),
        "metrics": {spec.metric: trial.value, tasks.get(spec.task).test_metric: None},
        "versions": {
            "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__),
            "optuna": str(optuna.__version__),
            "hpsearch": str(hpsearch.__version__),
        },
    }


def save(checkpoint: dict[str, Any], path: Path) -> Path:
    """Write atomically: a failure leaves no half-written file at ``path``."""
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    with replacing(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def load(path: Path) -> dict[str, Any]:
    """Load and check a checkpoint. Raises UsageError (one line) for a missing, truncated,
    foreign or edited file, or one that would run code when unpickled."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file; write one with 'hpsearch export'")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc, "unsafe content")
        if "weights_only" in first or "Unsupported global" in str(exc):
            first = "it holds pickled code, which hpsearch never runs"
        raise UsageError(f"{path} refused: {first}; only checkpoints written by 'hpsearch export' load") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = first_line(exc)
        raise UsageError(
            f"{path} is not a readable checkpoint (truncated or foreign: {first}); export it again"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UsageError(
            f"{path} is not an hpsearch checkpoint (no {FORMAT!r} marker); export one with 'hpsearch export'"
        )
    missing = [k for k in REQUIRED if k not in checkpoint]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}: the file was edited; export it again")
    if checkpoint["task"] not in tasks.TASKS:
        raise UsageError(f"{path} is for an unknown task {checkpoint['task']!r}: the file was edited; export it again")
    if weights_hash(checkpoint["state_dict"]) != checkpoint["sha256"]:
        raise UsageError(f"{path}: the weights do not match their sha256: the file was edited; export it again")
    return checkpoint


def rebuild(checkpoint: dict[str, Any]) -> nn.Module:
    """The model, from the checkpoint alone."""
    spec = checkpoint["model"]
    try:
        model = models.create(spec["name"], **spec["kwargs"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        first = first_line(exc)
        raise UsageError(
            f"checkpoint model {spec.get('name')!r} cannot be rebuilt ({first}); export it again"
        ) from None
    return model.eval()


@torch.inference_mode()
def score(
    checkpoint: dict[str, Any], model: nn.Module, raw: datasets.RawSplit, device: torch.device, batch_size: int = 2048
) -> tuple[float, list[tuple[str, int, float]]]:
    """The checkpoint's metric on ``raw`` and a per-class table (class, count, metric).

    Classification: accuracy. Denoising: MSE against the clean [0, 1]-scaled image of the
    image plus N(0, noise_sigma) noise (noise seeded, so scores repeat)."""
    norm = checkpoint["normalization"]
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    x = datasets.normalize(raw.images.to(device), norm["mean"], norm["std"]).contiguous(
        memory_format=torch.channels_last
    )
    y = raw.labels.to(device)
    task = tasks.get(checkpoint["task"])
    generator = torch.Generator(device=device).manual_seed(0)
    per_example = []
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        per_example.append(task.per_example(task.forward(model, xb, checkpoint["noise_sigma"], generator), xb, yb))
    values = torch.cat(per_example).double().cpu()
    labels = raw.labels.cpu()
    classes = checkpoint["classes"] or [str(c) for c in range(int(labels.max()) + 1)]
    table = [
        (name, int((labels == c).sum()), float(values[labels == c].mean()))
        for c, name in enumerate(classes)
        if (labels == c).any()
    ]
    return float(values.mean()), table
