"""Finds the study definitions: every module in the ``studies`` package that defines ``SPEC``.

Adding a study is adding a file there; nothing here changes.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

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
    """The study called ``name``; a UsageError suggesting the nearest names otherwise."""
    specs = all_specs()
    if name in specs:
        return specs[name]
    near = difflib.get_close_matches(name, specs, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
    raise UsageError(f"unknown study {name!r}; {hint}'hpsearch list' shows the {len(specs)} studies")
