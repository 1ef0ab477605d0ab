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
    study_file    {"path", "sha256"} of the study file, imported to rebuild a model, or to
                  read the test split of a dataset, that it registers
    metrics       {"val_...": value, "test_...": value or None}
    versions      torch, torchvision, optuna, hpsearch

``hpsearch.train.build_model(name, kwargs, state_dict=...)`` rebuilds the model with no study
database; a model that the study file itself registers is rebuilt by importing that file
first (``rebuild``), and a dataset that it registers is found the same way (``dataset``).
The ``.pt2`` program beside it needs no model code at all (``hpsearch.program``).
"""

from __future__ import annotations

import codecs
import hashlib
import pickle
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import optuna
import torch
import torchvision
from torch import nn

import hpsearch
from hpsearch import data as datasets
from hpsearch import models, tasks
from hpsearch.atomic import replacing
from hpsearch.errors import UsageError, first_line
from hpsearch.train import build_model, evaluate

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
    study_file: Path | None = None,
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
        "task": spec.task.name,
        "noise_sigma": noise_sigma,
        "dataset": spec.dataset,
        "metric": spec.metric,
        "normalization": {"mean": list(mean), "std": list(std)},
        "classes": list(info.classes),
        "metrics": {spec.metric: trial.value, spec.task.test_metric: None},
        "study_file": {"path": str(study_file), "sha256": file_hash(study_file)} if study_file else None,
        "versions": {
            "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__),
            "optuna": str(optuna.__version__),
            "hpsearch": str(hpsearch.__version__),
        },
    }


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(checkpoint: dict[str, Any], path: Path) -> Path:
    """Write atomically: a failure leaves no half-written file at ``path``."""
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    with replacing(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def load(path: Path) -> dict[str, Any]:
    """Load and check a checkpoint. Raises UsageError (one line, no traceback) for any file that
    is not an intact hpsearch checkpoint: missing, empty, text or a CSV, truncated or damaged,
    foreign, edited, or one that would run code when unpickled (that code never runs)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file; write one with 'hpsearch export'")
    checkpoint = _unpickle(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UsageError(_refusal(path, f"it has no {FORMAT!r} marker"))
    missing = [k for k in REQUIRED if k not in checkpoint]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}: the file was edited; export it again")
    if checkpoint["task"] not in tasks.TASKS:
        raise UsageError(f"{path} is for an unknown task {checkpoint['task']!r}: the file was edited; export it again")
    try:
        intact = weights_hash(checkpoint["state_dict"]) == checkpoint["sha256"]
    except Exception:  # weights that are not tensors by name were edited too
        intact = False
    if not intact:
        raise UsageError(f"{path}: the weights do not match their sha256: the file was edited; export it again")
    return checkpoint


_HEAD_BYTES = 1 << 16  # enough for a few rows of a 785-column CSV
_NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_NOT_TORCH = "not a zip archive written by torch.save"


