"""The trainer of the torch studies: a trial's model built by name, trained by
``hpsearch.train.fit`` on device-resident data, its best weights offered to the keep-top-k
store. Running out of memory fails only the trial, after its memory is released."""

from __future__ import annotations

import functools
import gc

import optuna
import torch

from hpsearch import data as datasets
from hpsearch import weights
from hpsearch.errors import first_line
from hpsearch.objective import TrialContext, TrialOutOfMemory
from hpsearch.storage import artifact_store
from hpsearch.train import Diverged, build_model, fit


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
    """Loads the study's data onto ``device`` (else the run's) once; each call trains one trial."""

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
        self.images_per_epoch = len(self.data.train)  # trials report their steps in images seen
        self.chance = spec.task.chance(self.data.train.x, self.data.val.x, len(self.data.classes))
        self.summary = (
            f"{len(self.data.train)} train / {len(self.data.val)} validation images on {self.device}, {self.precision}"
        )

    def __call__(self, ctx: TrialContext) -> float:
        try:
            return self._train(ctx)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            message = f"out of memory: {first_line(exc)}"
        # Out here the exception and its traceback are gone, and with them the frames that
        # held the model, its optimizer state and the batch: free them before the next trial.
        release_memory(self.device)
        raise TrialOutOfMemory(message)

    def _train(self, ctx: TrialContext) -> float:
        spec, cfg, trial = self.cfg.spec, self.cfg, ctx.trial
        model_name, model_kwargs = spec.model(ctx.params)
        trial.set_user_attr("model", model_name)
        trial.set_user_attr("model_kwargs", model_kwargs)
        trial.set_user_attr("precision", self.precision)
        model = build_model(model_name, model_kwargs, seed=ctx.seed, device=self.device)
        trial.set_user_attr("n_params", sum(p.numel() for p in model.parameters()))
        ctx.model_text = str(model)
        recipe = spec.recipe(ctx.params, epochs=ctx.epochs, seed=ctx.seed, precision=self.precision)
        try:
            result = fit(model, self.data, recipe, _epochs_to(ctx), ctx.on_batch, ctx.checks, ctx.on_check)
        except Diverged as exc:
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        trial.set_user_attr("best_epoch", result.best_epoch)
        if cfg.keep_weights > 0 and result.best_state is not None:
            ctx.weights_kept = weights.offer(trial, result.best_value, result.best_state, self._store, cfg.keep_weights)
        return result.best_value

    @functools.cached_property
    def _store(self):
        # Made at the first weights kept, not before: bad input must leave nothing on disk.
        return artifact_store(self.cfg.artifacts)


def _epochs_to(ctx: TrialContext):
    return lambda result: ctx.on_epoch(result.epoch, result.value, result.train_loss, result.seconds, result.images)
