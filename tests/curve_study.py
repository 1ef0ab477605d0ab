"""curve: a stand-in study whose validation value is a known learning curve in training images
seen, for the tests of the default pruner's rungs. It trains nothing.

A trial's value after ``i`` images is ``ceiling(params) * (1 - exp(-i / IMAGES_PER_EPOCH))``
plus N(0, 0.001) from the trial's seed: every configuration learns at the same pace towards
its own ceiling, so ranks at the first rung are the final ranks up to the noise. Like a torch
trainer it counts images (``images_per_epoch``) and takes the value at each of the trial's
``checks`` inside an epoch.
"""

import math
import random

from hpsearch.spec import StudySpec

IMAGES_PER_EPOCH = 1000


def space(trial):
    return {
        "quality": trial.suggest_float("quality", 0.0, 1.0),
        "kind": trial.suggest_categorical("kind", ["a", "b", "c"]),
    }


def ceiling(params) -> float:
    return 0.5 + 0.4 * params["quality"] + (0.05 if params["kind"] == "b" else 0.0)


def value_at(params, images: int, rng: random.Random) -> float:
    return ceiling(params) * (1.0 - math.exp(-images / IMAGES_PER_EPOCH)) + rng.gauss(0.0, 0.001)


class Curve:
    summary = "no data: a known learning curve in images seen"
    chance = None
    images_per_epoch = IMAGES_PER_EPOCH

    def __init__(self, cfg):
        pass

    def __call__(self, ctx):
        rng = random.Random(ctx.seed)
        checks, best = list(ctx.checks), float("-inf")
        for epoch in range(1, ctx.epochs + 1):
            end = epoch * IMAGES_PER_EPOCH
            while checks and checks[0] < end:
                ctx.on_check(checks[0], value_at(ctx.params, checks.pop(0), rng))
            value = value_at(ctx.params, end, rng)
            best = max(best, value)
            ctx.on_epoch(epoch, value, 1.0 - value, 0.0, end)
        ctx.trial.set_user_attr("best_epoch", ctx.epochs)
        return best


SPEC = StudySpec(
    name="curve",
    description="stand-in study: a known learning curve in images seen",
    dataset="none",
    model_family="none",
    max_epochs=8,
    space=space,
    model=lambda params: ("none", {}),
    baseline={"quality": 0.5, "kind": "a"},
    baseline_source="the middle of the space",
    trainer=Curve,
)
