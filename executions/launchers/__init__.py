"""Launchers: one module per kind of target, behind the small interface in `base`."""

from executions.launchers.base import (
    LauncherConfigError,
    LaunchPayload,
    LaunchResult,
    LaunchStatus,
    PollResult,
    RunState,
    get_launcher,
    scrub,
)

__all__ = [
    "LaunchPayload",
    "LaunchResult",
    "LaunchStatus",
    "LauncherConfigError",
    "PollResult",
    "RunState",
    "get_launcher",
    "scrub",
]
