"""Report 003's CIFAR-10 multilayer perceptron (flattened 3x32x32 = 3072 inputs)."""

from __future__ import annotations

import torch.nn as nn

from models.registry import register


@register
def mlp(
    in_features: int = 3072,
    widths: tuple[int, ...] | list[int] = (1024, 512, 64, 64, 32, 16),
    dropouts: tuple[float, ...] | list[float] = (0.6, 0.6, 0.4, 0.4, 0.25, 0.0),
    num_classes: int = 10,
) -> nn.Module:
    """Flatten -> per hidden layer Linear -> BatchNorm1d -> ReLU -> Dropout(p) -> Linear num_classes.

    ``dropouts[i]`` belongs to hidden layer ``i`` (no Dropout module where it is 0). The
    result is a plain nn.Sequential whose nn.Linear modules appear in depth order in
    ``model.modules()``, so a study can penalise "the first three linear layers". Returns logits.
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
    return nn.Sequential(*layers)
