"""hpsearch: Optuna hyperparameter searches for PyTorch image models.

From Python (``docs/python.md``)::

    import hpsearch

    study = hpsearch.run("fashion-lenet", n_trials=20)     # an optuna.Study
    best = hpsearch.confirm("fashion-lenet", top=3, seeds=3)
    path = hpsearch.export("fashion-lenet", "best.pt", score=True)
    model = hpsearch.load(path)

``run``, ``confirm`` and ``export`` take a study's name, a study file's path or a
``StudySpec``; the command line calls the same functions (``hpsearch.api``).

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
__all__ = ["StudySpec", "UsageError", "confirm", "export", "load", "run"]


def __getattr__(name: str):
    # Imported on first use: ``import hpsearch`` stays cheap for the command line, and
    # torch is imported only by what trains or loads a model.
    if name == "StudySpec":
        from hpsearch.spec import StudySpec

        return StudySpec
    if name == "UsageError":
        from hpsearch.errors import UsageError

        return UsageError
    if name in __all__:
        from hpsearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "models" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 - a package's own __path__
