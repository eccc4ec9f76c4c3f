"""A throwaway single-node SLURM cluster (munged + slurmctld + slurmd) for the tests.

Everything lives in one folder: munge key, sockets, slurm.conf, state, spool and
logs. No accounting database runs, so Snakemake's SLURM executor must query job
states with ``squeue``; ``MinJobAge`` keeps finished jobs visible long enough.

Pytest uses the session fixture in tests/test_slurm.py; by hand::

    python tests/slurm_cluster.py start /tmp/slurm    # prints `export SLURM_CONF=...`
    python tests/slurm_cluster.py stop /tmp/slurm

Daemons run as root (SlurmUser=root), as they do in the CI container.

The job step executor of snakemake-executor-plugin-slurm strips every SLURM_*
variable, SLURM_CONF included, before its inner `srun`; that srun then only
finds the configuration at the default path. So `start` also links
/etc/slurm/slurm.conf to the generated file (refusing to replace a real one)
and `stop` removes the link.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "srun")
MISSING_HINT = "run `make test-deps` (as root) to install Debian's slurm-wlm and munge"
# Jobs stay in squeue this long after they end: the executor reads their final
# state there, and the tests read every job's record after a whole-demo run
# (about an hour on 2 busy cores), so no job may be purged before that.
MIN_JOB_AGE = 4 * 3600
# The node README's SLURM demo must complete on (issue 37): 2 CPUs, 16 GB. It
# is declared, not measured, so every machine runs the same small node.
NODE_CPUS = 2
NODE_MEM_MB = 16000
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


class ClusterError(RuntimeError):
    """The local cluster could not be started."""


@dataclass
class Cluster:
    root: Path
    conf: Path
    env: dict[str, str]
    hostname: str
    cpus: int
    mem_mb: int
    pids: dict[str, int] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client (squeue, scontrol ...) against this cluster."""
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    def job_ids(self) -> list[str]:
        """Ids of the jobs slurmctld still remembers (running, pending or recently ended)."""
        out = self.run("squeue", "--noheader", "--states=all", "--format=%i").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]


