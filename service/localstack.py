"""Local Kafka and PostgreSQL servers for development and tests, run as plain processes.

Kafka is Apache Kafka's released broker (KRaft, single node) from the jars that Maven fetches into
a cache (deploy/local/kafka-pom.xml pins the version); PostgreSQL is a throwaway cluster made with
``initdb`` and run with ``pg_ctl``. Each server lives in its own work dir: starting again on the
same work dir reuses its data and its ports, so tests can kill and restart a server.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_POM = REPO_ROOT / "deploy" / "local" / "kafka-pom.xml"
KAFKA_LOG4J2 = REPO_ROOT / "deploy" / "local" / "kafka-log4j2.properties"
POSTGRES_INSTALL_HINT = (
    "PostgreSQL server binaries not found: install Debian's postgresql package "
    "(apt-get install postgresql)"
)
_JVM_OPTIONS = ("-XX:+UseSerialGC", "-Xms256m", "-Xmx768m", "-Djava.awt.headless=true")
_PG_USER = "kb"
_PG_DATABASE = "kb"
_PG_SYSTEM_USER = "kbingest"  # created only when running as root and no `postgres` user exists


class LocalStackError(Exception):
    """An expected failure of the local stack, with a one-line message.

    ``details`` holds supporting text (e.g. the tail of a server log) for humans and test output.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def _read_kafka_version(pom: Path) -> str:
    """Return ``<kafka.version>`` from the pom, or "unknown" when the pom is not there."""
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError):
        return "unknown"
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "kafka.version" and element.text:
            return element.text.strip()
    return "unknown"


KAFKA_VERSION: str = _read_kafka_version(KAFKA_POM)


# --- ports and processes --------------------------------------------------------------------


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Return whether something holds the TCP port, so that a server could not bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Connections lingering in TIME_WAIT do not stop a server from binding; only a holder does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _free_port_other_than(*taken: int) -> int:
    while True:
        port = free_port()
        if port not in taken:
            return port


def _stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/PID/stat after the command name, or None if there is no pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may contain spaces; the state follows the last ')'.
    return text.rsplit(")", 1)[1].split()


