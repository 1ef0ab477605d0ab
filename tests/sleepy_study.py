"""sleepy: a stand-in study whose epochs only sleep, ``$SLEEPY_EPOCH_SECONDS`` each (default
0), for the SLURM tests, which cancel a task while its worker is inside a trial. It trains
nothing and imports no torch; its value is a known function of ``x`` (best at x = 1)."""

import os
import time

from hpsearch.spec import StudySpec


def space(trial):
    return {"x": trial.suggest_float("x", -3.0, 3.0)}


class Sleepy:
    summary = "no data: epochs that only sleep"

    def __init__(self, cfg):
        pass

    def __call__(self, ctx):
        value = 1.0 / (1.0 + (ctx.params["x"] - 1.0) ** 2)
        for epoch in range(1, ctx.epochs + 1):
            time.sleep(float(os.environ.get("SLEEPY_EPOCH_SECONDS", 0)))
            ctx.on_epoch(epoch, value * epoch / ctx.epochs, 1.0 - value, 0.0)
        ctx.trial.set_user_attr("best_epoch", ctx.epochs)
        return value


SPEC = StudySpec(
    name="sleepy",
    description="stand-in study: epochs that only sleep",
    dataset="none",
    model_family="none",
    max_epochs=3,
    space=space,
    model=lambda params: ("none", {}),
    baseline={"x": 0.0},
    baseline_source="a fixed first configuration",
    trainer=Sleepy,
)
