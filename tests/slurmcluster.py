"""A throwaway one-host SLURM cluster for the tests: munged, slurmctld and slurmd from Debian's
packages (``apt-get install slurm-wlm munge``), with every file under one temp folder.

munged runs as the ``munge`` user with a key, socket and log of its own (a munged already
running on this host is left alone); slurmctld and slurmd run as root in the foreground on
free ports, with ``proctrack/linuxproc`` and ``task/none`` (no cgroups needed), one node
named ``hostname -s`` with 2 CPUs (or as many as asked: the node's count is taken from the
configuration, not the machine). ``SLURM_CONF`` points the client commands (sbatch, squeue,
scancel) at it. Stopping sends SIGTERM to each daemon and waits for it.

Also a command, to try ``hpsearch run --slurm`` by hand on one machine (as root):

    python tests/slurmcluster.py --cpus 4     # prints the SLURM_CONF to export; Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "srun")
START_SECONDS = 60


class Unavailable(Exception):
    """No SLURM cluster can be started here; the message says why and what to install."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(root: Path, host: str, cpus: int) -> str:
    return f"""\
ClusterName=hpsearchtest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/ctld.log
SlurmdLogFile={root}/log/d.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
KillWait=10
SlurmdParameters=config_overrides
NodeName={host} CPUs={cpus} RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """A running cluster: ``conf`` is its slurm.conf, ``env`` the environment its client
    commands need (``SLURM_CONF``), ``log(name)`` a daemon's log text."""

    def __init__(self, root: Path):
        self.root, self.conf = root, root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)

    def log(self, name: str) -> str:
        for path in (self.root / "log" / name, self.root / "munge" / name):
            if path.exists():
                return path.read_text(errors="replace")
        return ""


def _wait(what: str, ready, cluster: Cluster) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"local SLURM: {what} not ready after {START_SECONDS} s\n"
                f"--- ctld.log\n{cluster.log('ctld.log')[-3000:]}\n--- d.log\n{cluster.log('d.log')[-3000:]}\n"
                f"--- munged.log\n{cluster.log('munged.log')[-2000:]}"
            )
        time.sleep(0.3)


@contextlib.contextmanager
def local_slurm(cpus: int = 2) -> Iterator[Cluster]:
    """Start the cluster; on exit stop its daemons and remove the folder. Raises Unavailable."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name, path="/usr/sbin:/usr/bin:/sbin") is None]
    if missing:
        raise Unavailable(
            f"SLURM or munge is not installed ({', '.join(missing)} missing): "
            "'apt-get install slurm-wlm munge' (.ci/run does)"
        )
    if os.getuid() != 0:
        raise Unavailable("a local SLURM cluster needs root (slurmd runs jobs as their users)")
    try:
        munge = pwd.getpwnam("munge")
    except KeyError:
        raise Unavailable("there is no 'munge' user to run munged as (the munge package makes one)") from None
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="hps-slurm-"))  # short: the munge socket path must fit 107 bytes
    procs: list[subprocess.Popen] = []
    try:
        for sub in ("state", "spool", "log"):
            (root / sub).mkdir()
        root.chmod(0o755)
        munge_dir = root / "munge"
        munge_dir.mkdir(mode=0o700)
        key = munge_dir / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        for path in (munge_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        os.chown(root, munge.pw_uid, munge.pw_gid)  # munged wants its socket's folder to be its own
        cluster = Cluster(root)
        cluster.conf.write_text(_config(root, host, cpus))
        logs = open(root / "log" / "daemons.out", "ab")  # noqa: SIM115 - closed below
        munged = [
            *("/usr/sbin/munged", "--foreground", "--force"),
            f"--socket={root}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={munge_dir}/munged.pid",
            f"--seed-file={munge_dir}/munged.seed",
            f"--log-file={munge_dir}/munged.log",
        ]
        procs.append(
            subprocess.Popen(
                munged,
                user=munge.pw_uid,
                group=munge.pw_gid,
                extra_groups=[],
                stdin=subprocess.DEVNULL,
                stdout=logs,
                stderr=logs,
            )
        )
        _wait("munged", lambda: (root / "munge.socket").exists(), cluster)
        for daemon in ("slurmctld", "slurmd"):
            procs.append(
                subprocess.Popen(
                    [f"/usr/sbin/{daemon}", "-D", "-f", str(cluster.conf)],
                    env=cluster.env,
                    stdin=subprocess.DEVNULL,
                    stdout=logs,
                    stderr=logs,
                    start_new_session=True,
                )
            )
        _wait("the node", lambda: cluster.command("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", cluster)
        yield cluster
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="a one-host SLURM cluster until Ctrl-C")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of its one node (default: 2)")

    def stop(signum, frame):  # SIGTERM too: the daemons are stopped, not left behind
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with local_slurm(parser.parse_args().cpus) as running:
        print(f"export SLURM_CONF={running.conf}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
