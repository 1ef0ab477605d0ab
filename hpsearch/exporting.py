"""``hpsearch export`` and ``hpsearch evaluate``: from a stored trial to a checkpoint, and
from a checkpoint alone to a test score."""

from __future__ import annotations

import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import optuna
import torch
from optuna.trial import TrialState

from hpsearch import checkpoint as ckpt
from hpsearch import confirmation as confirmations
from hpsearch import data as datasets
from hpsearch import program, registry, tasks, weights
from hpsearch.errors import UsageError, first_line
from hpsearch.progress import format_spread
from hpsearch.readers.fashion_csv import read_csv
from hpsearch.spec import StudySpec
from hpsearch.storage import artifact_store, open_storage
from hpsearch.train import build_model, fit


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    """The best trial, or trial ``number``; it must be COMPLETE."""
    if number is None:
        try:
            return study.best_trial
        except ValueError:
            raise UsageError(f"study {study.study_name!r} has no complete trial yet; run it first") from None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise UsageError(f"study {study.study_name!r} has no trial {number} (trials 0 to {len(trials) - 1})")
    if trials[number].state != TrialState.COMPLETE:
        raise UsageError(
            f"trial {number} is {trials[number].state.name}, not COMPLETE: it has no final model to export"
        )
    return trials[number]


def retrain(
    spec: StudySpec, trial: optuna.trial.FrozenTrial, data: datasets.SearchData, device, out: TextIO | None = None
) -> dict:
    """Train the trial's configuration afresh on train + validation for its best epoch count,
    printing a line per epoch (a retrain can take as long as the trial did)."""
    full = datasets.Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))
    # fit() still scores a validation split each epoch; with the validation images inside the
    # training set that score means nothing and is not used: the checkpoint keeps the search's.
    data = replace(data, train=full)
    attrs = trial.user_attrs
    model = build_model(attrs["model"], attrs["model_kwargs"], seed=attrs["seed"], device=device)
    # In the trial's own precision: a trial searched before --precision existed trained in fp32.
    recipe = spec.recipe(
        _params(spec, trial), epochs=attrs["best_epoch"], seed=attrs["seed"], precision=attrs.get("precision", "fp32")
    )
    out = out or sys.stdout
    print(
        f"retraining trial {trial.number} on {len(full)} train + validation images for {recipe.epochs} epochs "
        f"on {device}, {recipe.precision}",
        file=out,
        flush=True,
    )

    def progress(result) -> None:
        print(
            f"  retrain epoch {result.epoch}/{recipe.epochs}: loss {result.train_loss:.4f}  {result.seconds:.1f}s",
            file=out,
            flush=True,
        )

    fit(model, data, recipe, progress)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _params(spec: StudySpec, trial: optuna.trial.FrozenTrial) -> dict:
    """The space's parameter dict for a stored trial (what the objective saw)."""
    return spec.space(optuna.trial.FixedTrial(trial.params, trial.number))


def export(
    spec: StudySpec,
    study: optuna.Study,
    *,
    out: Path,
    storage_url: str,
    store_dir: Path,
    trial_number: int | None = None,
    retrain_on: datasets.SearchData | None = None,
    device: torch.device | str = "cpu",
    score_root: Path | None = None,
    stdout: TextIO | None = None,
) -> dict:
    """Write the checkpoint of the best (or given) trial to ``out`` and return it.

    The weights are the trial's stored best-epoch weights, or, with ``retrain_on`` (the
    search data), a fresh training on train + validation. With ``score_root`` the
    checkpoint is also scored on the dataset's official test split there.
    """
    device = torch.device(device)
    out_stream = stdout or sys.stdout
    confirmation = confirmations.stored(study) if trial_number is None else None
    if confirmation is not None:
        trial_number = confirmation["best"]
        row = next(r for r in confirmation["rows"] if r["trial"] == trial_number)
        print(
            f"exporting trial {trial_number}, the confirmed best: {spec.metric} {format_spread(row)} over "
            f"{row['n']} seeds (its single run: {row['value']:.4f})",
            file=out_stream,
        )
    elif trial_number is None:
        print("exporting the best single trial: not confirmed over seeds yet ('hpsearch confirm')", file=out_stream)
    trial = pick_trial(study, trial_number)
    store, storage = artifact_store(store_dir), open_storage(storage_url)
    if retrain_on is not None:
        state = retrain(spec, trial, retrain_on, device, stdout)
    else:
        state = weights.stored_weights(trial, store, storage)
        if state is None:
            raise UsageError(
                f"trial {trial.number} kept no weights in {store_dir} (only the best few trials keep them): "
                "pass --retrain to train its configuration again"
            )
    recipe = spec.recipe(_params(spec, trial), epochs=1, seed=0)
    checkpoint = ckpt.build(
        state_dict=state,
        model_name=trial.user_attrs["model"],
        model_kwargs=trial.user_attrs["model_kwargs"],
        spec=spec,
        study_name=study.study_name,
        trial=trial,
        noise_sigma=recipe.noise_sigma,
        study_file=registry.source(spec),
    )
    if retrain_on is not None:
        checkpoint["retrained_on"] = "train+validation"
    test_metric = spec.task.test_metric
    if score_root is not None:
        test = datasets.read(spec.dataset, "test", score_root)
        checkpoint["metrics"][test_metric] = ckpt.score(checkpoint, ckpt.rebuild(checkpoint), test, device)[0]
        confirmed = next(
            (r for r in (confirmations.stored(study) or {}).get("rows", []) if r["trial"] == trial.number), None
        )
        seeds = _score_replicates(spec, study.study_name, storage, store, trial, confirmed, checkpoint, test, device)
        if seeds is not None:
            checkpoint["seeds"] = seeds
            print(
                f"{test_metric} of the {seeds['n']} seeds' weights: {format_spread(seeds)}"
                f" (seeds {', '.join(map(str, seeds['seeds']))}); the exported weights: "
                f"{checkpoint['metrics'][test_metric]:.4f}",
                file=out_stream,
            )
    ckpt.save(checkpoint, out)
    print(
        f"wrote {out}: trial {trial.number} of {study.study_name}, "
        + ", ".join(f"{k} {v:.4f}" for k, v in checkpoint["metrics"].items() if v is not None),
        file=out_stream,
    )
    _write_program(checkpoint, Path(out).with_suffix(".pt2"), out_stream)
    return checkpoint


