"""The model registry: a factory per name, as in timm's ``create_model``."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name."""
    known = _REGISTRY.get(fn.__name__)
    # The same definition loaded again (a study file imported from a second path) replaces
    # itself; another model under a taken name is an error.
    if known is not None and not _same_definition(known, fn):
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def _same_definition(a: Callable, b: Callable) -> bool:
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        code_a is not None
        and code_b is not None
        and code_a.co_code == code_b.co_code
        and (code_a.co_consts == code_b.co_consts)
    )


def create(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    return factory(**kwargs)


def names() -> list[str]:
    return sorted(_REGISTRY)
