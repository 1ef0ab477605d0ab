"""Replicates: one configuration trained again with other seeds, unpruned, at a fixed epoch
budget, so that a value comes with its seed spread.

A search keeps the single best of many noisy trials and so overstates it (the winner's
curse); ``hpsearch confirm`` and ``hpsearch ablate`` compare means over replicates instead.

Replicates live in a sibling study of the search, ``<study>:replicates``, in the same
storage: the search study keeps exactly its N finished trials, and its sampler and pruner
never see a replicate, while optuna-dashboard and the optuna CLI show both studies. Each
replicate is an enqueued trial whose user attributes name its configuration (``config_id``,
a hash of the parameters and the epoch budget), its index, its seed and the epoch budget.
Replicate ``i`` of every configuration trains with seed ``SEED_BASE + i`` (2**31 + i):
comparisons between configurations are paired, and no replicate reuses a search trial's
seed, which is below 2**31 (``--seed S`` gives trial ``n`` the seed ``(S + n) mod 2**31``).
A rerun enqueues only what is missing, and ``--jobs`` workers share the waiting replicates
through the same loop as a search (heartbeats, Ctrl-C, a lost database: ``hpsearch.search``).
A command trains only the replicates it asked for: any that another command queued with
other settings and left waiting are set aside, never trained under this one's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import workers
from hpsearch.objective import REPLICATE_KEY, SEARCH_SEEDS, Objective, Surplus
from hpsearch.progress import Progress, format_duration, format_rate, plural
from hpsearch.search import search
from hpsearch.spec import StudySpec
from hpsearch.storage import MAX_RETRY
from hpsearch.study import FINISHED, count_finished, open_study

SUFFIX = ":replicates"
SEED_BASE = SEARCH_SEEDS  # replicate i trains with seed SEED_BASE + i, above every search seed
# Replicates of confirm keep their weights (export --score scores each); the disk this takes
# is the number of replicates times one model.
KEEP_ALL = 1_000_000


def study_name(search_study: str) -> str:
    return search_study + SUFFIX


def realize(spec: StudySpec, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as the space takes them: the suggested parameters only, in its order.
    Raises ValueError when the space needs a parameter that ``params`` lacks."""
    trial = optuna.trial.FixedTrial(params)
    spec.space(trial)
    return trial.params


@dataclass(frozen=True)
class Config:
    """A configuration to replicate: the space's parameters and the epochs it trains."""

    params: dict[str, Any]
    epochs: int
    label: str  # what asked for it first: "trial 12", "ablation: ... "
    data: str = ""  # the training data when not the study's whole split (``data_tag``)

    @property
    def id(self) -> str:
        key = {"params": self.params, "epochs": self.epochs, **({"data": self.data} if self.data else {})}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def data_tag(cfg) -> str:
    """What sets a run's training apart from fp32 on the dataset's own split (``--subset``,
    ``--train-csv``, ``--precision bf16``): replicates trained otherwise are other replicates."""
    parts = [f"subset {cfg.subset}"] if cfg.subset else []
    if cfg.train_csv:
        parts.append(f"csv {cfg.train_csv.resolve()}")
    if cfg.precision != "fp32":  # fp32 adds nothing, so replicates stored before --precision keep their ids
        parts.append(cfg.precision)
    return ", ".join(parts)


def epochs_of(trial: FrozenTrial) -> int:
    """The epoch budget a complete trial trained for (stored since replicates exist; for
    older trials, the epochs it reported: a complete trial runs all of them)."""
    return int(trial.user_attrs.get("epochs") or len(trial.intermediate_values))


def of_trial(spec: StudySpec, trial: FrozenTrial, epochs: int | None = None, data: str = "") -> Config:
    """The configuration of a stored trial, at ``epochs`` (default: the trial's own budget)."""
    return Config(realize(spec, trial.params), epochs or epochs_of(trial), f"trial {trial.number}", data)


@dataclass(frozen=True)
class Summary:
    """The finished replicates of one configuration."""

    config: Config
    values: tuple[float, ...]  # the complete replicates' values, by replicate index
    seeds: tuple[int, ...]
    diverged: int  # replicates that ended PRUNED (NaN or inf): no value

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation (n - 1); None below two values."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "diverged": self.diverged, "seeds": list(self.seeds)}


Key = tuple[str, int]  # (Config.id, replicate index): one replicate


def _key(trial: FrozenTrial) -> Key | None:
    attrs = trial.user_attrs
    return (attrs[REPLICATE_KEY], attrs["replicate"]) if REPLICATE_KEY in attrs else None


def open_replicates(cfg, *, create: bool) -> optuna.Study:
    """The replicate study beside ``cfg.study_name``; it never prunes."""
    return open_study(
        cfg.spec,
        cfg.storage_url,
        study_name(cfg.study_name),
        create=create,
        sampler=optuna.samplers.RandomSampler(),
        pruner=optuna.pruners.NopPruner(),
        heartbeat=cfg.heartbeat,
    )


