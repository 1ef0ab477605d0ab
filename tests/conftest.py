import os
from pathlib import Path

import pytest
from pgserver import Unavailable, throwaway_postgres
from synthetic import write_fashion_mnist

from hpsearch import locations

# --- The training device: HPSEARCH_TEST_DEVICE=cpu (default) or cuda -----------------------
#
# Tests train through `--device auto` (the CLI's default, in this process and in the
# `python -m hpsearch` children they start) and through the `device` fixture below. With
# cpu, every GPU is hidden (CUDA_VISIBLE_DEVICES=""), so auto means the CPU here and in every
# child, also on a machine that has a GPU. With cuda, auto finds the GPU; a machine without
# one stops the run before any test, in one line.

TEST_DEVICE_ENV = "HPSEARCH_TEST_DEVICE"


def training_device() -> str:
    return os.environ.get(TEST_DEVICE_ENV, "").strip().lower() or "cpu"


def pytest_configure(config):
    # `hpsearch run` starts two workers on a CPU by default; the suite's runs stay in one process
    # (their monkeypatches act there), unless a test says otherwise (test_workers.py).
    os.environ["HPSEARCH_JOBS"] = "1"
    name = training_device()
    if name == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything initialises CUDA
        return
    if name != "cuda":
        raise pytest.UsageError(f"{TEST_DEVICE_ENV}={name!r}: use cpu (the default) or cuda")
    import torch

    if not torch.cuda.is_available():
        raise pytest.UsageError(
            f"{TEST_DEVICE_ENV}=cuda, but torch {torch.__version__} sees no CUDA GPU here "
            f"(built for CUDA {torch.version.cuda}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            f"unset {TEST_DEVICE_ENV} to test on the CPU"
        )


def pytest_report_header(config):
    name = training_device()
    if name == "cuda":
        import torch

        return f"training device: cuda ({torch.cuda.get_device_name(0)}; {TEST_DEVICE_ENV}=cuda)"
    return f"training device: cpu (GPUs hidden; {TEST_DEVICE_ENV}=cuda trains on the GPU)"


@pytest.fixture(scope="session")
def device():
    """The device tests that call the engine directly train on (HPSEARCH_TEST_DEVICE)."""
    import torch

    return torch.device(training_device())


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
    """The real datasets where hpsearch looks for them ($HPSEARCH_DATA_DIR, else ./data), or
    a skip that says why."""
    root = locations.data_dir()
    if not (root / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real data absent: no FashionMNIST/raw in {root} (set HPSEARCH_DATA_DIR; CI: ../shared/data)")
    return root


@pytest.fixture
def without_md5_checks(monkeypatch):
    """Synthetic files cannot have the official md5 sums, so the tests replace only
    torchvision's md5 comparison: ``check_integrity`` as imported by the CIFAR10 reader
    (used by CIFAR10._check_integrity for the batches and by CIFAR10._load_meta for
    batches.meta) and by the Flowers102 reader (Flowers102._check_integrity, for the two .mat
    files) becomes "the file exists". The rest of torchvision's reading code runs as is;
    hpsearch itself keeps the checks (see test_cifar10_pickles_keep_torchvision_md5_check)."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.flowers102 as flowers102

    def file_exists(fpath, md5=None) -> bool:
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", file_exists)
    monkeypatch.setattr(flowers102, "check_integrity", file_exists)


# --- PostgreSQL: a throwaway server for the tests that need one ------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session (``pgserver``); skips, saying why, when
    none can be started here."""
    try:
        with throwaway_postgres() as server:
            yield server
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's PostgreSQL server, as a postgresql+psycopg:// URL."""
    return postgres_server.new_database()


# --- SLURM: a throwaway one-host cluster for the tests of `run --slurm` ------------------


@pytest.fixture(scope="session")
def slurm_cluster():
    """munged, slurmctld and slurmd on this host for the session (``slurmcluster``); its
    ``env`` points SLURM's commands at it. Skips, saying why, when none can be started here."""
    from slurmcluster import Unavailable as NoSlurm
    from slurmcluster import local_slurm

    try:
        with local_slurm() as cluster:
            yield cluster
    except NoSlurm as exc:
        pytest.skip(str(exc))
