"""noisy: a stand-in study whose metric is a known function of its parameters plus seed
noise, for the tests of replicates, confirm and ablate. It trains nothing.

The true value is 0.5, plus 0.10 for ``a``, 0.05 for ``b``, 0.01 for ``c`` and 0.03 times
``extra_level`` for ``extra`` (a conditional parameter). A search trial's seed (below
``hpsearch.replicates.SEED_BASE``) adds ``0.3 * luck``: a lucky single run that its
replicates, with seeds of their own, do not repeat. Every seed adds N(0, 0.002).
``$NOISY_EPOCH_SECONDS`` makes each epoch last that long, for the fault tests.
"""

import os
import random
import time

from hpsearch.replicates import SEED_BASE
from hpsearch.spec import StudySpec

GAINS = {"a": 0.10, "b": 0.05, "c": 0.01}
EXTRA_GAIN = 0.03


def space(trial):
    p = {name: trial.suggest_categorical(name, [False, True]) for name in GAINS}
    if trial.suggest_categorical("extra", [False, True]):
        p["extra_level"] = trial.suggest_float("extra_level", 0.0, 1.0)
    p["luck"] = trial.suggest_float("luck", 0.0, 1.0)
    return p


def truth(params):
    value = 0.5 + sum(gain for name, gain in GAINS.items() if params[name])
    return value + EXTRA_GAIN * params.get("extra_level", 0.0)


class Noisy:
    summary = "no data: a known function of the parameters plus seed noise"

    def __init__(self, cfg):
        pass

    def __call__(self, ctx):
        rng = random.Random(ctx.seed)
        lucky = 0.3 * ctx.params["luck"] if ctx.seed < SEED_BASE else 0.0
        best = float("-inf")
        for epoch in range(1, ctx.epochs + 1):
            time.sleep(float(os.environ.get("NOISY_EPOCH_SECONDS", 0)))
            value = truth(ctx.params) + lucky + rng.gauss(0.0, 0.002)
            best = max(best, value)
            ctx.on_epoch(epoch, value, 1.0 - value, 0.0)
        ctx.trial.set_user_attr("best_epoch", ctx.epochs)
        return best


SPEC = StudySpec(
    name="noisy",
    description="stand-in study: a known metric plus seed noise",
    dataset="none",
    model_family="none",
    max_epochs=2,
    space=space,
    model=lambda params: ("none", {}),
    baseline={"a": False, "b": False, "c": False, "extra": False, "luck": 0.0},
    baseline_source="every gain off",
    trainer=Noisy,
)
