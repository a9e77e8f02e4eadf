"""The deployment files agree with each other: compose runs the Procfile's roles with the Procfile's commands,
and the models match their migrations."""

from __future__ import annotations

import re
import shlex
from io import StringIO

import pytest
import yaml
from django.core.management import call_command

from tests.support.procs import ROOT


def procfile(name: str = "Procfile") -> dict[str, str]:
    roles = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            role, command = line.split(":", 1)
            roles[role.strip()] = command.strip()
    return roles


def program(command: str) -> list[str]:
    """The command's words with shell defaults resolved (${PORT:-8000} -> 8000) and options that only bind
    addresses, ports or sizes dropped, so that what must agree (program, app, role, scheduler) is compared."""
    command = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command)
    command = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "required", command)  # ${X:?message}: must be set
    words = shlex.split(command)
    loose = (
        "--bind", "--workers", "--concurrency", "--address", "--port", "--graceful-timeout", "--basic-auth",
    )  # fmt: skip
    return [w for w in words if not w.startswith(loose) and not re.fullmatch(r"[\d.:]+", w)]


def test_compose_services_match_procfile_roles() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    roles = procfile()
    for role, command in roles.items():
        assert role in services, f"Procfile role {role!r} has no compose service"
        assert program(services[role]["command"]) == program(command), role
    app_services = {
        name
        for name, svc in services.items()
        if svc.get("build") or svc.get("image", "").startswith("workflow")
    }
    assert app_services == set(roles), "every app service in compose is a Procfile role and vice versa"
    assert services["beat"]["deploy"]["replicas"] == 2
    # Flower is never open outside dev: the Procfile refuses to start it without credentials, and compose
    # always hands it FLOWER_BASIC_AUTH (Flower reads the variable itself).
    assert "--basic-auth=${FLOWER_BASIC_AUTH:?" in roles["flower"]
    assert compose["x-app"]["environment"]["FLOWER_BASIC_AUTH"]
    assert services["worker"]["restart"] == "unless-stopped"
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd
    assert "noeviction" in redis_cmd
    for infra in ("postgres", "redis"):
        assert "healthcheck" in services[infra]


def test_dev_procfile_runs_the_long_lived_roles_with_the_same_programs() -> None:
    dev, prod = procfile("Procfile.dev"), procfile()
    assert set(dev) == {"web", "worker", "launcher", "beat", "flower"}
    for role in ("web", "worker", "launcher", "flower"):
        assert program(dev[role]) == program(prod[role]), role
    assert prod["beat"] in dev["beat"], "dev beat is the production beat under a restart loop"


def test_every_queue_has_a_role_and_fires_never_share_one_with_launches(settings) -> None:
    """The worker roles split the queues between them: fires (and housekeeping) in processes, launches in
    a thread pool; a queue no role consumes would hold its tasks for ever."""
    consumed: dict[str, set[str]] = {}
    for name in ("Procfile", "Procfile.dev"):
        for role, command in procfile(name).items():
            words = shlex.split(re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command))
            if "worker" in words:
                consumed[role] = set(words[words.index("-Q") + 1].split(","))
    declared = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    assert set().union(*consumed.values()) == declared
    assert consumed["worker"] & consumed["launcher"] == set()
    assert {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} <= declared
    assert "fire" in consumed["worker"]
    assert "launch" in consumed["launcher"]
    assert "threads" in procfile()["launcher"].split()


@pytest.mark.django_db
def test_migrations_match_models() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)


def test_the_image_carries_every_source_folder_the_project_reads() -> None:
    """No Docker engine here to build it: check that the Dockerfile copies each top-level folder of code and
    templates, so the image never runs without (say) the dashboard's templates."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./", dockerfile, flags=re.MULTILINE))
    needed = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"tests"}
    needed |= {"templates"}
    assert needed <= copied, f"Dockerfile does not copy {sorted(needed - copied)}"
