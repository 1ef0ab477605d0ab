"""hpsearch: Optuna hyperparameter searches for PyTorch image models.

The engine is this package. What plugs into it stays at the repository's top level:
``models/`` (architectures by name), ``readers/`` (datasets by name) and ``studies/`` (one
file a study). They are installed as ``hpsearch.models``, ``hpsearch.readers`` and
``hpsearch.studies`` (``package-dir`` in ``pyproject.toml``), so a user's own ``models`` or
``studies`` package never shadows them, nor they it. Run from a source checkout (editable
install, or the checkout on ``PYTHONPATH``), the same names are found in the checkout's
folders.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "models" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 - a package's own __path__
