"""A real one-node Slurm cluster on this machine: munged + slurmctld + slurmd as root, ``CPUs=2``, all state in one
folder (config, spool, state, logs, munge key and socket), nothing written to /etc.

    python tests/slurm_cluster.py up   [--dir DIR]   # install slurm-wlm + munge if missing, start, wait until idle
    python tests/slurm_cluster.py down [--dir DIR]   # cancel its jobs, stop the daemons (by their pid files)
    export SLURM_CONF=DIR/slurm.conf                  # (printed by `up`) then sbatch / srun / sinfo use it

``make slurm-up`` / ``make slurm-down`` run these; ``tests/test_slurm.py`` starts one cluster per test session with
:func:`start` and stops it with :func:`stop` (also when a test fails), keeping the folder with the daemons' logs.
Clients find the cluster through ``SLURM_CONF`` only (:meth:`Cluster.env`), so a machine's own Slurm setup is left
alone. The settings are the smallest that run jobs without cgroups or accounting (Slurm 22.05, Debian bookworm):
``proctrack/linuxproc``, ``task/none``, no ``cgroup.conf`` (22.05 refuses ``CgroupPlugin=disabled``), no slurmdbd
(``sacct`` is unavailable; submitit then follows its jobs through their result files, and says so in a warning).

Needs root (the daemons run as ``SlurmUser=root``) and ``apt-get`` when the packages are missing; otherwise
:class:`SlurmUnavailable` says why (the tests skip with that reason).
"""
import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("slurm_cluster")

PACKAGES = ("slurm-wlm", "munge")  # Debian: slurmctld, slurmd, slurm-client come with slurm-wlm
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo", "scontrol", "scancel", "squeue")
DEFAULT_DIR = Path("/tmp/music-ssl-slurm")
CLUSTER_NAME = "musicssl"
PARTITION = "debug"
START_TIMEOUT_S = 60
KILL_WAIT_S = 5  # seconds between SIGTERM and SIGKILL when Slurm ends or requeues a job (Slurm's default: 30)
CRED_EXPIRE_S = 5  # a requeued job waits this long + 1 s before it may start again (Slurm's default: 120)


class SlurmUnavailable(RuntimeError):
    """This machine cannot run the test cluster (not root, no apt-get, the install failed); the message says why."""


def sbin_path() -> str:
    """PATH with the sbin folders first (the daemons live there; a non-login root shell may lack them)."""
    return os.pathsep.join(["/usr/sbin", "/sbin", os.environ.get("PATH", "/usr/bin:/bin")])


def missing_programs() -> list:
    return [p for p in PROGRAMS if shutil.which(p, path=sbin_path()) is None]