def missing(study: optuna.Study, configs: Iterable[Config], seeds: int) -> list[tuple[Config, int]]:
    """The (configuration, replicate index) pairs below ``seeds`` that no trial covers yet
    (finished, running or waiting)."""
    covered = {_key(t) for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL}
    return [(c, i) for c in configs for i in range(seeds) if (c.id, i) not in covered]


def enqueue(study: optuna.Study, todo: list[tuple[Config, int]]) -> None:
    for config, index in todo:
        study.enqueue_trial(
            config.params,
            user_attrs={
                REPLICATE_KEY: config.id,
                "replicate": index,
                "seed": SEED_BASE + index,
                "epochs": config.epochs,
                "label": config.label,
                **({"data": config.data} if config.data else {}),
            },
        )


def _finished(study: optuna.Study) -> dict[str, dict[int, FrozenTrial]]:
    """The finished replicates by configuration id, then replicate index (the first of each)."""
    found: dict[str, dict[int, FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False, states=FINISHED):
        key = _key(trial)
        if key is not None:
            found.setdefault(key[0], {}).setdefault(key[1], trial)
    return found


def summaries(study: optuna.Study, configs: Iterable[Config]) -> dict[str, Summary]:
    """Every finished replicate of each configuration, by ``Config.id``."""
    found = _finished(study)
    result = {}
    for config in configs:
        trials = [t for _, t in sorted(found.get(config.id, {}).items())]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        result[config.id] = Summary(
            config,
            tuple(t.value for t in complete),
            tuple(t.user_attrs["seed"] for t in complete),
            sum(t.state == TrialState.PRUNED for t in trials),
        )
    return result


def complete_replicates(study: optuna.Study, config: Config) -> list[FrozenTrial]:
    """The complete replicate trials of ``config``, by replicate index."""
    by_index = sorted(_finished(study).get(config.id, {}).items())
    return [t for _, t in by_index if t.state == TrialState.COMPLETE]


def keys(configs: Iterable[Config], seeds: int) -> frozenset[Key]:
    """The replicates a command asks for: replicate ``0 .. seeds - 1`` of each configuration."""
    return frozenset((c.id, i) for c in configs for i in range(seeds))


def unfinished(study: optuna.Study, own: frozenset[Key]) -> frozenset[Key]:
    """The replicates of ``own`` that no finished trial holds yet."""
    return own - {_key(t) for t in study.get_trials(deepcopy=False, states=FINISHED)}


def train(
    cfg, configs: list[Config], seeds: int, argv: list[str], *, keep_weights: bool, out: TextIO | None = None
) -> dict[str, Summary]:
    """Train the replicates of ``configs`` below ``seeds`` that are not stored yet (with
    ``cfg.jobs`` workers running ``hpsearch ARGV`` when above 1) and return every
    configuration's summary. Trains nothing else: replicates that another command queued
    (other configurations, settings or seeds) and left waiting are set aside, said here in one
    line, never trained under this command's settings. Raises what ``hpsearch.search.search`` raises."""
    study = open_replicates(cfg, create=True)
    own = keys(configs, seeds)
    enqueue(study, missing(study, configs, seeds))
    foreign = [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) if _key(t) not in own]
    if foreign:
        settings = sorted({_settings(t.user_attrs) for t in foreign})
        print(
            f"{plural(len(foreign), 'replicate')} waiting in {study.study_name} were queued by another command "
            f"({'; '.join(settings)}): this one trains only its own and sets aside those it meets; the command "
            "that queued them queues them again when it is run again",
            file=out or sys.stdout,
            flush=True,
        )
    if unfinished(study, own):
        if cfg.jobs > 1:
            from hpsearch.runner import make_trainer

            make_trainer(cfg, device="cpu")  # missing data is one line here, not one per worker
            code = workers.worst(workers.spawn(cfg.jobs, cfg.device, argv, env={OWN_ENV: _encode(own)}))
            if code:
                raise SystemExit(code)
        else:
            drain(cfg, keep_weights=keep_weights, own=own)
    return summaries(study, configs)