def _unpickle(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``, or UsageError (one line) saying what the file is
    instead. Never raises anything else, whatever the file holds.

    The file is classified by its own bytes first, because torch.load's errors on foreign input
    are accidents of its parser (KeyError, IndexError, or a weights_only refusal that calls
    random bytes "pickled code"). torch.save writes a zip archive (before torch 1.6: a pickle,
    first byte 0x80); anything else is refused without unpickling it."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or first_line(exc)}") from None
    archive = _zip_names(path)
    if archive is None and head.startswith(b"PK\x03\x04"):
        raise UsageError(
            f"{path} is a truncated or damaged checkpoint (its zip archive is incomplete); export it again"
        )
    if archive is None and not head.startswith(b"\x80"):
        raise UsageError(_not_a_checkpoint(path, head))
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle headers: the refusal is the one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's parsers raise most anything on hostile bytes
        code = re.search(r"GLOBAL ([\w.]+)", str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if code:
            raise UsageError(
                f"{path} refused: it holds pickled code ({code.group(1)}), which hpsearch never runs; "
                "only checkpoints written by 'hpsearch export' load"
            ) from None
        if archive is None:
            raise UsageError(_refusal(path, f"it is {_NOT_TORCH}")) from None
        # torch.save's archive always holds ARCHIVE_NAME/data.pkl, the pickle that names the tensors.
        if not any(name.endswith("/data.pkl") for name in archive):
            raise UsageError(_refusal(path, "it is a zip archive, but not one written by torch.save")) from None
        raise UsageError(f"{path} is a damaged checkpoint (torch cannot read its contents); export it again") from None


def _refusal(path: Path, why: str) -> str:
    return f"{path} is not an hpsearch checkpoint: {why}; export one with 'hpsearch export'"


def _zip_names(path: Path) -> list[str] | None:
    """The names in the zip archive at ``path``; None when it is no complete, readable zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except Exception:  # zipfile raises more than BadZipFile on a damaged directory
        return None


def _not_a_checkpoint(path: Path, head: bytes) -> str:
    """The refusal for a file that is neither a zip archive nor a pickle, from its first bytes."""
    if not head:
        return _refusal(path, "the file is empty")
    try:
        # Not final: the head may end inside a multi-byte character.
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return _refusal(path, f"it is {_NOT_TORCH}")
    if _CONTROL.search(text):
        return _refusal(path, f"it is {_NOT_TORCH}")
    if _looks_like_csv(text, cut=len(head) == _HEAD_BYTES):
        return f"{path} looks like a CSV, not a checkpoint; score a CSV with: hpsearch evaluate CHECKPOINT --csv {path}"
    return _refusal(path, f"it looks like text, {_NOT_TORCH}")


def _looks_like_csv(text: str, *, cut: bool) -> bool:
    """Whether ``text`` is rows of two or more comma-separated numbers, under an optional header
    row (``cut``: the text stops mid-file, so its last line may be partial and is not judged)."""
    rows = [line for line in text.splitlines()[: -1 if cut else None] if line.strip()]
    if rows and "," in rows[0] and not _NUMBER.match(rows[0].split(",", 1)[0]):
        rows = rows[1:]
    return bool(rows) and all(len(cells := row.split(",")) > 1 and all(map(_NUMBER.match, cells)) for row in rows)


def rebuild(checkpoint: dict[str, Any], study_file: Path | None = None, out=None) -> nn.Module:
    """The model, from the checkpoint alone, or, for a model that its study file registers,
    after importing that file: ``study_file`` where it has moved, else the path the
    checkpoint names. A file changed since the export is said in one line on ``out``."""
    spec = checkpoint["model"]
    if spec.get("name") not in models.names():
        what = f"checkpoint model {spec.get('name')!r}"
        _import_study_file(checkpoint, study_file, out or sys.stderr, what, _OR_PROGRAM)
    try:
        model = build_model(spec["name"], spec["kwargs"], state_dict=checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        first = first_line(exc)
        raise UsageError(
            f"checkpoint model {spec.get('name')!r} cannot be rebuilt ({first}); export it again"
        ) from None
    return model.eval()


def dataset(checkpoint: dict[str, Any], study_file: Path | None = None, out=None) -> datasets.DatasetInfo:
    """The checkpoint's dataset (or a program's: its metadata is a checkpoint's): a packaged
    one, or, for a dataset that the study file registers, the one registered by importing
    that file, as ``rebuild`` imports it (``study_file`` where it has moved)."""
    name = checkpoint["dataset"]
    if name not in datasets.DATASETS:
        _import_study_file(checkpoint, study_file, out or sys.stderr, f"dataset {name!r}")
        if name not in datasets.DATASETS:
            path = study_file or (checkpoint.get("study_file") or {}).get("path")
            raise UsageError(
                f"the study file {path} registers no dataset {name!r}: give the study file that does with --study PATH"
            )
    return datasets.DATASETS[name]


# Where a checkpoint's model cannot be rebuilt, the program beside it still scores.
_OR_PROGRAM = ", or score the .pt2 program written beside the checkpoint"


def _import_study_file(checkpoint: dict[str, Any], given: Path | None, out, what: str, alternative: str = "") -> None:
    """Import the study file that registers ``what`` (the model, or the dataset, of the
    checkpoint): ``given``, else the path the checkpoint names. UsageError (one line) where
    there is none, ending with the ``alternative`` to it."""
    from hpsearch import registry

    named = checkpoint.get("study_file") or {}
    path = Path(given or named.get("path") or "")
    if not named and given is None:
        raise UsageError(
            f"{what} is not one of hpsearch's and the checkpoint names no study file; give it with --study PATH"
            + alternative
        )
    if not path.is_file():
        raise UsageError(
            f"{what} is registered by the study file {path}, which is not there: give its new place with "
            "--study PATH" + alternative
        )
    if named.get("sha256") and file_hash(path) != named["sha256"]:
        print(f"note: the study file {path} changed since the export; it is imported as it is", file=out)
    registry.get(str(path))


def score(
    checkpoint: dict[str, Any], model: nn.Module, raw: datasets.RawSplit, device: torch.device
) -> tuple[float, list[tuple[str, int, float]]]:
    """The checkpoint's metric on ``raw`` and a per-class table (class, count, metric), by the
    trainer's own ``evaluate``, on the images normalised as the checkpoint was trained."""
    norm = checkpoint["normalization"]
    split = datasets.to_split(raw.images, raw.labels, norm["mean"], norm["std"], device)
    model = model.to(device).to(memory_format=torch.channels_last)
    per_example, _ = evaluate(model, split, tasks.get(checkpoint["task"]), checkpoint["noise_sigma"])
    values, labels = per_example.cpu(), raw.labels.cpu()
    classes = checkpoint["classes"] or [str(c) for c in range(int(labels.max()) + 1)]
    table = [
        (name, int((labels == c).sum()), float(values[labels == c].mean()))
        for c, name in enumerate(classes)
        if (labels == c).any()
    ]
    return float(values.mean()), table
