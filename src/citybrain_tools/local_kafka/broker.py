"""A single-node Apache Kafka (KRaft broker+controller) on 127.0.0.1.

The broker jars come from Maven Central through Maven (``deploy/kafka-local/pom.xml``)
and are cached under ``~/.cache/citybrain/kafka-<version>``; once cached, starting a
broker needs no network.  This is for the demo and the tests only: set
``KAFKA_BOOTSTRAP_SERVERS`` to use a real cluster instead.
"""

from __future__ import annotations

import base64
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from citybrain.kafka.announced import BOOTSTRAP_FILE, PID_FILE, announced_bootstrap, pid_alive
from citybrain.paths import PROJECT_ROOT

POM = PROJECT_ROOT / "deploy" / "kafka-local" / "pom.xml"
HEAP = "1g"   # Kafka's own default (kafka-server-start.sh), as the deployed brokers' image runs
LOG4J = PROJECT_ROOT / "deploy" / "kafka-local" / "log4j2.yaml"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise BrokerError(f"{POM}: no <kafka.version> property")
    return match.group(1).strip()


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "citybrain" / f"kafka-{kafka_version()}"


def _say(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


def ensure_jars() -> Path:
    """Return the directory holding the broker jars, fetching them once with Maven."""
    libs = cache_dir() / "libs"
    marker = cache_dir() / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not installed; it is needed once to fetch the Kafka jars")
    if shutil.which("java") is None:
        raise BrokerError("Java (17+) is not installed; the Kafka broker needs it")
    _say(f"下载 Kafka {kafka_version()} jars from Maven Central (first run only) …")
    tmp = cache_dir() / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Maven could not fetch the Kafka jars:\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(kafka_version())
    _say(f"已缓存 cached {len(list(libs.glob('*.jar')))} jars in {libs}")
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# What every local KRaft node runs with, one node or three (cluster.py adds its failover
# timings); ``replicas``/``min_isr`` are those of the internal topics and the default.
_KRAFT_NODE = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dir}
# Topics are created explicitly by `citybrain topics` (with their partitions and
# compaction); a typo in a topic name must fail loudly, not create a topic.
auto.create.topics.enable=false
num.partitions=3
# The internal topics replicated like ours: on a cluster a node lost loses no committed
# offset and no transaction state, and still takes writes (two in sync of three).
default.replication.factor={replicas}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=6
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
message.max.bytes=2097152
log.retention.hours=168
# exactly_once on the transaction protocol v2 (kafka/transactions_v2.py): a transaction's
# first produce right after the last one's end finds its markers still being written, and
# the broker asks the coordinator again after this long (Kafka's 20 ms; a transaction took
# 1.2-1.5 ms here when it did not wait).
add.partitions.to.txn.retry.backoff.ms=5
# Request threads sized to the machine (request_threads below).
num.io.threads={io_threads}
num.network.threads={network_threads}
"""


def request_threads(cpus: int | None = None) -> dict[str, int]:
    """The broker's request threads on a machine of ``cpus`` cores: Kafka's 8 I/O and 3
    network threads are a server's; on two cores shared with workers, a bench and a browser
    2 and 2 took the broker's hop under load from p99 ~8 ms to ~6 (docs/performance.md "The
    broker's request threads")."""
    cpus = cpus or os.cpu_count() or 2
    return {"io_threads": min(8, max(2, cpus)), "network_threads": min(3, max(2, cpus // 2))}


_SERVER_PROPERTIES = "# Generated by citybrain: single-node KRaft broker+controller for demo/tests.\n" + _KRAFT_NODE


def server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    """The single broker's server.properties."""
    return _SERVER_PROPERTIES.format(node_id=1, voters=f"1@127.0.0.1:{controller_port}", port=port,
                                     controller_port=controller_port, log_dir=log_dir, replicas=1, min_isr=1,
                                     **request_threads())


_SECURE_PROPERTIES = """\
# A SASL_SSL listener beside the plain one (issue 17): TLS with a CA generated for this
# broker, SCRAM-SHA-512 users created when the storage is formatted.
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},SASL_SSL://127.0.0.1:{secure_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={store_password}
ssl.key.password={store_password}
"""


@dataclass(frozen=True)
class SecureListener:
    """Where and how a client reaches the SASL_SSL listener."""

    address: str
    username: str
    password: str
    cafile: Path

    def env(self) -> dict[str, str]:
        """The environment a citybrain process needs to use it (kafka/clients.py)."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.address, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": self.username,
                "KAFKA_SASL_PASSWORD": self.password, "KAFKA_SSL_CAFILE": str(self.cafile)}


def make_tls_files(directory: Path, password: str) -> tuple[Path, Path]:
    """A CA and a broker certificate it signed (for 127.0.0.1 and localhost), with Java's
    keytool: the broker's PKCS12 keystore and the CA's PEM for clients."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_store, broker_store = directory / "ca.p12", directory / "broker.p12"
    csr, signed, ca_pem = directory / "broker.csr", directory / "broker.pem", directory / "ca.pem"
    for f in (ca_store, broker_store, csr, signed, ca_pem):
        f.unlink(missing_ok=True)
    common = ["-storetype", "PKCS12", "-storepass", password, "-keypass", password]

    def keytool(*args: str) -> None:
        done = subprocess.run(["keytool", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise BrokerError(f"keytool {args[0]} failed: {done.stdout}{done.stderr}")

    keytool("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", "30",
            "-dname", "CN=citybrain local CA", "-ext", "bc:c", "-keystore", str(ca_store), *common)
    keytool("-exportcert", "-rfc", "-alias", "ca", "-file", str(ca_pem), "-keystore", str(ca_store),
            "-storetype", "PKCS12", "-storepass", password)
    keytool("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "30",
            "-dname", "CN=localhost", "-keystore", str(broker_store), *common)
    keytool("-certreq", "-alias", "broker", "-file", str(csr), "-keystore", str(broker_store), *common)
    keytool("-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(signed), "-rfc",
            "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-validity", "30", "-keystore", str(ca_store), *common)
    keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem), "-keystore", str(broker_store),
            *common)
    keytool("-importcert", "-noprompt", "-alias", "broker", "-file", str(signed), "-keystore", str(broker_store),
            *common)
    return broker_store, ca_pem


@dataclass
class LocalBroker:
    """A broker whose files live in ``state_dir`` (pid, port, config, data, log)."""

    state_dir: Path
    secure: SecureListener | None = None   # set by start(secure=True)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / PID_FILE

    @property
    def bootstrap_file(self) -> Path:
        return self.state_dir / BOOTSTRAP_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    def pid(self) -> int | None:
        return pid_alive(self.pid_file)

    def bootstrap(self) -> str | None:
        return announced_bootstrap(self.state_dir)

    def start(self, port: int | None = None, *, die_with_parent: bool = False,
              timeout: float = 90.0, heap: str = HEAP, secure: bool = False) -> str:
        """Start the broker (or return the running one's address).  ``secure``: a SASL_SSL
        listener beside the plain one (``self.secure`` says how to reach it)."""
        running = self.bootstrap()
        if running:
            return running
        libs = ensure_jars()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not port or port < 0 or port_open("127.0.0.1", port):
            port = free_port()
        controller_port = free_port()
        data = self.state_dir / "data"
        # A fresh log dir each start: the local broker is scratch space, and a
        # stale cluster id from an earlier format would refuse to start.
        shutil.rmtree(data, ignore_errors=True)
        props = self.state_dir / "server.properties"
        text = server_properties(port, controller_port, data)
        scram: list[str] = []
        if secure:
            password = secrets.token_urlsafe(16)
            keystore, cafile = make_tls_files(self.state_dir / "tls", password)
            secure_port = free_port()
            kept = [line for line in text.splitlines()
                    if not line.startswith(("listeners=", "advertised.listeners=", "listener.security.protocol.map="))]
            text = "\n".join(kept) + "\n" + _SECURE_PROPERTIES.format(
                port=port, controller_port=controller_port, secure_port=secure_port, keystore=keystore,
                store_password=password)
            self.secure = SecureListener(f"127.0.0.1:{secure_port}", "citybrain", secrets.token_urlsafe(16), cafile)
            scram = ["--add-scram",
                     f"SCRAM-SHA-512=[name={self.secure.username},password={self.secure.password}]"]
        props.write_text(text)
        cluster_id = new_cluster_id()
        java = ["java", "-cp", f"{libs}/*"]
        fmt = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *scram],
            capture_output=True, text=True)
        if fmt.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        self._heap, self._die_with_parent = heap, die_with_parent
        return self._launch(libs, props, f"127.0.0.1:{port}", timeout)

    def restart(self, timeout: float = 90.0) -> str:
        """Start again after ``stop()`` on the same port with the same data (the chaos
        suite's broker outage): what was committed before is there after."""
        props = self.state_dir / "server.properties"
        found = re.search(r"advertised.listeners=PLAINTEXT://127.0.0.1:(\d+)", props.read_text())
        if found is None:
            raise RuntimeError(f"{props} names no PLAINTEXT listener on 127.0.0.1; start the broker afresh")
        port = found.group(1)
        return self._launch(ensure_jars(), props, f"127.0.0.1:{port}", timeout)

    def _launch(self, libs: Path, props: Path, address: str, timeout: float) -> str:
        proc, log_offset = self._spawn(libs, props)
        return self._wait_started(proc, log_offset, address, timeout)

    def _spawn(self, libs: Path, props: Path) -> tuple[subprocess.Popen, int]:
        """Start the JVM; returns it and the log's size in bytes before it (a cluster's
        nodes are all spawned first: none finishes starting without a quorum)."""
        heap = getattr(self, "_heap", HEAP)
        cmd = [
            # A heap that does not grow, as Kafka ships it (-Xms = -Xmx) and the deployed brokers
            # run: from 256 MB growing, G1 kept a ~90 MB young generation and stopped the broker
            # every ~1.3–1.8 s (8–14 ms) under the dispatch bench, and half of the bench's tail
            # dispatches had crossed such a pause (docs/performance.md, "The broker's own pauses").
            "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            # The broker's own pauses, for reading beside a latency tail (issue 13).
            f"-Xlog:gc:file={self.log_file.with_name('gc.log')}:time,uptime:filecount=2,filesize=5m",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(props),
        ]
        # Where this start's lines begin.  A line count of the last 100,000 lines (before)
        # never moved once the log, appended across restarts, passed 100,000 lines: every
        # start then waited out its timeout and stopped a broker that had started.
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if getattr(self, "_die_with_parent", False) else None,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        return proc, log_offset

    def _wait_started(self, proc: subprocess.Popen, log_offset: int, address: str, timeout: float) -> str:
        port = int(address.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {proc.returncode}; see {self.log_file}:\n"
                    + self._log_tail())
            if port_open("127.0.0.1", port) and "Kafka Server started" in self._log_since(log_offset):
                self.bootstrap_file.write_text(address)
                return address
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"Kafka did not start within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL); True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pid_file.unlink(missing_ok=True)
        self.bootstrap_file.unlink(missing_ok=True)
        return True

    def _log_since(self, offset: int) -> str:
        """The log written from byte ``offset`` on."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64.  Never starting with "-",
    which the storage tool's argument parser would take for an option (as Kafka's own
    Uuid.randomUuid also avoids)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child, so a zombie does not look alive.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """PR_SET_PDEATHSIG: a test broker must not outlive the pytest that owns it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)
