"""The servers under test: start them on 127.0.0.1, read their CPU time and memory, stop them.

``OurServer`` runs ``chat_server.py`` with its limits lifted; ``NgircdServer`` runs Debian's
ngircd with a config of its own in a temporary directory (flood penalties off, no per-IP
limit); ``RelayServer`` is the calibration target ``relay.c``, compiled at bench time, that
shows the generator's own ceiling; ``ExternalServer`` is any IRC server already listening
somewhere on this machine, which the bench only connects to (no CPU or memory figures for it).

Every process started here is stopped by its own PID: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import io
import ipaddress
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT_SERVER = ROOT / "chat_server.py"
RELAY_SOURCE = ROOT / "bench" / "relay.c"
NGIRCD = "/usr/sbin/ngircd"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
START_TIMEOUT = 15.0
STOP_GRACE = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel says is free now (there is a small race until the server binds)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_listening(host: str, port: int, deadline: float) -> None:
    """Poll until a TCP connect succeeds, or raise TimeoutError at ``deadline``."""
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port}") from None
            time.sleep(0.05)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def process_rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/<pid>/statm."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_KB


class Server:
    """Something listening on host:port. Subclasses that own a process also measure it."""

    name = "server"
    autojoin: bool | None = None  # True: the server puts users in #chat itself; None: detect
    more_ports: tuple[int, ...] = ()  # other nodes of the same chat: clients spread over all

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start (or check) the server; afterwards host and port are where it listens."""

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.pid) if self.pid else None

    def rss_kb(self) -> int | None:
        return process_rss_kb(self.pid) if self.pid else None

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()  # by PID: only the process this object started
            proc.wait(STOP_GRACE)

    def describe(self) -> str:
        return self.name


class OurServer(Server):
    """``chat_server.py`` on a kernel-chosen port, with its per-client limits lifted.

    ``script`` defaults to the work tree's ``chat_server.py``; ``snapshot`` writes the file as
    it is at a git revision to a temporary directory, so a run measures one known version.
    """

    name = "ours"
    autojoin = True
    SENDQ = 64 << 20  # bytes: far above anything the bench's window lets pile up
    # Flags that lift a limit, used when the server's --help lists them.
    LIFTS = [
        ("--no-flood-control", []),
        ("--max-clients", ["100000"]),
        ("--max-per-ip", ["100000"]),
    ]

    def __init__(self, python: str = sys.executable, log_dir: Path | None = None,
                 script: Path = CHAT_SERVER, history: bool = False) -> None:
        super().__init__()
        # "ours" runs without history, "ours+history" with a fresh history file per start:
        # the two side by side show what storing every room line costs.
        self.history = history
        self.history_dir: tempfile.TemporaryDirectory | None = None
        if history:
            self.name = "ours+history"
        self.python = python
        self.log_dir = log_dir
        self.script = Path(script)
        self.log_path: Path | None = None
        self._command: list[str] | None = None

    @staticmethod
    def snapshot(revision: str, directory: Path) -> Path:
        """The server as committed at ``revision`` (``chat_server.py`` and the package beside it,
        if it had one), unpacked into a fresh ``directory``; returns its ``chat_server.py``."""
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            # Our own repository's archive; the filter (3.11.4 and later) also refuses odd paths.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(directory, filter="data")
            else:
                tar.extractall(directory)
        return directory / "chat_server.py"

    def command(self) -> list[str]:
        if self._command is None:
            usage = subprocess.run(
                [self.python, str(self.script), "--help"], capture_output=True, text=True,
                timeout=30, cwd=ROOT,
            ).stdout
            command = [
                self.python, str(self.script), "--host", self.host, "--port", "0",
                "--sendq", str(self.SENDQ), "--log-level", "WARNING",
                "--ping-interval", "86400", "--ping-timeout", "86400",
                "--register-timeout", "86400",
            ]
            for flag, values in self.LIFTS:
                if flag in usage:
                    command += [flag, *values]
            if "--no-history" in usage and not self.history:
                command.append("--no-history")
            self._command = command
        return self._command

    def start(self) -> None:
        log_dir = self.log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        command = self.command()
        if self.history:  # a new, empty file each start, removed at stop
            self.history_dir = tempfile.TemporaryDirectory(dir=log_dir)
            command = [*command, "--history", self.history_dir.name + "/history.sqlite3"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        line = _read_line(self.proc.stdout, time.monotonic() + START_TIMEOUT)
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"chat_server.py did not start: {line!r} (log: {self.log_path})")
        self.port = int(line.split("listening on", 1)[1].split(",", 1)[0].rsplit(":", 1)[1])

    def stop(self) -> None:
        super().stop()
        if self.history_dir is not None:
            self.history_dir.cleanup()
            self.history_dir = None

    def describe(self) -> str:
        args = " ".join(self.command()[2:]).replace("--port 0", "--port P")
        return f"python chat_server.py {args}"


