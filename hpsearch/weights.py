"""Trial weights as Optuna artifacts, with a keep-top-k policy.

Every complete trial offers the weights of its best epoch. They are stored (as
``weights.pt``, a plain state dict) only while the trial ranks among the study's ``keep``
best complete trials; a trial pushed out of the top ``keep`` has its file removed from the
artifact store, so disk use stays at ``keep`` models however long the search runs. The
artifact's metadata stays on the trial (Optuna does not delete it), so the dashboard lists
it; ``stored_weights`` tells whether the file is still there.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

FILENAME = "weights.pt"
DEFAULT_KEEP = 3


def _artifact_id(trial: FrozenTrial, storage: BaseStorage) -> str | None:
    metas = [m for m in get_all_artifact_meta(trial, storage=storage) if m.filename == FILENAME]
    return metas[-1].artifact_id if metas else None


def _exists(store: FileSystemArtifactStore, artifact_id: str) -> bool:
    try:
        store.open_reader(artifact_id).close()
        return True
    except ArtifactNotFound:
        return False


def stored_weights(trial: FrozenTrial, store: FileSystemArtifactStore, storage: BaseStorage) -> dict | None:
    """The trial's stored state dict (on the CPU), or None when it kept none. ``storage``
    holds the trial: Optuna's artifact listing needs it for a finished trial."""
    artifact_id = _artifact_id(trial, storage)
    if artifact_id is None or not _exists(store, artifact_id):
        return None
    with store.open_reader(artifact_id) as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def offer(
    trial: optuna.Trial, value: float, state: dict[str, torch.Tensor], store: FileSystemArtifactStore, keep: int
) -> bool:
    """Store ``state`` for the running ``trial`` if ``value`` ranks among the ``keep`` best
    complete trials, then remove the files of trials that fell out. Returns whether stored."""
    if keep <= 0:
        return False
    study = trial.study
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    kept = []
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        artifact_id = _artifact_id(other, trial.storage)
        if artifact_id is not None and _exists(store, artifact_id):
            kept.append((other.value, artifact_id))
    kept.sort(key=lambda item: item[0], reverse=maximize)
    if len(kept) >= keep and not (value > kept[keep - 1][0] if maximize else value < kept[keep - 1][0]):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILENAME
        torch.save({k: v.cpu() for k, v in state.items()}, path)
        # mimetypes would guess an SNES format for ".pt".
        upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/octet-stream"
        )
    for _, artifact_id in kept[keep - 1 :]:
        # Another worker that pushed the same trial out may have removed its file first.
        with contextlib.suppress(ArtifactNotFound):
            store.remove(artifact_id)
    return True
