"""Real processes for integration and end-to-end tests: started in their own session, logged to files, waited
on with deadlines (never bare sleeps), and always torn down, with a check that nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll until `predicate` returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # a not-yet-ready service raises; keep polling
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")


def live_database_url() -> str:
    """A DATABASE_URL for child processes that points at the test database this pytest run created."""
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = quote(settings.get("USER") or "")
    password = f":{quote(settings['PASSWORD'])}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings['NAME']}"


def marked_pids(marker: str) -> list[int]:
    """Every live process whose environment carries our marker: how a test proves it left nothing behind."""
    needle = f"FLEET_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if needle in environ.split(b"\0") and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found


@dataclass
class Fleet:
    """A set of subprocesses sharing one marker and one log directory."""

    log_dir: Path
    env: dict[str, str]
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**self.env, "FLEET_TEST_MARKER": self.marker, "PYTHONUNBUFFERED": "1"}
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Logs from an earlier run of the same test would be read as this run's: start each run clean.
        for old in self.log_dir.glob("*.log"):
            old.unlink()

    def start(self, name: str, cmd: list[str], **env: str) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def send(self, name: str, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        proc = self.procs[name]
        if proc.poll() is None:
            self.send(name, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.send(name, signal.SIGKILL)
                proc.wait(timeout=10)
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        # Anything that escaped its group (a grandchild in its own session) is found by marker and killed.
        for pid in marked_pids(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def fleet(log_dir: Path, env: dict[str, str]) -> Iterator[Fleet]:
    group = Fleet(log_dir=log_dir, env=env)
    try:
        yield group
    finally:
        group.stop_all()


def celery_cmd(*args: str) -> list[str]:
    return [str(BIN / "celery"), "-A", "scheduler_project", *args]
