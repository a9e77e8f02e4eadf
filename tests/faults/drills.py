"""What the fault drills break, for real: a private Redis that can be stopped, killed and restarted (with its
data or empty), a gate in front of PostgreSQL that refuses connections and cuts the open ones, and the fleet
started from Procfile.dev's own commands on top of both, talking to an HTTP target that records every launch
with its idempotency key. The test process reads the database directly (not through the gate), so it can
check what happened while the fleet could not."""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import redis

from scripts import devstack
from tests.support.procs import ROOT, Fleet, free_port, wait_for


class PrivateRedis:
    """A redis-server of our own on a free port. `stop()` then `start()` keeps the data (append-only file,
    fsync always), `wipe()` deletes it first: a Redis restarted empty."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                devstack.redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_for(client.ping, timeout=15, interval=0.1, what="the private redis-server")
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wipe(self) -> None:
        for path in self.dir.rglob("*"):
            if path.is_file():
                path.unlink()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=3)


class Gate:
    """A TCP forwarder to PostgreSQL that can be shut: `close()` stops listening (new connections are
    refused) and cuts every open one, as a database going away does; `open()` listens again on the same
    port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.thread: threading.Thread | None = None

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.listener = listener
        self.thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self.thread is not None:
            self.thread.join(timeout=5)
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select(list(pair), [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()


def procfile_dev() -> dict[str, str]:
    return devstack.procfile_roles(ROOT / "Procfile.dev")


@dataclass
class DrillFleet:
    """web, worker, launcher and beat as Procfile.dev starts them, on the private Redis and the gated
    database."""

    processes: Fleet
    redis: PrivateRedis
    gate: Gate
    env: dict[str, str]
    port: int = field(default_factory=free_port)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *roles: str) -> None:
        commands = procfile_dev()
        for role in roles or ("web", "worker", "launcher", "beat"):
            self.processes.start(role, ["bash", "-c", commands[role]], **self.env, PORT=str(self.port))
        if not roles or "web" in roles:
            wait_for(lambda: self.http("GET", "/readyz")[0] == 200, timeout=60, what="the web role")

    def http(
        self, method: str, path: str, body: Any = None, *, token: str = "", timeout: float = 10
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or the raw text) of one request to the web role."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Token {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                status, headers, raw = answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            status, headers, raw = exc.code, dict(exc.headers), exc.read()
        text = raw.decode(errors="replace")
        try:
            return status, headers, json.loads(text) if text else None
        except ValueError:
            return status, headers, text


def gated_url(database_url: str, gate: Gate) -> str:
    parsed = urlparse(database_url)
    netloc = parsed.netloc.rsplit("@", 1)
    auth = f"{netloc[0]}@" if len(netloc) == 2 else ""
    return urlunparse(parsed._replace(netloc=f"{auth}127.0.0.1:{gate.port}"))


@contextlib.contextmanager
def drill_fleet(processes: Fleet, workdir: Path, targets: dict[str, Any]) -> Iterator[DrillFleet]:
    upstream = urlparse(processes.env["DATABASE_URL"])
    gate = Gate((upstream.hostname or "127.0.0.1", upstream.port or 5432))
    gate.open()
    private = PrivateRedis(workdir / "redis")
    private.start()
    env = {
        "DATABASE_URL": gated_url(processes.env["DATABASE_URL"], gate),
        "REDIS_URL": private.url,
        "SCHEDULER_TARGETS": json.dumps(targets),
        "DEBUG": "0",
        "WORKER_CONCURRENCY": "2",
        "LAUNCHER_CONCURRENCY": "8",
        "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
        "SCHEDULER_SWEEP_SECONDS": "2",
        "API_THROTTLE_USER": "100000/min",
    }
    fleet = DrillFleet(processes=processes, redis=private, gate=gate, env=env)
    try:
        yield fleet
    finally:
        processes.stop_all()
        private.kill()
        gate.close()


def kill_group(processes: Fleet, name: str, sig: int = signal.SIGKILL) -> None:
    processes.send(name, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        processes.procs[name].wait(timeout=10)


def seconds_since(start: float) -> float:
    return round(time.monotonic() - start, 2)


def report(name: str, **figures: Any) -> None:
    """Each drill prints its figures (run pytest with -s, or read them in the captured output)."""
    print(f"\n[drill] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


__all__ = ["DrillFleet", "Gate", "PrivateRedis", "drill_fleet", "kill_group", "report", "seconds_since"]