def _process_group(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields else None


def pid_alive(pid: int) -> bool:
    """Return whether the process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _names(argv: str, path: Path) -> bool:
    """Return whether a command line names ``path`` or a file inside it (not a mere prefix)."""
    return re.search(re.escape(str(path.resolve())) + r"(/|\s|$)", argv) is not None


def pid_runs_from(pid: int, workdir: Path) -> bool:
    """Return whether the live process ``pid`` was started on ``workdir`` (guards against reuse)."""
    return pid_alive(pid) and _names(_cmdline(pid), workdir)


def server_processes(workdir: Path) -> list[int]:
    """Return the pids of live java/postgres processes whose command line names ``workdir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = _cmdline(pid)
        program = Path(argv.split(" ", 1)[0]).name
        if program in ("java", "postgres") and _names(argv, workdir) and pid_alive(pid):
            found.append(pid)
    return sorted(found)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if _process_group(pid) == pgid and pid_alive(pid):
                members.append(pid)
    return members


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid`` (our servers lead their own group)."""
    target_group = _process_group(pid)
    with contextlib.suppress(ProcessLookupError):
        if target_group == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_group_gone(
    pid: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> bool:
    """Wait until the process and its group have exited; reap it if it is our child."""
    deadline = time.monotonic() + timeout
    while True:
        # Our child must be reaped (poll does that), or it lingers as a zombie and its Popen
        # complains; anyone else's process is gone once it is a zombie.
        leader_gone = process.poll() is not None if process is not None else not pid_alive(pid)
        if leader_gone and not _group_members(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _terminate(
    pid: int,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within ``timeout``."""
    _signal_group(pid, signal.SIGTERM)
    if _wait_group_gone(pid, timeout, process):
        return
    _kill_group(pid, process)


def _kill_group(pid: int, process: subprocess.Popen[bytes] | None = None) -> None:
    _signal_group(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # members left behind when the leader died first
    if not _wait_group_gone(pid, 10.0, process):
        raise LocalStackError(f"process {pid} did not exit after SIGKILL")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _last_problem(text: str) -> str:
    """Return the most telling line of a log tail: the last ERROR/FATAL line, else the last one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"\b(ERROR|FATAL|Exception|Error:)", line):
            return line[:300]
    return lines[-1][:300] if lines else "(no output)"


def _run(
    argv: Sequence[str], *, what: str, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion; any failure becomes a LocalStackError."""
    try:
        result = subprocess.run(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LocalStackError(f"{what}: {argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise LocalStackError(f"{what} timed out after {timeout:.0f}s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise LocalStackError(
            f"{what} failed (exit {result.returncode}): {_last_problem(output)}", output
        )
    return result


# --- Kafka ----------------------------------------------------------------------------------


def kafka_jar_dir() -> Path:
    """Return the folder of Kafka's jars, fetching them with Maven into the cache if needed.

    ``KB_INGEST_KAFKA_JARS`` names a ready folder instead; otherwise the cache is
    ``${KB_INGEST_CACHE:-<repo>/.cache}/kafka/<version>``, complete once it holds ``.complete``.

    Raises:
        LocalStackError: the pom or Maven is missing, or the fetch failed.
    """
    override = os.environ.get("KB_INGEST_KAFKA_JARS")
    if override:
        jars = Path(override)
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise LocalStackError(f"KB_INGEST_KAFKA_JARS={override} holds no kafka_2.13 jar")
        return jars
    if not KAFKA_POM.is_file():
        raise LocalStackError(f"{KAFKA_POM} not found: set KB_INGEST_KAFKA_JARS to a Kafka jar dir")
    cache = Path(os.environ.get("KB_INGEST_CACHE") or REPO_ROOT / ".cache")
    jars = cache / "kafka" / KAFKA_VERSION
    if (jars / ".complete").is_file():
        return jars
    if shutil.which("mvn") is None:
        raise LocalStackError("mvn not found: run deploy/local/install-deps.sh")
    jars.parent.mkdir(parents=True, exist_ok=True)
    # Fetch into a private folder, then rename: a concurrent or interrupted fetch never leaves a
    # folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{KAFKA_VERSION}.", dir=jars.parent))
    try:
        _run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ],
            what=f"fetching Apache Kafka {KAFKA_VERSION} jars with maven",
            timeout=600,
        )
        (staging / ".complete").touch()
        if jars.exists() and not (jars / ".complete").exists():
            shutil.rmtree(jars)
        with contextlib.suppress(OSError):  # another fetch may have won the rename
            staging.rename(jars)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (jars / ".complete").is_file():
        raise LocalStackError(f"could not fill the Kafka jar cache {jars}")
    return jars


@dataclass
class KafkaServer:
    """A local broker: where it listens, where its files live, and its process."""

    port: int
    controller_port: int
    workdir: Path
    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / "server.log"

    def alive(self) -> bool:
        return pid_runs_from(self.pid, self.workdir)


def _kafka_properties(workdir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "# Written by service/localstack.py: a single-node KRaft broker for local runs.",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={workdir / 'data'}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Fewer internal partitions than the defaults (50) make the first group join and the
            # first transaction quick on one small node.
            "offsets.topic.num.partitions=4",
            "transaction.state.log.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            # A broker restarted after a crash cannot register until its old session expires
            # (default 9 s); one node has no peers to protect from a short timeout.
            "broker.heartbeat.interval.ms=500",
            "broker.session.timeout.ms=3000",
            # Chunk messages can be large.
            "message.max.bytes=33554432",
            "replica.fetch.max.bytes=33554432",
            "",
        ]
    )


def _kafka_ports(properties: Path) -> tuple[int, int] | None:
    """Return (port, controller_port) written in a server.properties, or None."""
    try:
        text = properties.read_text()
    except FileNotFoundError:
        return None
    broker = re.search(r"^listeners=PLAINTEXT://[^:]+:(\d+)", text, re.MULTILINE)
    controller = re.search(r"CONTROLLER://[^:]+:(\d+)", text)
    if broker is None or controller is None:
        return None
    return int(broker.group(1)), int(controller.group(1))


def _kafka_cluster_id() -> str:
    """Return a new cluster id the way Kafka's Uuid.randomUuid does (no JVM start needed)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _java_command(jars: Path, workdir: Path, main: str, *args: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise LocalStackError("java not found: run deploy/local/install-deps.sh")
    return [
        java,
        *_JVM_OPTIONS,
        f"-Dkafka.logs.dir={workdir / 'logs'}",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J2}",
        "-cp",
        f"{jars}/*",
        main,
        *args,
    ]


def _kafka_live_brokers(port: int, timeout: float) -> int | None:
    """Ask the broker for metadata (Metadata v4, no topics); return how many brokers it lists.

    A KRaft broker answers before it is unfenced, with no brokers; clients can use it once it
    lists itself. Returns None when nothing answers a well-formed reply.
    """
    client_id = b"kb-ingest-localstack"
    request = (
        struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">i?", 0, False)
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            header = _recv_exact(sock, 16)  # size, correlation id, throttle ms, broker count
    except OSError:
        return None
    if header is None:
        return None
    _size, correlation_id, _throttle, brokers = struct.unpack(">iiii", header)
    return brokers if correlation_id == 1 else None


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def start_kafka(workdir: Path, port: int | None = None, timeout: float = 60) -> KafkaServer:
    """Start a single-node KRaft broker on ``workdir`` and wait until clients can use it.

    A new work dir is formatted first; a used one keeps its data and, unless ``port`` says
    otherwise, its ports. The broker runs in its own session, its output in the work dir.

    Raises:
        LocalStackError: a port is in use, the broker is already running, java or the jars are
            missing, or the broker exited or did not answer within ``timeout`` seconds.
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    properties = workdir / "server.properties"
    pid_file = workdir / "kafka.pid"
    if pid_file.exists():
        old_pid = int(pid_file.read_text().strip() or 0)
        if old_pid and pid_runs_from(old_pid, workdir):
            raise LocalStackError(f"kafka is already running from {workdir} (pid {old_pid})")
    previous = _kafka_ports(properties)
    if port is None:
        port = previous[0] if previous else _free_port_other_than()
    if port_in_use(port):
        raise LocalStackError(f"port {port} is already in use")
    controller_port = previous[1] if previous else 0
    if not controller_port or controller_port == port or port_in_use(controller_port):
        # The controller port is ours to choose; with a static voter set it lives in the config
        # only, so a restart may move it.
        controller_port = _free_port_other_than(port)
    if previous != (port, controller_port):
        properties.write_text(_kafka_properties(workdir, port, controller_port))

    jars = kafka_jar_dir()
    if not (workdir / "data" / "meta.properties").exists():
        _run(
            _java_command(
                jars,
                workdir,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _kafka_cluster_id(),
                "-c",
                str(properties),
            ),
            what="formatting kafka storage",
            timeout=120,
            cwd=workdir,
        )

    console = workdir / "kafka.out"
    with console.open("ab") as out:
        process = subprocess.Popen(
            _java_command(jars, workdir, "kafka.Kafka", str(properties)),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    server = KafkaServer(port, controller_port, workdir, process.pid, process)
    try:
        _wait_for_kafka(server, timeout)
    except BaseException:
        _kill_group(process.pid, process)
        raise
    return server


def _wait_for_kafka(server: KafkaServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    assert server.process is not None
    while True:
        code = server.process.poll()
        if code is not None:
            tail = _tail(server.workdir / "kafka.out") + "\n" + _tail(server.log_path)
            raise LocalStackError(
                f"kafka exited with code {code} during startup ({server.log_path}): "
                f"{_last_problem(tail)}",
                tail,
            )
        brokers = _kafka_live_brokers(server.port, timeout=2.0)
        if brokers:
            return
        if time.monotonic() >= deadline:
            tail = _tail(server.log_path)
            raise LocalStackError(
                f"kafka did not answer on port {server.port} within {timeout:.0f}s "
                f"({server.log_path}): {_last_problem(tail)}",
                tail,
            )
        time.sleep(0.2)


def _kafka_running(server: KafkaServer) -> bool:
    if server.process is not None:
        # Our child: its pid cannot be reused before we reap it.
        return server.process.poll() is None
    return pid_runs_from(server.pid, server.workdir)


def stop_kafka(server: KafkaServer, timeout: float = 20) -> None:
    """Shut the broker down cleanly (SIGTERM), or SIGKILL it after ``timeout`` seconds."""
    if _kafka_running(server):
        _terminate(server.pid, timeout, server.process)
    (server.workdir / "kafka.pid").unlink(missing_ok=True)


def kill_kafka(server: KafkaServer) -> None:
    """SIGKILL the broker, as a crash would (for fault tests); its data stays for a restart."""
    if _kafka_running(server):
        _kill_group(server.pid, server.process)
    (server.workdir / "kafka.pid").unlink(missing_ok=True)


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """Return the folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (PATH, then the newest
    /usr/lib/postgresql/<major>/bin).

    Raises:
        LocalStackError: no PostgreSQL server is installed.
    """
    needed = ("initdb", "pg_ctl", "postgres")
    on_path = [shutil.which(name) for name in needed]
    if all(on_path):
        # Debian links the server binaries into PATH at times; psql & co sit beside the targets.
        return Path(str(on_path[0])).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else -1,
        reverse=True,
    )
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in needed):
            return candidate
    raise LocalStackError(POSTGRES_INSTALL_HINT)


@dataclass
class PostgresServer:
    """A local PostgreSQL cluster: its port, its work dir (PGDATA is ``workdir/pgdata``), its
    postmaster pid."""

    port: int
    workdir: Path
    pid: int

    @property
    def url(self) -> str:
        return f"postgresql://{_PG_USER}:{_PG_USER}@127.0.0.1:{self.port}/{_PG_DATABASE}"

    @property
    def pgdata(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    def alive(self) -> bool:
        return pid_runs_from(self.pid, self.pgdata)


def _postgres_run_as() -> str | None:
    """Return the system user to run the server as when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _PG_SYSTEM_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    _run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            _PG_SYSTEM_USER,
        ],
        what=f"creating system user {_PG_SYSTEM_USER}",
        timeout=30,
    )
    return _PG_SYSTEM_USER


def _as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else list(argv)


def _hand_over(workdir: Path, user: str) -> None:
    """Give ``user`` the work dir and a way through its parents (private tmp dirs are 0700)."""
    entry = pwd.getpwnam(user)
    for path in [workdir, *workdir.rglob("*")]:
        if path.lstat().st_uid != entry.pw_uid:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    for parent in workdir.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        first = (pgdata / "postmaster.pid").read_text().splitlines()[0]
    except (FileNotFoundError, IndexError):
        return None
    return int(first) if first.strip().isdigit() else None


def _clear_stale_lock(pgdata: Path, old_pid: int) -> None:
    """Remove the postmaster.pid of a dead postmaster.

    Postgres itself only asks whether the pid exists, and a killed postmaster stays a zombie
    until init reaps it, which blocks an immediate restart.
    """
    if not _wait_group_gone(old_pid, 5.0):
        raise LocalStackError(f"processes of an old postgres (group {old_pid}) are still running")
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    for lock in pgdata.parent.glob(".s.PGSQL.*.lock"):  # the Unix socket's lock names it too
        with contextlib.suppress(FileNotFoundError, IndexError, ValueError):
            if int(lock.read_text().splitlines()[0]) == old_pid:
                lock.unlink()


def _postgres_port(workdir: Path) -> int | None:
    try:
        return int((workdir / "port").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _psql(bin_dir: Path, port: int, database: str, sql: str, timeout: float) -> str:
    result = _run(
        [
            str(bin_dir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            _PG_USER,
            "-d",
            database,
            "-c",
            sql,
        ],
        what="psql",
        timeout=timeout,
    )
    return result.stdout.strip()


def start_postgres(
    workdir: Path, port: int | None = None, timeout: float = 30, durable: bool = True
) -> PostgresServer:
    """Start a PostgreSQL cluster on ``workdir`` (made with initdb if new) with database ``kb``.

    ``durable=False`` turns off fsync: fine for tests, which survive a killed server but not a
    killed machine. A used work dir keeps its data and, unless ``port`` says otherwise, its port.
    As root, the server runs as the ``postgres`` (or a created ``kbingest``) system user, which
    gets the work dir and the right to pass through (o+x) its parent folders.

    Raises:
        LocalStackError: the port is in use, the server is already running, PostgreSQL is not
            installed, or the server did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    bin_dir = postgres_bin_dir()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pgdata = workdir / "pgdata"
    old_pid = _postmaster_pid(pgdata)
    if old_pid and pid_runs_from(old_pid, pgdata):
        raise LocalStackError(f"postgres is already running from {workdir} (pid {old_pid})")
    if old_pid:
        _clear_stale_lock(pgdata, old_pid)
    if port is None:
        port = _postgres_port(workdir) or free_port()
    if port_in_use(port):
        raise LocalStackError(f"port {port} is already in use")
    (workdir / "port").write_text(f"{port}\n")

    user = _postgres_run_as()
    if user:
        _hand_over(workdir, user)
    if not (pgdata / "PG_VERSION").exists():
        shutil.rmtree(pgdata, ignore_errors=True)  # left by an interrupted initdb
        _run(
            _as_user(
                user,
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    _PG_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
            ),
            what="initdb",
            timeout=120,
            cwd=workdir,
        )

    # Unix sockets are an extra only (we connect over TCP), and their path has a length limit.
    socket_dir = str(workdir) if len(str(workdir)) < 90 else ""
    options = [
        f"-p {port}",
        f"-k '{socket_dir}'",
        "-c listen_addresses=127.0.0.1",
        "-c max_connections=200",
    ]
    if not durable:
        # Safe against a killed server (the OS still has every write), not a crashed machine;
        # synchronous_commit stays on, or a kill could lose commits still in WAL buffers.
        options += ["-c fsync=off", "-c full_page_writes=off"]
    try:
        _run(
            _as_user(
                user,
                [
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(max(1, int(deadline - time.monotonic()))),
                    "-D",
                    str(pgdata),
                    "-l",
                    str(workdir / "postgres.log"),
                    "-o",
                    " ".join(options),
                ],
            ),
            what=f"starting postgres on port {port}",
            timeout=max(1.0, deadline - time.monotonic()) + 10,
            cwd=workdir,
        )
    except LocalStackError as exc:
        tail = _tail(workdir / "postgres.log")
        pid = _postmaster_pid(pgdata)
        if pid and pid_runs_from(pid, pgdata):
            _kill_group(pid)
        message = f"{exc} ({workdir / 'postgres.log'}): {_last_problem(tail)}"
        raise LocalStackError(message, tail) from None

    pid = _postmaster_pid(pgdata)
    if pid is None:
        raise LocalStackError(f"postgres started but wrote no postmaster.pid in {pgdata}")
    server = PostgresServer(port, workdir, pid)
    try:
        _wait_for_postgres(server, bin_dir, deadline, timeout)
    except BaseException:
        _kill_group(pid)
        raise
    return server


def _wait_for_postgres(
    server: PostgresServer, bin_dir: Path, deadline: float, timeout: float
) -> None:
    while True:
        try:
            exists = _psql(
                bin_dir,
                server.port,
                "postgres",
                f"select 1 from pg_database where datname = '{_PG_DATABASE}'",
                timeout=10,
            )
            if exists != "1":
                _psql(bin_dir, server.port, "postgres", f"create database {_PG_DATABASE}", 30)
            _psql(bin_dir, server.port, _PG_DATABASE, "select 1", timeout=10)
            return
        except LocalStackError as exc:
            if not pid_alive(server.pid):
                tail = _tail(server.log_path)
                raise LocalStackError(
                    f"postgres exited during startup ({server.log_path}): {_last_problem(tail)}",
                    tail,
                ) from exc
            if time.monotonic() >= deadline:
                raise LocalStackError(
                    f"postgres did not answer on port {server.port} within {timeout:.0f}s: {exc}",
                    exc.details,
                ) from exc
            time.sleep(0.2)


def stop_postgres(server: PostgresServer, mode: str = "fast", timeout: float = 30) -> None:
    """Stop the cluster with ``pg_ctl stop -m mode``; SIGKILL it if that does not work."""
    if not pid_runs_from(server.pid, server.pgdata):
        return
    try:
        _run(
            _as_user(
                _postgres_run_as(),
                [
                    str(postgres_bin_dir() / "pg_ctl"),
                    "stop",
                    "-w",
                    "-t",
                    str(max(1, int(timeout))),
                    "-m",
                    mode,
                    "-D",
                    str(server.pgdata),
                ],
            ),
            what="stopping postgres",
            timeout=timeout + 10,
            cwd=server.workdir,
        )
    except LocalStackError:
        _kill_group(server.pid)
        return
    if not _wait_group_gone(server.pid, 10.0):
        _kill_group(server.pid)


def kill_postgres(server: PostgresServer) -> None:
    """SIGKILL the postmaster and its backends, as a crash would (for fault tests)."""
    if pid_runs_from(server.pid, server.pgdata) or _group_members(server.pid):
        _kill_group(server.pid)
    if _postmaster_pid(server.pgdata) == server.pid:
        _clear_stale_lock(server.pgdata, server.pid)
