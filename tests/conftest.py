import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import write_fashion_mnist  # noqa: E402

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
            f"unset {TEST_DEVICE_ENV} to test on the CPU")


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
    """The real datasets (HPSEARCH_DATA_DIR), or a skip that says why."""
    root = os.environ.get("HPSEARCH_DATA_DIR")
    if not root or not (Path(root) / "FashionMNIST" / "raw").is_dir():
        pytest.skip("real data absent: set HPSEARCH_DATA_DIR to a folder with FashionMNIST/raw (CI: ../shared/data)")
    return Path(root)


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


# --- PostgreSQL: a throwaway server for tests/test_postgres.py --------------------------


class PostgresServer:
    """A running throwaway PostgreSQL server: user ``hp`` with a password (md5 auth), on
    127.0.0.1:``port``. ``new_database()`` makes an empty database and returns its URL."""

    def __init__(self, port: int, password: str, pg_ctl=None):
        self.port, self.password = port, password
        self._pg_ctl = pg_ctl  # runs pg_ctl with the given action: "stop" or "start"
        self._count = 0

    def stop(self) -> None:
        """Stop the server at once (pg_ctl -m fast: open connections are cut)."""
        self._pg_ctl("stop")

    def start(self) -> None:
        self._pg_ctl("start")

    def url(self, database: str, password: str | None = None, port: int | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg://hp:{pw}@127.0.0.1:{port or self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        import psycopg

        self._count += 1
        name = f"{prefix}_{self._count}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="hp", password=self.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _postgres_bin() -> Path | None:
    """Debian keeps initdb and pg_ctl off PATH, under /usr/lib/postgresql/<version>/bin/."""
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.parent.name.split(".")])
    for pg_ctl in reversed(found):
        if (Path(pg_ctl).parent / "initdb").is_file():
            return Path(pg_ctl).parent
    if shutil.which("pg_ctl") and shutil.which("initdb"):
        return Path(shutil.which("pg_ctl")).parent
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """Start a PostgreSQL server in a temp dir for the session (skips when none is installed).

    initdb -D DIR/data -U hp --auth=md5 --pwfile=DIR/pwfile; pg_ctl start on a free port with
    its socket in DIR, listening on 127.0.0.1 only; pg_ctl stop -m fast at the end. Postgres
    refuses to run as root, so as root both run as the ``postgres`` user (runuser)."""
    import secrets
    import shutil
    import socket
    import subprocess
    import tempfile

    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
                    "or on PATH: install them with 'apt-get install postgresql' (.ci/run does)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg (the PostgreSQL driver of postgresql+psycopg:// URLs) is not installed")
    as_user: list[str] = []
    owner = None
    if os.getuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
        as_user = ["runuser", "-u", "postgres", "--"]

    root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-"))  # short: the socket path must fit 107 bytes
    password = "pw-" + secrets.token_hex(8)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if owner is not None:
        for path in (root, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, log = root / "data", root / "server.log"

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=120)

    def fail(step: str, proc: subprocess.CompletedProcess):
        server_log = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL {step} failed ({proc.returncode}): {proc.stdout}\n{server_log}")

    proc = pg(str(bindir / "initdb"), "-D", str(data), "-U", "hp", "--auth=md5", f"--pwfile={pwfile}",
              "--encoding=UTF8", "--no-sync")
    if proc.returncode != 0:
        fail("initdb", proc)
    def pg_ctl(action: str) -> None:
        # pg_ctl -l sends the server's output to the log, so no pipe stays open behind it.
        options = ["-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "-l", str(log)]
        proc = pg(str(bindir / "pg_ctl"), "-D", str(data), *(options if action == "start" else ["-m", "fast"]),
                  "-w", action)
        if proc.returncode != 0:
            fail(f"pg_ctl {action}", proc)

    pg_ctl("start")
    try:
        yield PostgresServer(port, password, pg_ctl)
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's PostgreSQL server, as a postgresql+psycopg:// URL."""
    return postgres_server.new_database()
