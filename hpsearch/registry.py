"""Finds the study definitions: every module in the ``studies`` package that defines ``SPEC``,
or a study file named by its path (``hpsearch run path/to/my_study.py``).

Adding a study is adding a file there; nothing here changes.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
import traceback
from pathlib import Path

from hpsearch import studies
from hpsearch.errors import UsageError, first_line
from hpsearch.spec import StudySpec

# The file each study loaded in this process came from, by study name (names are unique).
_SOURCES: dict[str, Path] = {}


def source(spec: StudySpec) -> Path | None:
    """The study file that declared ``spec`` (packaged or given by path), once loaded here."""
    return _SOURCES.get(spec.name)


def all_specs() -> dict[str, StudySpec]:
    return {name: spec for name, (spec, _) in _packaged().items()}


def _packaged() -> dict[str, tuple[StudySpec, Path]]:
    """Each packaged study by name, with the file that declares it."""
    found: dict[str, tuple[StudySpec, Path]] = {}
    for module_info in sorted(pkgutil.iter_modules(studies.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{studies.__name__}.{module_info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, StudySpec):
            if spec.name in found:
                raise RuntimeError(f"two study files declare the name {spec.name!r}")
            found[spec.name] = spec, Path(module.__file__).resolve()
            _SOURCES[spec.name] = found[spec.name][1]
    return found


def get(name: str) -> StudySpec:
    """The study called ``name``, or defined by the file ``name`` (ending in ``.py``); a
    UsageError suggesting the nearest names otherwise."""
    if name.endswith(".py"):
        return _from_file(Path(name))
    specs = all_specs()
    if name in specs:
        return specs[name]
    near = difflib.get_close_matches(name, specs, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
    if not near and Path(f"{name}.py").is_file():
        hint = f"did you mean the study file '{name}.py'? "
    raise UsageError(f"unknown study {name!r}; {hint}'hpsearch list' shows the {len(specs)} studies")


def _from_file(path: Path) -> StudySpec:
    if not path.is_file():
        raise UsageError(f"no study file {str(path)!r}; give the path of a .py file that defines SPEC = StudySpec(...)")
    resolved = path.resolve()
    module_name = f"hpsearch_study_file_{hashlib.sha1(str(resolved).encode()).hexdigest()[:12]}"
    module = sys.modules.get(module_name)  # loaded once per process, like a package module
    if module is None:
        loader = importlib.util.spec_from_file_location(module_name, resolved)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]  # a fixed file is read afresh, not this half-run module
            raise UsageError(f"study file {str(path)!r} fails{_line_in(resolved, exc)}: {_what(exc)}") from None
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, StudySpec):
        raise UsageError(f"study file {str(path)!r} defines no SPEC = StudySpec(...)")
    packaged = _packaged().get(spec.name)
    # The stored study is found by this name: sharing a packaged study's would mix both
    # studies' trials in one storage. The packaged file itself, given by path, is that study.
    if packaged and packaged[1] != resolved:
        raise UsageError(
            f"study file {str(path)!r} names its SPEC {spec.name!r}, the name of the packaged study in "
            f"studies/{packaged[1].name}; give it a name of its own"
        )
    _SOURCES[spec.name] = resolved
    return spec


def _line_in(file: Path, exc: Exception) -> str:
    """`` at line N`` of ``file`` where ``exc`` was raised in it (the last such frame), else ''."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" at line {exc.lineno}"
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if Path(frame.filename) == file]
    return f" at line {lines[-1]}" if lines else ""


# The top-level packages of earlier releases, now inside hpsearch's namespace.
_MOVED = ("models", "studies")


def _what(exc: Exception) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    name = getattr(exc, "name", None) or ""
    if isinstance(exc, ModuleNotFoundError) and name.split(".")[0] in _MOVED:
        top = name.split(".")[0]
        return f"no module named {name!r}: hpsearch's {top} are inside its namespace now: import hpsearch.{name}"
    return f"{type(exc).__name__}: {first_line(exc)}"