def drain(cfg, *, keep_weights: bool, own: frozenset[Key] | None = None) -> None:
    """Train the waiting replicates of ``own`` until each is finished: what a worker does
    (``own`` from its environment when not given)."""
    from hpsearch.runner import make_trainer

    if own is None:
        own = _decode(os.environ.get(OWN_ENV, "[]"))
    study = open_replicates(cfg, create=True)
    mine = [t for t in study.get_trials(deepcopy=False) if _key(t) in own]
    left = len(unfinished(study, own))
    finished = count_finished(study)
    run_cfg = dataclasses.replace(
        cfg,
        study_name=study.study_name,
        # The study's finished trials once this command's replicates are all finished.
        trials=finished + left,
        epochs=max((t.user_attrs["epochs"] for t in mine), default=cfg.epochs),
        sampler="random",
        pruner="none",
        keep_weights=KEEP_ALL if keep_weights else 0,
        timeout=None,
    )
    trainer = make_trainer(run_cfg)
    progress = ReplicateProgress(run_cfg, own)
    progress.finished_before = finished
    progress.say(
        f"replicates of {cfg.study_name} in {study.study_name}: {len(own) - left}/{len(own)} of this command's "
        f"finished; {trainer.summary}; unpruned"
    )
    objective = Objective(run_cfg, trainer, progress, admit=_admission(own))
    search(run_cfg, study, objective, progress, [_retry_failed])


OWN_ENV = "HPSEARCH_REPLICATES"  # a --jobs worker's replicates to train, as JSON [[config_id, index], ...]


def _encode(own: frozenset[Key]) -> str:
    return json.dumps(sorted(own))


def _decode(text: str) -> frozenset[Key]:
    return frozenset((config_id, index) for config_id, index in json.loads(text))


def _settings(attrs: dict[str, Any]) -> str:
    """How a queued replicate trains: its epochs and data."""
    return f"{plural(attrs.get('epochs', 0), 'epoch')}, {attrs.get('data') or 'the whole split in fp32'}"


def _admission(own: frozenset[Key]) -> Callable[[optuna.Trial], None]:
    """Only enqueued replicates of ``own`` run, each once: without one waiting, Optuna would
    sample a new configuration, which no replicate study wants; one that another command
    queued ends as a surplus trial here, set aside (its key is then missing again, and that
    command queues it anew)."""

    def admit(trial: optuna.Trial) -> None:
        attrs = trial.user_attrs
        key = _key(trial)
        if key is None:
            raise Surplus("surplus: no replicate was waiting")
        if key not in own:
            raise Surplus(f"{SET_ASIDE}: queued by another command ({_settings(attrs)}), left to it")
        for other in trial.study.get_trials(deepcopy=False, states=FINISHED):
            if _key(other) == key:
                raise Surplus(f"surplus: replicate {key[1]} of {attrs['label']} is done already")

    return admit


SET_ASIDE = "surplus: set aside"


def _retry_failed(study: optuna.Study, trial: FrozenTrial) -> None:
    """A replicate that failed (an exception, out of memory) is queued again with its seed,
    as a dead worker's is by heartbeat; three failures in a row still stop the command."""
    ended = trial.user_attrs.get("ended", "")
    if trial.state == TrialState.FAIL and _key(trial) and not ended.startswith("surplus") and ended != "interrupted":
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


def _name(attrs: dict[str, Any]) -> str:
    """A replicate in a run's lines, by what it replicates: ``trial 3, replicate 2``."""
    return f"{attrs['label']}, replicate {attrs['replicate'] + 1}"


class ReplicateProgress(Progress):
    """A run's lines, naming each trial by the configuration and seed it replicates, and
    counting this command's replicates (``own``) only."""

    def __init__(self, cfg, own: frozenset[Key], out: TextIO | None = None):
        super().__init__(cfg, out)
        self.own = own
        self.names: dict[int, str] = {}  # trial number -> what it replicates, for its epochs' lines

    def start(self, trial: optuna.Trial) -> None:
        a = trial.user_attrs
        seeds = sum(config_id == a[REPLICATE_KEY] for config_id, _ in self.own)
        self.names[trial.number] = _name(a)
        self.say(
            f"{_name(a)}/{seeds}: seed {a['seed']}, {plural(a['epochs'], 'epoch')} (stored as trial {trial.number} of "
            f"{trial.study.study_name})",
            "epoch",
        )

    def trial_name(self, number: int) -> str:
        return self.names.get(number, super().trial_name(number))

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        a = trial.user_attrs
        ended = a.get("ended", trial.state.name.lower())
        if ended.startswith(SET_ASIDE):
            return  # said once, by the command, before it started
        outcome = f"complete, {self.cfg.spec.metric} {trial.value:.4f}" if trial.state == TrialState.COMPLETE else ended
        done = len(self.own) - len(unfinished(study, self.own))
        elapsed, per_minute = self.pace(count_finished(study))
        pace = f"{format_duration(elapsed)} elapsed"
        left = len(self.own) - done
        if per_minute is not None and left > 0:
            pace += f", {format_rate(per_minute)}/min, ETA {format_duration(left * 60 / per_minute)}"
        what = _name(a) if "label" in a else f"trial {trial.number}"
        self.say(f"{what} {outcome} | {done}/{len(self.own)} replicates finished | {pace}")

    def footer(self, study: optuna.Study) -> None:
        """Nothing: the command that asked for the replicates prints what they show."""
