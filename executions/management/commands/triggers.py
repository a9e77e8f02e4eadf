"""`manage.py triggers list|show|pause|resume|run|backfill`: the operators' shell view of triggers.

kubectl-like: `list` is one aligned row per trigger, `show` one trigger with its next slots and last runs,
and every subcommand takes `--json` for scripts. It is thin: reads go through the selectors, changes through
the same services the API and the admin call (`trigger_pause`, `trigger_resume`, `execution_run_now`,
`execution_backfill`), so a refusal reads the same in all three (`end: must not be in the future…`) and
exits 1. A trigger is named by its id or by a name only it has."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import selectors as execution_selectors
from executions import services as execution_services
from executions.models import Execution
from schedules import selectors, services, timing, validation
from schedules.models import Trigger, TriggerKind, TriggerStatus
from toolkit import cli
from toolkit.api import parse_instant

LIST_HEADERS = ("name", "id", "schedule", "zone", "next run", "last run", "paused")


def schedule_text(trigger: Trigger) -> str:
    """The schedule as typed, short enough for a table column (`show` adds it in words)."""
    if trigger.kind == TriggerKind.INTERVAL:
        return f"every {trigger.interval_seconds}s"
    if trigger.kind == TriggerKind.ONCE:
        return f"once at {cli.instant(trigger.run_at)}"
    return trigger.cron_expression


def trigger_json(trigger: Trigger) -> dict[str, Any]:
    return {
        "id": str(trigger.pk),
        "name": trigger.name,
        "owner": trigger.owner.get_username(),
        "workflow_id": trigger.workflow_id,
        "kind": trigger.kind,
        "schedule": schedule_text(trigger),
        "timezone": trigger.timezone,
        "status": trigger.status,
        "paused": trigger.status == TriggerStatus.PAUSED,
        "paused_reason": trigger.paused_reason,
        "overlap_policy": trigger.overlap_policy,
        "catchup_policy": trigger.catchup_policy,
        "next_run_at": cli.instant(trigger.next_run_at) if trigger.next_run_at else None,
        "last_run_at": cli.instant(trigger.last_run_at) if trigger.last_run_at else None,
        "last_status": trigger.last_status or None,
        "run_count": trigger.run_count,
        "consecutive_failures": trigger.consecutive_failures,
    }


def execution_json(execution: Execution) -> dict[str, Any]:
    return {
        "id": str(execution.pk),
        "slot": cli.instant(execution.slot) if execution.slot else None,
        "origin": execution.origin,
        "status": execution.status,
        "skip_reason": execution.skip_reason or None,
        "recorded_at": cli.instant(execution.created_at),
    }


class Command(BaseCommand):
    help = "List, show, pause, resume, run and backfill triggers (kubectl-like tables, or --json)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name: str, help: str, *, ref: bool = True) -> CommandParser:
            command = sub.add_parser(name, help=help, description=help)
            if ref:
                command.add_argument("trigger", help="The trigger's id, or a name only it has.")
            command.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
            return command

        listing = action(
            "list", "One row per trigger: name, id, schedule, zone, next and last run.", ref=False
        )
        listing.add_argument("--owner", help="Only the triggers of this user (a username).")
        listing.add_argument("--paused", action="store_true", help="Only paused triggers.")
        show = action("show", "One trigger: its settings, next slots and last runs.")
        show.add_argument("--slots", type=int, default=5, help="How many next slots (1-100, default 5).")
        show.add_argument("--runs", type=int, default=10, help="How many last runs (default 10).")
        pause = action("pause", "Pause: no slot runs until it is resumed.")
        pause.add_argument("--reason", default="", help="Why (shown as the pause note).")
        action("resume", "Resume from now on; slots that fell while paused are not replayed.")
        run = action("run", "Start a manual run now, outside the schedule.")
        run.add_argument("--input", help="Input for this run only, a JSON object.")
        run.add_argument("--idempotency-key", help="Repeat with the same key to get the same run back.")
        backfill = action("backfill", "Run the past slots of [start, end] that have no run yet.")
        backfill.add_argument("--start", required=True, help="ISO 8601 instant with an offset (inclusive).")
        backfill.add_argument("--end", required=True, help="ISO 8601 instant with an offset (inclusive).")
        backfill.add_argument("--dry-run", action="store_true", help="List the slots; change nothing.")
        backfill.add_argument("--spread", type=int, default=0, help="Spread the launches over N seconds.")
        cli.add_progress_argument(backfill)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from None

    def emit(self, options: dict[str, Any], data: Any, text: str) -> None:
        self.stdout.write(cli.dumps(data) if options["json"] else text)

    # Reads

    def do_list(self, *, owner: str | None, paused: bool, **options: Any) -> None:
        rows = list(selectors.trigger_list(owner=owner, paused=True if paused else None))
        table = cli.table(
            LIST_HEADERS,
            [
                (
                    t.name,
                    t.pk,
                    schedule_text(t),
                    t.timezone,
                    t.next_run_at if t.next_run_at else _no_next(t),
                    t.last_status,
                    t.status == TriggerStatus.PAUSED,
                )
                for t in rows
            ],
        )
        self.emit(options, [trigger_json(t) for t in rows], table if rows else "No triggers found.")

    def do_show(self, *, trigger: str, slots: int, runs: int, **options: Any) -> None:
        found = selectors.trigger_find(ref=trigger)
        upcoming = (
            services.trigger_preview(trigger=found, count=slots)
            if found.status == TriggerStatus.ACTIVE
            else []
        )
        last = execution_selectors.last_runs(found, limit=max(0, runs))
        # What the trigger's windows, blackouts and calendar do with each slot, as the API's preview says.
        next_slots = [
            {
                "utc": cli.instant(ft.slot),
                "local": ft.local.isoformat(),
                "note": ft.note,
                "decision": ft.decision,
                "rule": ft.rule or None,
            }
            for ft in upcoming
        ]
        data = {
            "trigger": trigger_json(found),
            "description": _describe(found),
            "next_slots": next_slots,
            "last_runs": [execution_json(e) for e in last],
        }
        head = cli.fields(
            [
                ("Name", found.name),
                ("ID", found.pk),
                ("Owner", found.owner.get_username()),
                ("Workflow", found.workflow_id),
                ("Schedule", f"{schedule_text(found)} ({data['description']})"),
                ("Zone", found.timezone),
                ("Status", found.status + (f" ({found.paused_reason})" if found.paused_reason else "")),
                ("Overlap", f"{found.overlap_policy} (at most {found.max_concurrent} at once)"),
                ("Catch-up", found.catchup_policy),
                ("Runs", f"{found.run_count} scheduled (manual runs not counted)"),
                ("Failing", f"{found.consecutive_failures} in a row" + _auto_pause_text(found)),
            ]
        )
        next_table = cli.table(
            ("utc", "local", "note", "decision"),
            [
                (s["utc"], s["local"], s["note"], s["rule"] and f"{s['decision']}: {s['rule']}")
                for s in next_slots
            ],
        )
        runs_table = cli.table(
            ("slot", "origin", "status", "reason", "id", "recorded"),
            [(e.slot or "manual", e.origin, e.status, e.skip_reason, e.pk, e.created_at) for e in last],
        )
        text = "\n\n".join(
            [
                head,
                "Next slots:\n" + (next_table if upcoming else f"  {_no_next(found)}"),
                "Last runs:\n" + (runs_table if last else "  none yet"),
            ]
        )
        self.emit(options, data, text)

    # Changes, through the services

    def do_pause(self, *, trigger: str, reason: str, **options: Any) -> None:
        done = services.trigger_pause(trigger=selectors.trigger_find(ref=trigger), reason=reason)
        self.emit(options, trigger_json(done), f"trigger/{done.name} paused")

    def do_resume(self, *, trigger: str, **options: Any) -> None:
        done = services.trigger_resume(trigger=selectors.trigger_find(ref=trigger))
        self.emit(
            options, trigger_json(done), f"trigger/{done.name} resumed; next run {cli.cell(done.next_run_at)}"
        )

    def do_run(self, *, trigger: str, input: str | None, idempotency_key: str | None, **options: Any) -> None:
        found = selectors.trigger_find(ref=trigger)
        try:
            payload = json.loads(input) if input is not None else None
        except json.JSONDecodeError as exc:
            raise ValidationError({"input": [f"is not JSON: {exc.msg}"]}) from None
        execution = execution_services.execution_run_now(
            trigger=found, input=payload, idempotency_key=idempotency_key
        )
        self.emit(
            options,
            {"trigger": str(found.pk), **execution_json(execution)},
            f"execution/{execution.pk} of trigger/{found.name} {execution.status}",
        )

    def do_backfill(
        self,
        *,
        trigger: str,
        start: str,
        end: str,
        dry_run: bool,
        spread: int,
        progress: bool = False,
        **options: Any,
    ) -> None:
        found = selectors.trigger_find(ref=trigger)
        bounds = {name: _instant(value, name) for name, value in (("start", start), ("end", end))}
        with cli.progress(self.stderr, f"backfill {found.name}", None, force=progress) as update:
            report = execution_services.execution_backfill(
                trigger=found,
                dry_run=dry_run,
                spread_seconds=spread,
                launched_by="cli",
                progress=update,
                **bounds,
            )
            update(len(report.slots), len(report.slots))  # whole even when every slot was already recorded
        counts = report.as_json()["counts"]
        table = cli.table(
            ("slot", "outcome", "status", "reason", "execution"),
            [(s.slot, s.outcome, s.status, s.skip_reason, s.execution_id) for s in report.slots],
        )
        summary = f"{counts['slots']} slots: {counts['recorded']} already recorded, " + (
            f"{counts['would_run']} would run (dry run: nothing changed)"
            if dry_run
            else f"{counts['created']} recorded now, {counts['refused']} refused"
        )
        self.emit(options, report.as_json(), f"{table}\n\n{summary}" if report.slots else summary)


def _instant(value: str, field: str) -> Any:
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise ValidationError({field: [str(exc)]}) from None


def _describe(trigger: Trigger) -> str:
    try:
        return timing.describe(validation.spec_of(trigger))
    except timing.TimingError as exc:
        return f"invalid: {exc}"


def _no_next(trigger: Trigger) -> str:
    empty: dict[str, str] = {TriggerStatus.PAUSED: "paused", TriggerStatus.COMPLETED: "schedule ended"}
    return empty.get(trigger.status, "none")


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return "; ".join(exc.messages)


def _auto_pause_text(trigger: Trigger) -> str:
    limit = trigger.auto_pause_after_failures
    return f" (pauses at {limit})" if limit else ""
