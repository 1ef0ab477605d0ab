"""LeNet-5 and the fully connected baseline of report 004 (Fashion-MNIST, 1x28x28)."""

from __future__ import annotations

import torch.nn as nn

from .registry import register

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}
_POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


@register
def lenet5(
    channels: tuple[int, int, int] | list[int] = (6, 16, 120),
    activation: str = "tanh",
    pooling: str = "avg",
    batch_norm: bool = False,
    dropout: float = 0.0,
    num_classes: int = 10,
    in_channels: int = 1,
) -> nn.Module:
    """Report 004's configurable LeNet-5 for 28x28 inputs.

    conv 5x5 pad 2 -> [BN] -> act -> pool 2 -> conv 5x5 -> [BN] -> act -> pool 2 ->
    conv 5x5 (to 1x1) -> [BN] -> act -> fc 84 -> [dropout] -> act -> fc num_classes.
    The output is logits; losses that need probabilities apply softmax themselves.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, not {activation!r}")
    if pooling not in _POOLS:
        raise ValueError(f"pooling must be one of {sorted(_POOLS)}, not {pooling!r}")
    c1, c2, c3 = (int(c) for c in channels)
    act, pool = _ACTIVATIONS[activation], _POOLS[pooling]

    def conv_block(cin: int, cout: int, padding: int) -> list[nn.Module]:
        # The conv bias is redundant in front of BatchNorm.
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 5, padding=padding, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(act())
        return layers

    fc1, fc2 = nn.Linear(c3, 84), nn.Linear(84, num_classes)
    # The report initialised the fully connected layers with Xavier-uniform.
    nn.init.xavier_uniform_(fc1.weight)
    nn.init.xavier_uniform_(fc2.weight)
    return nn.Sequential(
        *conv_block(in_channels, c1, padding=2),
        pool(2),
        *conv_block(c1, c2, padding=0),
        pool(2),
        *conv_block(c2, c3, padding=0),
        nn.Flatten(),
        fc1,
        *([nn.Dropout(dropout)] if dropout > 0 else []),
        act(),
        fc2,
    )


@register
def fc_net(in_features: int = 784, hidden: int = 512, num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """Report 004's fully connected baseline: flatten -> 784-512 ReLU -> 10 (``dropout`` 0: the report's)."""
    fc1, fc2 = nn.Linear(in_features, hidden), nn.Linear(hidden, num_classes)
    nn.init.xavier_uniform_(fc1.weight)
    nn.init.xavier_uniform_(fc2.weight)
    return nn.Sequential(nn.Flatten(), fc1, nn.ReLU(), nn.Dropout(dropout), fc2)