def find_binaries() -> dict[str, str]:
    """Absolute paths of the daemons and clients; fail with the install hint when absent."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
    found = {name: shutil.which(name, path=search) for name in (*DAEMONS, *CLIENTS)}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        raise ClusterError(f"SLURM/munge binaries missing: {', '.join(missing)}; {MISSING_HINT}")
    return {name: str(path) for name, path in found.items()}


def short_hostname() -> str:
    # slurmd finds its NodeName by the short hostname, as `hostname -s` prints it.
    return socket.gethostname().split(".")[0]


def slurm_conf(root: Path, hostname: str, cpus: int, mem_mb: int) -> str:
    d = root
    return "\n".join(
        [
            "ClusterName=crossemotion-test",
            f"SlurmctldHost={hostname}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={d / 'munge.socket'}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # No cgroups in containers: track processes by parentage, bind nothing.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "ReturnToService=2",
            f"MinJobAge={MIN_JOB_AGE}",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "SlurmctldTimeout=60",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            # slurmd takes the node size from this file instead of the hardware,
            # so the tests schedule on the same small node on any machine.
            "SlurmdParameters=config_overrides",
            f"NodeName={hostname} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN",
            "PartitionName=debug Default=YES Nodes=ALL MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own session: a Ctrl-C in the test runner must not reach the daemons before stop().
    with log.open("ab") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _wait(predicate, what: str, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{_tail(p)}" for p in logs)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def _tail(path: Path, n: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def start(root: Path, timeout: float = 60.0) -> Cluster:
    """Start munged, slurmctld and slurmd under `root`; return once the node is idle."""
    bins = find_binaries()
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    # munged refuses keys and sockets in group/world-writable folders.
    root.chmod(0o700)
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    hostname = short_hostname()
    cpus, mem_mb = NODE_CPUS, NODE_MEM_MB
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, hostname, cpus, mem_mb))
    env = {
        **os.environ,
        "SLURM_CONF": str(conf),
        "PATH": os.pathsep.join([str(Path(bins["sbatch"]).parent), os.environ.get("PATH", "")]),
    }
    cluster = Cluster(root, conf, env, hostname, cpus, mem_mb)
    try:
        _link_default_conf(conf)
        _start_munge(cluster, bins)
        _start_slurm(cluster, bins, timeout)
    except BaseException:
        stop(cluster)
        raise
    (root / "pids").write_text("".join(f"{k} {v}\n" for k, v in cluster.pids.items()))
    return cluster


def _link_default_conf(conf: Path) -> None:
    if DEFAULT_CONF.is_symlink() and not DEFAULT_CONF.resolve().exists():
        DEFAULT_CONF.unlink()  # left behind by a killed test session
    if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
        if DEFAULT_CONF.is_symlink() and DEFAULT_CONF.resolve() == conf:
            return
        raise ClusterError(
            f"{DEFAULT_CONF} exists (a real SLURM, or another test cluster): the test "
            "cluster needs that path for the jobs' inner srun; run the tests elsewhere"
        )
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_CONF.symlink_to(conf)


def _unlink_default_conf(conf: Path) -> None:
    if DEFAULT_CONF.is_symlink() and Path(os.readlink(DEFAULT_CONF)) == conf:
        DEFAULT_CONF.unlink()


def _start_munge(cluster: Cluster, bins: dict[str, str]) -> None:
    root = cluster.root
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = root / "munge.socket"
    proc = _spawn(
        [
            bins["munged"],
            "--foreground",
            "--force",
            f"--socket={sock}",
            f"--key-file={key}",
            f"--pid-file={root / 'munged.pid'}",
            f"--log-file={root / 'munged.log'}",
            f"--seed-file={root / 'munged.seed'}",
        ],
        root / "munged.out",
        cluster.env,
    )
    cluster.pids["munged"] = proc.pid
    _wait(sock.exists, "the munge socket", 20, [root / "munged.out", root / "munged.log"])


def _start_slurm(cluster: Cluster, bins: dict[str, str], timeout: float) -> None:
    root, conf = cluster.root, str(cluster.conf)
    # -i: ignore state from an earlier cluster in the same folder.
    ctld = _spawn([bins["slurmctld"], "-D", "-i", "-f", conf], root / "slurmctld.out", cluster.env)
    cluster.pids["slurmctld"] = ctld.pid
    logs = [root / "slurmctld.out", root / "slurmctld.log"]
    _wait(lambda: _controller_up(cluster), "slurmctld", timeout, logs)
    slurmd = _spawn([bins["slurmd"], "-D", "-f", conf], root / "slurmd.out", cluster.env)
    cluster.pids["slurmd"] = slurmd.pid
    logs += [root / "slurmd.out", root / "slurmd.log"]
    _wait(lambda: _node_state(cluster) == "idle", "the node to become idle", timeout, logs)


def _controller_up(cluster: Cluster) -> bool:
    ping = cluster.run("scontrol", "ping", check=False)
    return ping.returncode == 0 and "UP" in ping.stdout


def _node_state(cluster: Cluster) -> str:
    out = cluster.run("sinfo", "--noheader", "--format=%T", check=False)
    return out.stdout.strip().rstrip("*~#") if out.returncode == 0 else ""


def stop(cluster: Cluster) -> None:
    """Cancel every job, then stop the daemons (by pid) in reverse start order."""
    if "slurmctld" in cluster.pids:
        cluster.run("scancel", "--full", f"--user={os.getuid()}", check=False)
        cluster.run("scancel", "--full", "--state=PENDING", check=False)
    for name in reversed([n for n in DAEMONS if n in cluster.pids]):
        _terminate(cluster.pids.pop(name))
    (cluster.root / "pids").unlink(missing_ok=True)
    _unlink_default_conf(cluster.conf)


def _terminate(pid: int, grace: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by the CLI): poll existence
            done = 0 if _alive(pid) else pid
        if done:
            return
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _load(root: Path) -> Cluster:
    """Rebuild the handle of a cluster that `start` left running under `root`."""
    root = root.resolve()
    conf = root / "slurm.conf"
    pids = {}
    pid_file = root / "pids"
    if pid_file.exists():
        for line in pid_file.read_text().splitlines():
            name, pid = line.split()
            pids[name] = int(pid)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    return Cluster(root, conf, env, short_hostname(), 0, 0, pids)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(f"usage: {argv[0]} start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[2])
    if argv[1] == "start":
        cluster = start(root)
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        stop(_load(root))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
