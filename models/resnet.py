"""Report 001's Fashion-MNIST classifiers (1x28x28): a plain CNN, ResNet-20 and ResNet-18."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock

from .registry import register


@register
def cnn_small(
    c1: int = 32,
    c2: int = 64,
    hidden: tuple[int, int] | list[int] = (256, 128),
    num_classes: int = 10,
    in_channels: int = 1,
) -> nn.Module:
    """Report 001's plain CNN (2 conv + 3 FC) for 28x28 inputs; returns logits.

    conv 5x5 pad 2 -> ReLU -> maxpool 2 (28->14) -> conv 5x5 pad 2 -> ReLU -> maxpool 2 (14->7)
    -> flatten -> fc hidden[0] -> ReLU -> fc hidden[1] -> ReLU -> fc num_classes.
    """
    h1, h2 = (int(h) for h in hidden)
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, h1),
        nn.ReLU(),
        nn.Linear(h1, h2),
        nn.ReLU(),
        nn.Linear(h2, num_classes),
    )


@register
def resnet20(
    widths: tuple[int, int, int] | list[int] = (16, 32, 64), num_classes: int = 10, in_channels: int = 1
) -> nn.Module:
    """CIFAR-style ResNet-20 (He et al. 2016, section 4.2) with searchable stage widths.

    3x3 conv stem + BN + ReLU -> three stages of 3 BasicBlocks (stride 2 at the start of
    stages 2 and 3; 1x1 conv + BN shortcut wherever the shape changes) -> global average
    pool -> fc num_classes. Works for any input size; returns logits.
    """
    widths = [int(w) for w in widths]
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(),
    ]
    cin = widths[0]
    for stage, width in enumerate(widths):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = None
            if stride != 1 or cin != width:
                shortcut = nn.Sequential(nn.Conv2d(cin, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
            layers.append(BasicBlock(cin, width, stride, shortcut))
            cin = width
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
    # He init, as in the paper and torchvision's ResNet.
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


@register
def resnet18(num_classes: int = 10, in_channels: int = 1, pretrained: bool = False) -> nn.Module:
    """torchvision ResNet-18 adapted to small images, as report 001 chose; returns logits.

    The 7x7 stride-2 stem becomes a 3x3 stride-1 conv and the stem max-pool is removed, so
    a 28x28 input keeps its resolution into layer1. ``pretrained=True`` loads ImageNet
    weights from the torch hub cache only (never downloads) and raises ValueError if the
    file is not there; the ImageNet stem filters are cut to their centre 3x3 (and summed
    over RGB for one input channel), the 1000-way head is kept only when num_classes == 1000.
    """
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if not pretrained:
        return model

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    if not os.path.exists(os.path.join(cache, os.path.basename(urlparse(weights.url).path))):
        # Checked up front so that nothing is downloaded (and no offline machine waits on the network).
        raise ValueError(
            f"resnet18 ImageNet weights are not in the torch hub cache {cache}; "
            "use pretrained=False to train from scratch"
        )
    state = weights.get_state_dict(progress=False)
    # Centre 3x3 of each 7x7 ImageNet stem filter; for other than RGB input, the RGB sum spread
    # evenly over the new channels (for greyscale, exactly the sum), as timm's adapt_input_conv.
    w = state["conv1.weight"][:, :, 2:5, 2:5]
    if in_channels != 3:
        w = w.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
    state["conv1.weight"] = w
    if num_classes != 1000:
        # The ImageNet head does not fit: keep this model's freshly initialised fc.
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("fc.")})
    # Every key is accounted for above, so the load can stay strict.
    model.load_state_dict(state)
    return model
