"""Autoencoders: report 002's three MNIST denoisers and report 000's Flowers-102 AE + classifier.

The denoisers map an (N, C, H, W) image batch to a batch of the same shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register


@register
def linear_ae(code: int = 128, in_shape: tuple[int, int, int] | list[int] = (1, 28, 28)) -> nn.Module:
    """Report 002 model (1): flatten -> Linear(784 -> code) -> Linear(code -> 784) -> reshape.

    No activation anywhere, as in the report (so it is a linear map of rank <= code).
    """
    shape = tuple(int(s) for s in in_shape)
    n = math.prod(shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(n, code), nn.Linear(code, n), nn.Unflatten(1, shape))


@register
def mlp_ae(hidden: int = 256, code: int = 128, in_shape: tuple[int, int, int] | list[int] = (1, 28, 28)) -> nn.Module:
    """Report 002 model (2): 784 -> hidden -> ReLU -> code, code -> hidden -> ReLU -> 784, reshaped."""
    shape = tuple(int(s) for s in in_shape)
    n = math.prod(shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n, hidden),
        nn.ReLU(),
        nn.Linear(hidden, code),  # encoder
        nn.Linear(code, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n),  # decoder
        nn.Unflatten(1, shape),
    )


@register
def conv_ae(widths: tuple[int, int, int, int, int] | list[int] = (16, 32, 64, 128, 256)) -> nn.Module:
    """Report 002 model (3), a conv autoencoder for 1x28x28 (any 1xHxW with H, W divisible by 4).

    Layer for layer as the report, with its channels 16, 32, 64, 128, 256 replaced by
    ``widths``. Encoder: 28x28 -> w5 x 7x7; decoder back to 1x28x28. The output ends in
    ReLU, so it is non-negative like the [0, 1] targets.
    """
    w1, w2, w3, w4, w5 = (int(w) for w in widths)
    return nn.Sequential(
        # encoder
        nn.Conv2d(1, w1, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(w1),
        nn.Conv2d(w1, w2, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(w2),
        nn.Conv2d(w2, w3, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(w3),
        nn.MaxPool2d(2),  # 28 -> 14
        nn.Conv2d(w3, w4, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(w4),
        nn.MaxPool2d(2),  # 14 -> 7
        nn.Conv2d(w4, w5, 3, padding=1),
        nn.ReLU(),
        # decoder (the report has no activation between the first ConvT and its BN)
        nn.ConvTranspose2d(w5, w4, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(w4),  # 7 -> 14
        nn.Conv2d(w4, w3, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(w3),
        nn.ConvTranspose2d(w3, w1, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(w1),
        nn.ConvTranspose2d(w1, 1, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(),  # 14 -> 28
    )


class FlowersAE(nn.Module):
    """Report 000's conv autoencoder with a conv classifier on its code, for 3x100x100 images.

    Two-method contract, one per training stage:
      * ``reconstruct(x)`` = decoder(encoder(x)), shape (N, 3, 100, 100): stage 1, MSE against x;
      * ``forward(x)`` = classifier(encoder(x)), logits (N, num_classes): stage 2, encoder and
        classifier trained jointly with cross-entropy.
    The code z = encoder(x) is (N, 32, 25, 25).
    """

    def __init__(self, batch_norm: bool = True, num_classes: int = 102):
        super().__init__()

        def bn(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batch_norm else []

        # Encoder and decoder: ReLU then [BN] after every conv, as in the report.
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            *bn(16),  # 100 -> 50
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            *bn(32),  # 50 -> 25
        )
        # k2 s1 p13 convs grow the map by 25 each: 25 -> 50 -> 75 -> 100. The report's decoder
        # also ends in ReLU [+ BatchNorm2d(3)] after the last conv; kept as written there.
        self.decoder = nn.Sequential(
            nn.Conv2d(32, 16, 2, padding=13),
            nn.ReLU(),
            *bn(16),
            nn.Conv2d(16, 8, 2, padding=13),
            nn.ReLU(),
            *bn(8),
            nn.Conv2d(8, 3, 2, padding=13),
            nn.ReLU(),
            *bn(3),
        )
        # Classifier: [BN] before ReLU here, as in the report; the conv bias is redundant before BN.
        self.classifier = nn.Sequential(
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=not batch_norm),
            *bn(64),
            nn.ReLU(),  # 25 -> 13
            nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=not batch_norm),
            *bn(128),
            nn.ReLU(),  # 13 -> 7
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def reconstruction_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Stage 1's batch loss: MSE of ``reconstruct(x)`` against ``x`` (labels unused)."""
        return F.mse_loss(self.reconstruct(x), x)

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """What stage 1 trains: the encoder and the decoder."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]


@register
def flowers_ae(batch_norm: bool = True, num_classes: int = 102) -> nn.Module:
    """Report 000's model; see FlowersAE for the reconstruct / forward contract."""
    return FlowersAE(batch_norm=batch_norm, num_classes=num_classes)
