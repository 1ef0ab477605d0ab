"""Report 003's CIFAR-10 multilayer perceptron (flattened 3x32x32 = 3072 inputs)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register


class PenalisedSequential(nn.Sequential):
    """An nn.Sequential with report 003's L2 term on its first ``l2_layers`` Linear layers:
    ``penalty(m) = l2_lambda / (2 m) * sum of their squared weights`` for a batch of m,
    which the training loop adds to each batch's loss. Its state dict is the Sequential's."""

    def __init__(self, *layers: nn.Module, l2_lambda: float = 0.0, l2_layers: int = 0):
        super().__init__(*layers)
        self.l2_lambda = float(l2_lambda)
        self.penalised = [m for m in self if isinstance(m, nn.Linear)][: int(l2_layers)]

    def penalty(self, batch_size: int) -> torch.Tensor | float:
        if not self.l2_lambda or not self.penalised:
            return 0.0
        return self.l2_lambda / (2 * batch_size) * sum(m.weight.pow(2).sum() for m in self.penalised)


@register
def mlp(
    in_features: int = 3072,
    widths: tuple[int, ...] | list[int] = (1024, 512, 64, 64, 32, 16),
    dropouts: tuple[float, ...] | list[float] = (0.6, 0.6, 0.4, 0.4, 0.25, 0.0),
    num_classes: int = 10,
    l2_lambda: float = 0.0,
    l2_layers: int = 0,
) -> nn.Module:
    """Flatten -> per hidden layer Linear -> BatchNorm1d -> ReLU -> Dropout(p) -> Linear num_classes.

    ``dropouts[i]`` belongs to hidden layer ``i`` (no Dropout module where it is 0). With
    ``l2_lambda``, the model's ``penalty`` is report 003's L2 term on its first ``l2_layers``
    Linear layers (``PenalisedSequential``). Returns logits.
    """
    if len(dropouts) != len(widths):
        raise ValueError(f"need one dropout rate per hidden layer: {len(widths)} widths, {len(dropouts)} dropouts")
    layers: list[nn.Module] = [nn.Flatten()]
    cin = in_features
    for width, p in zip(widths, dropouts, strict=True):
        layers += [nn.Linear(cin, int(width)), nn.BatchNorm1d(int(width)), nn.ReLU()]
        if p > 0:
            layers.append(nn.Dropout(float(p)))
        cin = int(width)
    layers.append(nn.Linear(cin, num_classes))
    return PenalisedSequential(*layers, l2_lambda=l2_lambda, l2_layers=l2_layers)
