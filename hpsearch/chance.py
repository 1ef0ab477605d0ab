"""The rule that stops a trial which has learned nothing, whatever the pruner.

A pruner compares a trial with others, and the first trial to reach a rung is promoted, so
early in a study (or in a Hyperband bracket of its own) nothing stops a trial stuck at
chance: on Fashion-MNIST one such trial ran all 20 epochs at 0.0999 for 6.8 minutes of a
2-core CPU's first hour under Hyperband. "Chance" is the validation metric of a model that learned nothing (the task's
``chance``: 1/classes for accuracy, the MSE of predicting the mean training image for
denoising). A trial whose best value after ``CHECK_FROM_EPOCH`` epochs is still within
``MARGIN`` of the way from chance to a perfect score (accuracy 1, MSE 0) is pruned.
"""

from __future__ import annotations

CHECK_FROM_EPOCH = 2
MARGIN = 0.05  # 10 classes: accuracy below 0.145 after 2 epochs; 102 classes: below 0.0594


def learned_nothing(best: float, chance: float, maximize: bool, epoch: int) -> bool:
    """Whether a trial whose best validation value after ``epoch`` epochs is ``best`` has
    learned nothing (accuracy: ``maximize``; MSE: not)."""
    if epoch < CHECK_FROM_EPOCH:
        return False
    if maximize:
        return best < chance + MARGIN * (1.0 - chance)
    return best > (1.0 - MARGIN) * chance


def reason(best: float, chance: float, epoch: int) -> str:
    """The trial's ``ended`` attribute."""
    return f"pruned at epoch {epoch}: learned nothing (best {best:.4f}, chance {chance:.4f})"