class ClusterNode(OurServer):
    """One ``chat_server.py --redis`` node: ours, its history in Redis."""

    def __init__(self, redis_url: str, index: int, log_dir: Path | None = None, script: Path = CHAT_SERVER) -> None:
        super().__init__(log_dir=log_dir, script=script)
        self.name = f"node{index}"
        self.redis_url = redis_url

    def command(self) -> list[str]:
        return [*(word for word in super().command() if word != "--no-history"), "--redis", self.redis_url]


class RedisServer(Server):
    """A ``redis-server`` on a free loopback port that keeps nothing on disk."""

    name = "redis"

    def start(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [redis_server, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_listening(self.host, self.port, time.monotonic() + START_TIMEOUT)


class ClusterServer(Server):
    """``nodes`` cluster nodes and the ``redis-server`` they share, all started (and stopped,
    by PID) here. Clients are spread over the nodes; CPU and memory are the nodes' together,
    and Redis's CPU is kept apart (``redis_cpu_seconds``)."""

    autojoin = True

    def __init__(self, nodes: int, log_dir: Path | None = None, script: Path = CHAT_SERVER) -> None:
        super().__init__()
        self.name = f"cluster-{nodes}"
        self.count, self.log_dir, self.script = nodes, log_dir, script
        self.redis = RedisServer()
        self.nodes: list[ClusterNode] = []

    def start(self) -> None:
        self.redis.start()
        url = f"redis://{self.redis.host}:{self.redis.port}/0"
        for index in range(self.count):
            node = ClusterNode(url, index, self.log_dir, self.script)
            self.nodes.append(node)
            node.start()
        self.host, self.port = self.nodes[0].host, self.nodes[0].port
        self.more_ports = tuple(node.port for node in self.nodes[1:])

    def cpu_seconds(self) -> float | None:
        if not self.nodes:
            return None
        return sum(node.cpu_seconds() or 0.0 for node in self.nodes) + (self.redis_cpu_seconds() or 0.0)

    def redis_cpu_seconds(self) -> float | None:
        return self.redis.cpu_seconds()

    def rss_kb(self) -> int | None:
        return sum(node.rss_kb() or 0 for node in self.nodes) if self.nodes else None

    def alive(self) -> bool:
        return all(node.alive() for node in self.nodes) and self.redis.alive()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []
        self.redis.stop()

    def describe(self) -> str:
        return (f"redis-server --save '' --appendonly no; {self.count} x "
                f"python chat_server.py ... --redis redis://127.0.0.1:R/0")


class RelayUnavailable(RuntimeError):
    """The calibration relay cannot be built here (no C compiler, or it failed)."""


class RelayServer(Server):
    """``relay.c``: the least work per delivery, so that what it reaches is the generator's ceiling.

    Compiled once per bench process with the system C compiler into a temporary directory.
    """

    name = "relay"
    autojoin = False  # clients JOIN after 001, as with ngircd
    _binary: Path | None = None
    _build_dir: tempfile.TemporaryDirectory | None = None

    @classmethod
    def build(cls) -> Path:
        """Path to the compiled relay; raises ``RelayUnavailable`` with the reason if it cannot be."""
        if cls._binary is not None:
            return cls._binary
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise RelayUnavailable("no C compiler (cc or gcc) on PATH to build bench/relay.c")
        cls._build_dir = tempfile.TemporaryDirectory(prefix="bench-relay-")
        binary = Path(cls._build_dir.name) / "relay"
        built = subprocess.run([compiler, "-O2", "-o", str(binary), str(RELAY_SOURCE)],
                               capture_output=True, text=True, timeout=120)
        if built.returncode != 0:
            raise RelayUnavailable(f"{compiler} could not build bench/relay.c: {built.stderr.strip()}")
        cls._binary = binary
        return binary

    def __init__(self, log_dir: Path | None = None) -> None:
        super().__init__()
        self.log_dir = log_dir

    def start(self) -> None:
        binary = self.build()
        log_dir = self.log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "relay.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), self.host, "0"], stdout=subprocess.PIPE, stderr=log,
                stdin=subprocess.DEVNULL,
            )
        line = _read_line(self.proc.stdout, time.monotonic() + START_TIMEOUT)
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"relay did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def describe(self) -> str:
        return self.describe_static()

    @staticmethod
    def describe_static() -> str:
        return "cc -O2 -o <tmp>/relay bench/relay.c; <tmp>/relay 127.0.0.1 0"


def _read_line(stream, deadline: float) -> str:
    """One line from a child's stdout, waiting no later than ``deadline``."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace").strip()


NGIRCD_CONF = """\
# Written by bench/servers.py for one benchmark run; see docs/benchmarks.md.
[Global]
Name = bench.ngircd.local
Info = ngircd under benchmark
AdminInfo1 = bench
AdminInfo2 = bench
AdminEMail = bench@localhost
Listen = {host}
Ports = {port}
MotdPhrase = Welcome to the benchmark.
IncludeDir = {dir}/conf.d
HelpFile = {dir}/help.txt

[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 10
MaxNickLength = 30
MaxPenaltyTime = 0
PingTimeout = 86400
PongTimeout = 86400

[Options]
DNS = no
Ident = no
PAM = no

[Channel]
Name = #chat
Topic = benchmark room
"""


def ensure_ngircd() -> str:
    """Path to ngircd, installing Debian's package first if it is missing."""
    found = shutil.which("ngircd") or (NGIRCD if os.path.exists(NGIRCD) else None)
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("ngircd not found: apt-get install -y ngircd", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "ngircd"], check=True, env=env)
    # Debian starts the packaged service on a default port; the bench uses its own instance.
    found = shutil.which("ngircd") or NGIRCD
    if not os.path.exists(found):
        raise RuntimeError("ngircd is still missing after apt-get install")
    return found


class NgircdServer(Server):
    """Debian's ngircd in the foreground (-n) with a config of its own, on a free port."""

    name = "ngircd"
    autojoin = False  # clients JOIN #chat themselves after 001

    def __init__(self, log_dir: Path | None = None) -> None:
        super().__init__()
        self.binary = ensure_ngircd()
        self.log_dir = log_dir
        self.workdir: tempfile.TemporaryDirectory | None = None
        self.conf_path: Path | None = None

    def write_config(self) -> Path:
        self.workdir = tempfile.TemporaryDirectory(prefix="bench-ngircd-")
        base = Path(self.workdir.name)
        (base / "conf.d").mkdir()
        (base / "help.txt").write_text("bench\n")
        self.conf_path = base / "ngircd.conf"
        self.conf_path.write_text(NGIRCD_CONF.format(host=self.host, port=self.port, dir=base))
        return self.conf_path

    def start(self) -> None:
        self.port = free_port(self.host)
        conf = self.write_config()
        log_dir = self.log_dir or Path(self.workdir.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "ngircd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-n", "-f", str(conf)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        try:
            wait_listening(self.host, self.port, time.monotonic() + START_TIMEOUT)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        super().stop()
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

    def describe(self) -> str:
        return self.describe_static()

    @staticmethod
    def describe_static() -> str:
        return "ngircd -n -f <tmp>/ngircd.conf (config below)"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ExternalServer(Server):
    """An IRC server someone else started; the bench only connects to it."""

    def __init__(self, address: str) -> None:
        super().__init__()
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        if not _is_loopback(self.host):
            raise ValueError(f"{address}: the bench only loads servers on this machine (127.0.0.0/8, ::1)")
        self.name = f"extra:{self.host}:{self.port}"

    def start(self) -> None:
        wait_listening(self.host, self.port, time.monotonic() + START_TIMEOUT)

    def stop(self) -> None:
        """Not ours to stop."""
