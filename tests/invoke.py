"""Running hpsearch's command line inside the test process."""

from hpsearch.cli import main


def hpsearch(command: str, *args) -> int:
    """The exit status of ``hpsearch COMMAND ARGS``: ``command`` is split at spaces, each of
    ``args`` (a path, a URL) is passed whole as ``str(arg)``."""
    return main([*command.split(), *map(str, args)])


def stored_study(tmp_path_factory, data_root, folder: str, run: str) -> str:
    """The SQLite URL of a study that ``hpsearch run RUN`` stored in a fresh folder ``folder``.
    For module-scoped fixtures, where conftest's per-test isolation is not active yet: the run
    gets its own cache, and the default artifact store (beside the SQLite file)."""
    import pytest

    url = f"sqlite:///{tmp_path_factory.mktemp(folder) / 'study.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPSEARCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("HPSEARCH_STORAGE", raising=False)
        mp.delenv("HPSEARCH_ARTIFACTS", raising=False)
        assert hpsearch(run + " --storage", url, "--data-dir", data_root) == 0
    return url
