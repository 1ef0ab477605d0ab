import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import write_fashion_mnist  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own cache and no inherited storage URL."""
    monkeypatch.setenv("HPSEARCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fashion"))


@pytest.fixture
def real_data_dir() -> Path:
    """The real datasets (HPSEARCH_DATA_DIR), or a skip that says why."""
    root = os.environ.get("HPSEARCH_DATA_DIR")
    if not root or not (Path(root) / "FashionMNIST" / "raw").is_dir():
        pytest.skip("real data absent: set HPSEARCH_DATA_DIR to a folder with FashionMNIST/raw (CI: ../shared/data)")
    return Path(root)
