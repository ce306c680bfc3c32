"""A private single-node SLURM for tests: munged (reused or private), slurmctld, slurmd.

Each cluster gets its own ports, its own spool/state/log directories and, unless a
system munged already answers, its own munged on a private socket, so that two test
runs on one host do not collide. Only the daemons started here are stopped, by PID.

Recipe (SPEC.md §6): Debian ``slurm-wlm`` 22.05 as root, ``ProctrackType=proctrack/linuxproc``,
``TaskPlugin=task/none``, ``select/cons_tres`` with ``CR_Core``, ``SlurmUser=root``, a node
named after the host with its real CPU count and memory.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
MUNGE_KEY = Path("/etc/munge/munge.key")
BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch")


class SlurmUnavailable(RuntimeError):
    """The host cannot run a private SLURM (reason in the message)."""


def unavailable_reason() -> str | None:
    """Why a private SLURM cannot start here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (slurmd and munged are started by the test setup)"
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install slurm-wlm munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (apt-get install munge)"
    return None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports the kernel reports free now (bound moments later)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL,
    so that a killed test run leaves no daemons behind (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def munge_works(socket_path: Path) -> bool:
    """True if a munged answers on ``socket_path`` (encode + decode round trip)."""
    if not socket_path.exists():
        return False
    try:
        token = subprocess.run(
            ["munge", "-n", "-S", str(socket_path)], capture_output=True, timeout=5, check=True
        ).stdout
        subprocess.run(
            ["unmunge", "-S", str(socket_path)], input=token, capture_output=True, timeout=5,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def _memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise SlurmUnavailable("cannot read MemTotal from /proc/meminfo")


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise SlurmUnavailable(f"{what} not ready after {timeout:.0f} s\n{tail}")


@dataclass
class SlurmCluster:
    """One private single-node SLURM. Use :meth:`start` and :meth:`stop` (or ``with``)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pesflow-slurm-")))
    mpi_default: str = "pmix"  # verified with Debian slurm-wlm 22.05 + Open MPI (srun -n 2 gpaw)
    node: str = field(default_factory=socket.gethostname)
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    munge_socket: Path = SYSTEM_MUNGE_SOCKET
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for the SLURM client commands (sinfo, sbatch, squeue, srun)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- start ------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        reason = unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged (user munge) must reach its private socket dir
        try:
            self._start_munge(timeout)
            self._write_conf()
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
            _wait(self._node_idle, timeout, "slurm node", self.root / "log" / "slurmctld.log")
        except BaseException:
            self.stop()
            raise

    def _start_munge(self, timeout: float) -> None:
        if munge_works(SYSTEM_MUNGE_SOCKET):
            self.munge_socket = SYSTEM_MUNGE_SOCKET  # reuse the host's munged
            return
        munge = pwd.getpwnam("munge")
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)], check=True)
            os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
            MUNGE_KEY.chmod(0o400)
        # A private munged on its own socket: no shared state with other runs.
        mdir = self.root / "munge"
        mdir.mkdir(mode=0o755)
        os.chown(mdir, munge.pw_uid, munge.pw_gid)
        self.munge_socket = mdir / "munge.socket"
        self._spawn(
            "munged",
            [
                "munged", "--foreground", f"--socket={self.munge_socket}",
                f"--key-file={MUNGE_KEY}", f"--pid-file={mdir / 'munged.pid'}",
                f"--log-file={mdir / 'munged.log'}", f"--seed-file={mdir / 'munged.seed'}",
            ],
            user=munge,
        )
        _wait(lambda: munge_works(self.munge_socket), timeout, "munged", mdir / "munged.log")

    def _write_conf(self) -> None:
        for sub in ("state", "spool", "log", "run", "tmp"):
            (self.root / sub).mkdir(exist_ok=True)
        memory = max(_memory_mb() - 1024, 512)  # leave the OS some room
        self.ports = dict(zip(("SlurmctldPort", "SlurmdPort"), free_ports(2), strict=True))
        lines = {
            "ClusterName": f"pesflow{os.getpid()}",
            # Loopback addresses: the host name need not resolve (containers, CI).
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            **self.ports,
            # Job IDs and TmpFS name per-job files (mpi/pmix: spmix_appdir_<uid>_<jobid>.<step>):
            # distinct ones keep two clusters' jobs apart. Ports are unique among live clusters.
            "FirstJobId": self.ports["SlurmctldPort"] * 100,
            "TmpFS": self.root / "tmp",
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "run" / "slurmctld.pid",
            "SlurmdPidFile": self.root / "run" / "slurmd.pid",
            "SlurmctldLogFile": self.root / "log" / "slurmctld.log",
            "SlurmdLogFile": self.root / "log" / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "MpiDefault": self.mpi_default,
            "MailProg": "/bin/true",
            "ReturnToService": 2,
            "SchedulerType": "sched/builtin",
            "JobCompType": "jobcomp/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "SlurmctldTimeout": 30,
            "SlurmdTimeout": 30,
            "InactiveLimit": 0,
            "KillWait": 5,
            "MinJobAge": 5,
        }
        text = "".join(f"{key}={value}\n" for key, value in lines.items())
        text += (
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} "
            "State=UNKNOWN\n"
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )
        self.conf.write_text(text)

    def _spawn(self, name: str, argv: list[str], user: pwd.struct_passwd | None = None) -> None:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 - kept open for the daemon
        kwargs: dict = {}
        if user:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            start_new_session=True, preexec_fn=_die_with_parent, **kwargs,
        )
        log.close()

    def _node_idle(self) -> bool:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                out = (self.root / f"{name}.out").read_text(errors="replace")[-2000:]
                raise SlurmUnavailable(f"{name} exited with status {proc.returncode}\n{out}")
        state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
        return state == "idle"

    # -- use --------------------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=30, check=check
        )

    def jobs(self) -> list[str]:
        """IDs of jobs this cluster still knows as pending or running."""
        out = self.run("squeue", "-h", "-o", "%i %T").stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    # -- stop -------------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> None:
        """Stop the daemons started here (by PID) and remove the cluster's directory."""
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.processes.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        shutil.rmtree(self.root, ignore_errors=True)