def _write_program(checkpoint: dict, path: Path, out: TextIO) -> None:
    """The torch.export program beside the checkpoint; a model torch.export cannot trace
    costs only the program, said in one line."""
    shape = datasets.DATASETS[checkpoint["dataset"]].image_shape
    if shape is None:
        print(f"no {path}: dataset {checkpoint['dataset']} declares no image_shape, the program's input", file=out)
        return
    try:
        program.write(ckpt.rebuild(checkpoint), checkpoint, torch.rand(2, *shape), path)
    except Exception as exc:  # torch.export's failures are many kinds of exception
        print(f"no {path}: torch.export could not trace {checkpoint['model']['name']} ({first_line(exc)})", file=out)
        return
    print(
        f"wrote {path}: the model as a torch.export program (fp32, any batch size), scored with no model code", file=out
    )


def _score_replicates(spec, study_name, storage, store, trial, confirmed, checkpoint, test, device) -> dict | None:
    """The test metric of each replicate of ``trial`` that kept its weights: mean, std, n,
    seeds and values; None where there is no such replicate. ``confirmed``, the trial's row
    of the stored confirmation, says which replicates: its epochs and its training (``data``:
    a subset, a CSV, bf16); without one, those of the trial's own budget on the whole split."""
    from hpsearch import replicates

    try:
        rstudy = optuna.load_study(study_name=replicates.study_name(study_name), storage=storage)
    except KeyError:
        return None
    values, seeds = [], []
    config = replicates.of_trial(spec, trial, *((confirmed["epochs"], confirmed.get("data", "")) if confirmed else ()))
    for replicate in replicates.complete_replicates(rstudy, config):
        state = weights.stored_weights(replicate, store, storage)
        if state is None:
            continue
        attrs = replicate.user_attrs
        model = build_model(attrs["model"], attrs["model_kwargs"], state_dict=state)
        values.append(ckpt.score(checkpoint, model, test, device)[0])
        seeds.append(replicate.user_attrs["seed"])
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "seeds": seeds, "values": values}


def evaluate(
    path: Path,
    *,
    root: Path | None,
    csv: Path | None,
    device: torch.device,
    study_file: Path | None = None,
    stdout: TextIO | None = None,
) -> float:
    """Score the checkpoint at ``path`` (or the ``.pt2`` program beside it) on its dataset's
    official test split (or on a CSV of the fashion-resnet form) and print the metric and a
    per-class table. A model or a dataset that the study file registers is found by
    importing that file, for a program too (``checkpoint.dataset``); ``study_file``: where
    that file is now, when it has moved."""
    out = stdout or sys.stdout
    if Path(path).suffix == ".pt2":
        model, checkpoint = program.load(path)
    else:
        checkpoint = ckpt.load(path)
        model = ckpt.rebuild(checkpoint, study_file, out)
    # A dataset of the study file's own is read by the reader that file registers.
    info = ckpt.dataset(checkpoint, study_file, out)
    if csv is not None:
        if info.image_shape != (1, 28, 28):
            raise UsageError(
                f"--csv holds 1x28x28 images, but {path} was trained on {checkpoint['dataset']}: use --data-dir"
            )
        raw = read_csv(csv, num_classes=len(checkpoint["classes"]), classes=checkpoint["classes"])
        source = str(csv)
    else:
        raw = datasets.read(checkpoint["dataset"], "test", root)
        source = f"{checkpoint['dataset']} test split in {root}"
    value, table = ckpt.score(checkpoint, model, raw, device)
    metric = tasks.get(checkpoint["task"]).test_metric
    print(
        f"{path}: {checkpoint['model']['name']} from trial {checkpoint.get('trial')} of {checkpoint.get('study')}",
        file=out,
    )
    print(f"{metric} {value:.4f} on {len(raw.labels)} images ({source})", file=out)
    width = max(len("class"), *(len(name) for name, _, _ in table))  # the header's too: classes "0".."9"
    print(f"{'class'.ljust(width)}  {'n':>6}  {metric}", file=out)
    for name, count, class_value in table:
        print(f"{name.ljust(width)}  {count:>6}  {class_value:.4f}", file=out)
    return value
