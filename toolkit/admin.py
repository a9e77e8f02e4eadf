"""Admin display and operation helpers shared by every app's admin and the dashboard, so the pages speak
the same language: an instant in the object's zone and in UTC, a status badge, a duration as a person would
say it, and operations offered both as list actions and as buttons."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import redis
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_POST

from toolkit import clock
from toolkit.api import estimated_count
from toolkit.enums import Choices

if TYPE_CHECKING:
    # The mixin is only ever mixed into a ModelAdmin; telling the type checker so types every `self.…`.
    _ModelAdmin = admin.ModelAdmin
else:
    _ModelAdmin = object

logger = logging.getLogger(__name__)

UTC_ZONE = ZoneInfo("UTC")


def wall(moment: datetime) -> str:
    """A wall time such as "Mon 2 Mar 09:00 PST": weekday and zone abbreviation because operators reason in
    local time, seconds only for schedules that have them, the year only when it is not this one."""
    text = f"{moment:%a} {moment.day} {moment:%b}"
    if moment.year != clock.now().year:
        text += f" {moment.year}"
    text += f" {moment:%H:%M:%S}" if moment.second else f" {moment:%H:%M}"
    return f"{text} {moment.tzname()}"


def in_zone(moment: datetime, zone_name: str) -> datetime:
    """The instant in a trigger's zone; UTC if the stored name is not a zone (never a broken page)."""
    try:
        return moment.astimezone(ZoneInfo(zone_name))
    except (ValueError, KeyError, OSError):
        return moment.astimezone(UTC_ZONE)


def relative(moment: datetime) -> str:
    """How far away an instant is ("in 3 hours", "5 minutes ago"), against the one clock."""
    now = clock.now()
    if abs((moment - now).total_seconds()) < 60:
        return "now"
    if moment >= now:
        return f"in {timeuntil(moment, now, depth=1)}"
    return f"{timesince(moment, now, depth=1)} ago"


def instant(moment: datetime | None, zone_name: str = "UTC", *, empty: str = "—") -> SafeString | str:
    """An instant as operators read it: in the trigger's zone, then in UTC (the fleet's zone, and what logs
    show) with how far away it is. A UTC trigger gets one line, not the same time twice."""
    if moment is None:
        return empty
    local = in_zone(moment, zone_name)
    utc = moment.astimezone(UTC_ZONE)
    second = [relative(moment)] if local.tzinfo == UTC_ZONE else [*_wall_parts(utc), f"· {relative(moment)}"]
    return format_html(
        '<span class="sched-when" title="{}"><span class="sched-when__local">{}</span>'
        '<span class="sched-when__utc">{}</span></span>',
        utc.isoformat(),
        _unbroken(_wall_parts(local)),
        _unbroken(second),
    )


def _wall_parts(moment: datetime) -> list[str]:
    """A wall time as its date and its time of day ("Mon 2 Mar", "09:00 PST")."""
    words = wall(moment).split(" ")
    return [" ".join(words[:-2]), " ".join(words[-2:])]


def _unbroken(parts: Iterable[str]) -> SafeString:
    """Parts that never break inside themselves, only between each other: a narrow column (a list on a
    laptop with both sidebars open, a phone) puts the time under the date rather than widening the table."""
    return format_html_join(" ", "<span>{}</span>", ((part,) for part in parts))


def instant_text(moment: datetime, zone_name: str = "UTC") -> str:
    """An instant in one line of plain text, for messages: "Mon 2 Mar 09:00 PST (17:00 UTC), in 5 hours"."""
    local = in_zone(moment, zone_name)
    utc = "" if local.tzinfo == UTC_ZONE else f" ({moment.astimezone(UTC_ZONE):%H:%M} UTC)"
    return f"{wall(local)}{utc}, {relative(moment)}"


def instant_column(field: str, zone_of: Callable[[Any], str], description: str = "") -> Callable:
    """An admin column (or read-only field) showing a datetime field with `instant`, in the zone
    `zone_of(obj)` names: one line of code per column instead of one method each."""

    @admin.display(description=description or field.removesuffix("_at").replace("_", " "), ordering=field)
    def column(self, obj: Any) -> SafeString | str:
        return instant(getattr(obj, field), zone_of(obj))

    return column


def badge(value: str, label: str = "", *, title: str = "") -> SafeString | str:
    """A coloured status pill; the colour comes from the value (admin.css), the words from the label."""
    if not value:
        return "—"
    short = label.split(" — ")[0] if label else value.replace("_", " ")
    return format_html(
        '<span class="sched-badge sched-badge--{}" title="{}">{}</span>', value, title or label, short
    )


def rate_badge(percent: float | None, succeeded: int, ended: int, *, runs: str = "") -> SafeString | str:
    """A success rate coloured by how worrying it is; "—" before anything has ended. `runs` says which runs
    it counts, in the hover text ("scheduled and manual")."""
    if percent is None:
        return "—"
    tone = "good" if percent >= 95 else "warn" if percent >= 80 else "bad"
    return format_html(
        '<span class="sched-rate sched-rate--{}" title="{} of {} ended runs{} succeeded">{}%</span>',
        tone,
        succeeded,
        ended,
        f" ({runs})" if runs else "",
        f"{percent:g}",
    )


