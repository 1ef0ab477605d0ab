"""Where the user's datasets and hpsearch's own cache live on disk."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where the user keeps datasets: ``--data-dir``, else ``$HPSEARCH_DATA_DIR``, else ``./data``."""
    return Path(explicit or os.environ.get("HPSEARCH_DATA_DIR") or "data").expanduser()


def cache_dir() -> Path:
    """hpsearch's own writable cache (extracted archives, decoded images, downloads):
    ``$HPSEARCH_CACHE_DIR`` or ``~/.cache/hpsearch``. The data directory itself may be read-only."""
    root = os.environ.get("HPSEARCH_CACHE_DIR") or Path.home() / ".cache" / "hpsearch"
    return Path(root).expanduser()
