"""bookkeeping: a stand-in study for load tests of the storage side. It trains nothing.

Each trial follows a made-up learning curve for its parameters and reports every epoch at
once, so a worker hits the storage as fast as a real study would on a very fast GPU. It
goes through the same runner, objective, pruner, heartbeat and note code as a real study,
and imports no torch, so a worker costs little memory:

    hpsearch run tests/bookkeeping_study.py --trials 1000 --jobs 8 --storage URL
"""

import math
import random

from hpsearch.spec import StudySpec


def space(trial):
    return {
        "x": trial.suggest_float("x", -3.0, 3.0),
        "y": trial.suggest_float("y", -3.0, 3.0),
        "width": trial.suggest_int("width", 8, 512, log=True),
    }


class Curve:
    summary = "no data: a made-up learning curve per trial, nothing trained"

    def __init__(self, cfg):
        pass

    def __call__(self, ctx):
        ceiling = 1.0 / (1.0 + (ctx.params["x"] - 1.0) ** 2 + (ctx.params["y"] + 0.5) ** 2)
        noise = random.Random(ctx.seed)
        best, best_epoch = -math.inf, 0
        for epoch in range(1, ctx.epochs + 1):
            value = ceiling * (1.0 - math.exp(-epoch / 4.0)) + noise.gauss(0.0, 0.01)
            if value > best:
                best, best_epoch = value, epoch
            ctx.on_epoch(epoch, value, 1.0 - value, 0.0)
        ctx.trial.set_user_attr("best_epoch", best_epoch)
        return best


SPEC = StudySpec(
    name="bookkeeping",
    description="stand-in study: no training, storage load only",
    dataset="none",
    model_family="none",
    max_epochs=20,
    space=space,
    model=lambda params: ("none", {}),
    baseline={"x": 0.0, "y": 0.0, "width": 64},
    baseline_source="a fixed first configuration",
    trainer=Curve,
)
