"""The trainer of the torch studies: a trial's model built by name, trained by
``hpsearch.train.fit`` on device-resident data, its best weights offered to the keep-top-k
store. Running out of memory fails only the trial, after its memory is released."""

from __future__ import annotations

import functools
import gc
from typing import Any

import optuna
import torch

from hpsearch import data as datasets
from hpsearch import models, tasks, weights
from hpsearch.errors import first_line
from hpsearch.objective import Report, TrialOutOfMemory
from hpsearch.storage import artifact_store
from hpsearch.train import Diverged, fit


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure (a plain RuntimeError)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class TorchTrainer:
    def __init__(self, cfg, device: torch.device | str | None = None):
        spec = cfg.spec
        self.cfg, self.device = cfg, torch.device(device) if device else cfg.device
        self.data = datasets.load(
            spec.dataset,
            self.device,
            cfg.data_root,
            subset=cfg.subset,
            val_fraction=spec.val_fraction,
            train_csv=cfg.train_csv,
            standardize=spec.standardize,
        )
        self.precision = cfg.precision
        self.chance = tasks.get(spec.task).chance(self.data.train.x, self.data.val.x, len(self.data.classes))
        self.summary = (
            f"{len(self.data.train)} train / {len(self.data.val)} validation images on {self.device}, {self.precision}"
        )

    def __call__(
        self, trial: optuna.Trial, params: dict[str, Any], seed: int, epochs: int, report: Report, facts: dict[str, Any]
    ) -> float:
        try:
            return self._train(trial, params, seed, epochs, report, facts)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            message = f"out of memory: {first_line(exc)}"
        # Out here the exception and its traceback are gone, and with them the frames that
        # held the model, its optimizer state and the batch: free them before the next trial.
        release_memory(self.device)
        raise TrialOutOfMemory(message)

    def _train(self, trial, params, seed, epochs, report, facts) -> float:
        spec, cfg = self.cfg.spec, self.cfg
        model_name, model_kwargs = spec.model(params)
        trial.set_user_attr("model", model_name)
        trial.set_user_attr("model_kwargs", model_kwargs)
        trial.set_user_attr("precision", self.precision)
        torch.manual_seed(seed)
        model = models.create(model_name, **model_kwargs).to(self.device)
        trial.set_user_attr("n_params", sum(p.numel() for p in model.parameters()))
        facts["model_text"] = str(model)
        try:
            result = fit(
                model,
                self.data,
                spec.recipe(params, epochs=epochs, seed=seed, precision=self.precision),
                lambda r: report(r.epoch, r.value, r.train_loss, r.seconds),
                report.batch,
            )
        except Diverged as exc:
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        trial.set_user_attr("best_epoch", result.best_epoch)
        if cfg.keep_weights > 0 and result.best_state is not None:
            facts["weights_kept"] = weights.offer(
                trial, result.best_value, result.best_state, self._store, cfg.keep_weights
            )
        return result.best_value

    @functools.cached_property
    def _store(self):
        # Made at the first weights kept, not before: bad input must leave nothing on disk.
        return artifact_store(self.cfg.artifacts)
