"""Network definitions behind a name registry.

Contract (as in timm): ``create(name, **kwargs)`` builds a fresh ``nn.Module``; the same
name and the same keyword arguments always rebuild the same architecture, so a
checkpoint only needs to store ``(name, kwargs, state_dict)``. Keyword arguments must be
plain data (str, int, float, bool, lists/tuples of those) for that reason.
"""

from . import autoencoders, lenet, mlp, resnet  # noqa: F401 - importing them fills the registry
from .registry import create, names, register

__all__ = ["create", "names", "register"]
