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
from pathlib import Path

import studies
from hpsearch.errors import UsageError
from hpsearch.spec import StudySpec


def all_specs() -> dict[str, StudySpec]:
    specs: dict[str, StudySpec] = {}
    for module_info in sorted(pkgutil.iter_modules(studies.__path__), key=lambda m: m.name):
        spec = getattr(importlib.import_module(f"studies.{module_info.name}"), "SPEC", None)
        if isinstance(spec, StudySpec):
            if spec.name in specs:
                raise RuntimeError(f"two study files declare the name {spec.name!r}")
            specs[spec.name] = spec
    return specs


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
        loader.loader.exec_module(module)
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, StudySpec):
        raise UsageError(f"study file {str(path)!r} defines no SPEC = StudySpec(...)")
    return spec