def ensure_installed() -> None:
    """Install ``slurm-wlm`` and ``munge`` with apt-get when any of their programs is missing (root only)."""
    missing = missing_programs()
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"Slurm programs {missing} are missing and installing them needs root "
                               f"(apt-get install {' '.join(PACKAGES)})")
    apt = shutil.which("apt-get", path=sbin_path())
    if apt is None:
        raise SlurmUnavailable(f"Slurm programs {missing} are missing and there is no apt-get to install "
                               f"{' '.join(PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=sbin_path())
    logger.info("installing %s with apt-get", " ".join(PACKAGES))
    steps = ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES])
    for step in steps:
        proc = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise SlurmUnavailable(f"{' '.join(step)} failed ({proc.returncode}): {tail}")
    if missing_programs():
        raise SlurmUnavailable(f"apt-get installed {' '.join(PACKAGES)} but {missing_programs()} are still missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_name() -> str:
    """This machine's short host name when it resolves (fairseq's rendezvous connects to the first node's name,
    as on a real cluster), else ``localhost``."""
    name = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(name)
    except OSError:
        return "localhost"
    return name


def memory_mb() -> int:
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return kib // 1024 - 512  # leave the daemons some room


def slurm_conf(state: Path, node: str, cpus: int) -> str:
    """The cluster's ``slurm.conf``: one node, one partition, root daemons, no cgroups, no accounting."""
    return f"""\
# A one-node test cluster (tests/slurm_cluster.py); every path is under {state}
ClusterName={CLUSTER_NAME}
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={state / 'munge' / 'munge.socket'},cred_expire={CRED_EXPIRE_S}
StateSaveLocation={state / 'ctld'}
SlurmdSpoolDir={state / 'spool' / '%n'}
SlurmctldPidFile={state / 'slurmctld.pid'}
SlurmdPidFile={state / 'slurmd.pid'}
SlurmctldLogFile={state / 'log' / 'slurmctld.log'}
SlurmdLogFile={state / 'log' / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait={KILL_WAIT_S}
MinJobAge=600
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


@dataclass
class Cluster:
    """A running test cluster: its folder, ``slurm.conf`` and node name."""

    state: Path
    node: str

    @property
    def conf(self) -> Path:
        return self.state / "slurm.conf"

    def env(self, base: dict = None) -> dict:
        """``base`` (default: this process's environment) with ``SLURM_CONF`` naming this cluster."""
        return dict(os.environ if base is None else base, SLURM_CONF=str(self.conf))

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client command on this cluster (``sinfo``, ``squeue``, ``scontrol`` …)."""
        proc = subprocess.run(list(args), env=self.env(dict(os.environ, PATH=sbin_path())), capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}\n{self.logs()}")
        return proc

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()

    def logs(self, lines: int = 30) -> str:
        """The last ``lines`` lines of each daemon's log (for assertion messages)."""
        parts = []
        for path in sorted((self.state / "log").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts)


def write_munge_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(1024))


def start(state: Path = DEFAULT_DIR, cpus: int = 2) -> Cluster:
    """Install when needed, write the config into ``state`` (emptied first), start munged, slurmctld and slurmd,
    and wait until ``sinfo`` shows the node idle. Raises :class:`SlurmUnavailable` when this machine cannot."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("the test cluster runs its daemons as root (SlurmUser=root); run the tests as root")
    ensure_installed()
    state = Path(state).resolve()
    if (state / "slurm.conf").exists():
        stop(state)
    shutil.rmtree(state, ignore_errors=True)
    for sub in ("munge", "ctld", "spool", "log"):
        (state / sub).mkdir(parents=True, mode=0o700)
    os.chmod(state, 0o755)  # job steps read slurm.conf
    os.chmod(state / "munge", 0o711)  # munged: its socket reachable, its key (0600) not
    cluster = Cluster(state, node_name())
    cluster.conf.write_text(slurm_conf(state, cluster.node, cpus))
    write_munge_key(state / "munge" / "munge.key")
    env = dict(os.environ, PATH=sbin_path(), SLURM_CONF=str(cluster.conf))
    munge = state / "munge"
    daemons = (
        ["munged", "--force", f"--key-file={munge / 'munge.key'}", f"--socket={munge / 'munge.socket'}",
         f"--pid-file={state / 'munged.pid'}", f"--log-file={state / 'log' / 'munged.log'}",
         f"--seed-file={munge / 'munged.seed'}"],
        ["slurmctld", "-f", str(cluster.conf), "-c", "-i"],
        ["slurmd", "-f", str(cluster.conf), "-N", cluster.node],
    )
    try:
        for argv in daemons:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, cwd=state)
            if proc.returncode != 0:
                raise RuntimeError(f"{argv[0]} did not start ({proc.returncode}): {proc.stderr.strip()}")
            if argv[0] == "munged":
                wait_for(lambda: (munge / "munge.socket").exists(), "munged's socket", cluster)
        wait_for(lambda: cluster.node_state() == "idle", f"node {cluster.node} idle in sinfo", cluster)
    except BaseException:
        stop(state)
        raise
    logger.info("Slurm test cluster up: SLURM_CONF=%s (node %s, %d CPUs)", cluster.conf, cluster.node, cpus)
    return cluster


def wait_for(ready, what: str, cluster: Cluster, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout:.0f} s (node state {cluster.node_state()!r})\n"
                               f"{cluster.logs()}")
        time.sleep(0.25)


def stop(state: Path = DEFAULT_DIR) -> None:
    """Cancel the cluster's jobs and stop its daemons (by the pid files it wrote: slurmd and slurmctld together, then
    munged, which they authenticate with); the folder stays."""
    state = Path(state).resolve()
    conf = state / "slurm.conf"
    if conf.exists() and (state / "slurmctld.pid").exists():
        cancel_jobs(conf)
    for daemons in (("slurmd", "slurmctld"), ("munged",)):
        ending = [pid for pid in map(lambda d: signal_daemon(state, d), daemons) if pid]
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in ending) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in ending:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def cancel_jobs(conf: Path, timeout: float = 3 * KILL_WAIT_S + 10) -> None:
    """Cancel every job of the cluster and wait (up to ``timeout``) until none is left, so that no job step's
    processes outlive slurmd."""
    env = dict(os.environ, PATH=sbin_path(), SLURM_CONF=str(conf))
    subprocess.run(["scancel", "--full", "--quiet", f"--partition={PARTITION}"], capture_output=True, env=env,
                   timeout=30)
    deadline, active = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        left = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %T"], capture_output=True, text=True, env=env,
                              timeout=30)
        active = [line for line in left.stdout.splitlines() if line.split()[-1] in ("RUNNING", "COMPLETING")]
        if left.returncode != 0 or not active:
            return
        time.sleep(0.2)
    logger.warning("jobs still ending after %.0f s: %s", timeout, active)


def signal_daemon(state: Path, name: str):
    """SIGTERM the daemon ``name`` of the pid file ``state/<name>.pid`` when that pid still runs ``name``; its pid,
    or None (no pid file, gone already, or the pid now belongs to another program: left alone)."""
    pid_file = state / f"{name}.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        pid_file.unlink(missing_ok=True)
        return None
    pid_file.unlink()
    if not comm.startswith(name[:15]):
        logger.warning("pid %d is %s, not %s: left alone", pid, comm, name)
        return None
    os.kill(pid, signal.SIGTERM)
    return pid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"the cluster's folder (default {DEFAULT_DIR})")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the node (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO").upper(), format="%(levelname)s %(message)s")
    if args.action == "down":
        stop(args.dir)
        logger.info("Slurm test cluster in %s stopped (its logs stay in %s)", args.dir, args.dir / "log")
        return 0
    try:
        cluster = start(args.dir, args.cpus)
    except SlurmUnavailable as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    sys.stdout.write(f"export SLURM_CONF={cluster.conf}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