def choice_badge(value: str, choices: type[Choices] | type[models.TextChoices]) -> SafeString | str:
    """A badge for a value of a `Choices` (or `TextChoices`) enum, its label as the hover text."""
    label = str(dict(choices.choices).get(value, ""))
    return badge(value, label, title=label)


def duration_text(milliseconds: float | None) -> str:
    """A duration in the unit a person would pick: "850 ms", "12.4 s", "3.2 min"."""
    if milliseconds is None:
        return "—"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class EstimatedCountPaginator(Paginator):
    """The changelist's paginator with `toolkit.api.estimated_count`: Django's counts every matching row on
    every page load (a second or more at ten million executions), where "page 3 of ~200,000" is all the
    page shows. Pair with `show_full_result_count = False`, which drops the second, unfiltered count."""

    @cached_property
    def count(self) -> int:
        return estimated_count(self.object_list)[0]


class ReadOnlyAdminMixin:
    """Viewable, never added, edited or deleted through a form: history is changed by services only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@dataclass(frozen=True)
class Operation:
    """One thing an operator can do to an object, offered both as a list action and as a button on the
    object's page. `apply` does it through a service and returns a detail for the message, or raises
    `ValidationError` with the service's reason; `offered` says whether the button fits the object's state."""

    name: str
    label: str
    done: str
    apply: Callable[[HttpRequest, Any], str]
    offered: Callable[[Any], bool] = lambda obj: True


class OperationsMixin(_ModelAdmin):
    """List actions and page buttons from one table of `operations`, so each operation is written once and
    behaves the same from both places: applied to each object on its own (one refusal does not stop the
    rest), with a message saying what happened to each."""

    operations: tuple[Operation, ...] = ()
    #: When more objects than this are acted on at once, one summary replaces the per-object messages.
    message_detail_limit = 5

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if self.has_operate_permission(request):
            for op in self.operations:
                actions[op.name] = (
                    self._action(op),
                    op.name,
                    f"{op.label} the selected {self.opts.verbose_name_plural}",
                )
        return actions

    def has_operate_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def describe_object(self, obj: Any) -> str:
        """How an object is named in the messages."""
        return str(obj)

    @staticmethod
    def _action(op: Operation) -> Callable:
        def action(modeladmin: OperationsMixin, request: HttpRequest, queryset: QuerySet) -> None:
            modeladmin.operate(request, queryset, op)

        action.__name__ = op.name
        return action

    def operate(self, request: HttpRequest, objects: Iterable[Any], op: Operation) -> None:
        """Each object on its own; on more than one, a closing count says how many of how many it did (a
        bulk re-run of a page of failed runs reads "Re-ran 48 of 50 executions; 2 refused")."""
        done: list[str] = []
        tried = 0
        for obj in objects:
            tried += 1
            try:
                detail = op.apply(request, obj)
            except ValidationError as exc:
                reason = "; ".join(exc.messages)
            except redis.RedisError as exc:
                reason = f"Redis is unreachable ({exc})"
            else:
                done.append(format_html("{} “{}”{}", op.done, self.describe_object(obj), detail))
                continue
            message = f"Could not {op.label.lower()} “{self.describe_object(obj)}”: {reason}"
            self.message_user(request, message, messages.ERROR)
        if len(done) <= self.message_detail_limit:
            for line in done:
                self.message_user(request, format_html("{}.", line), messages.SUCCESS)
        if tried > 1:
            refused = tried - len(done)
            summary = f"{op.done} {len(done)} of {tried} {self.opts.verbose_name_plural}"
            summary += f"; {refused} refused." if refused else "."
            self.message_user(request, summary, messages.WARNING if refused else messages.SUCCESS)

    def get_urls(self) -> list:
        name = f"{self.opts.app_label}_{self.opts.model_name}_operate"
        view = self.admin_site.admin_view(self.operate_view)
        return [path("<path:object_id>/operate/<str:operation>/", view, name=name), *super().get_urls()]

    @method_decorator(require_POST)
    def operate_view(self, request: HttpRequest, object_id: str, operation: str) -> HttpResponseRedirect:
        op = next((o for o in self.operations if o.name == operation), None)
        obj = self.get_object(request, object_id)
        if op is None or obj is None:
            raise Http404(f"No such {self.opts.verbose_name} or operation.")
        if not self.has_operate_permission(request, obj):
            raise PermissionDenied
        self.operate(request, [obj], op)
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ):
        """Head the page with the object's readable name (the same one the messages use)."""
        obj = self.get_object(request, object_id)
        if obj is not None:
            extra_context = {"subtitle": self.describe_object(obj), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None and self.has_operate_permission(request, obj):
            context["operations"] = [op for op in self.operations if op.offered(obj)]
            context["operate_url_name"] = f"admin:{self.opts.app_label}_{self.opts.model_name}_operate"
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )
