"""Network definitions behind a name registry.

Contract (as in timm): ``create(name, **kwargs)`` builds a fresh ``nn.Module``; the same
name and the same keyword arguments always rebuild the same architecture, so a
checkpoint only needs to store ``(name, kwargs, state_dict)``. Keyword arguments must be
plain data (str, int, float, bool, lists/tuples of those) for that reason.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def create(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    return factory(**kwargs)


def names() -> list[str]:
    return sorted(_REGISTRY)


# Importing the definition modules fills the registry.
from models import lenet  # noqa: E402,F401
from models import resnet  # noqa: E402,F401
from models import mlp  # noqa: E402,F401
from models import autoencoders  # noqa: E402,F401
