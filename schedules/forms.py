"""The trigger form of the admin. It holds no rules of its own: it turns what a person typed into Python
values and hands them to the services, so the admin and the API accept and reject exactly the same triggers
with the same words (`"cron_expression": ["field 2 (hour): 25 is out of range 0-23"]`)."""

from __future__ import annotations

import functools
import json
import zoneinfo
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.html import format_html, format_html_join

from schedules import services, timing, validation
from schedules.models import Calendar, Trigger, TriggerKind, TriggerTemplate
from schedules.vocabulary import COUNTER_HELP

if TYPE_CHECKING:
    from django.forms.renderers import BaseRenderer
    from django.utils.safestring import SafeString

#: The message the services give for a missing required field, used for the form's own required check so an
#: empty name reads the same in the admin as in the API.
REQUIRED_MESSAGE = "this field is required"


class ZoneInput(forms.TextInput):
    """A text box that suggests IANA zone names as you type. A free text box, not a select: an unknown name
    must reach the services and come back with their message, as it would through the API."""

    list_id = "iana-zones"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            {"list": self.list_id, "autocomplete": "off", "spellcheck": "false", **(attrs or {})}
        )

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: BaseRenderer | None = None,
    ) -> SafeString:
        box = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((z,) for z in zone_names()))
        return format_html('{}<datalist id="{}">{}</datalist>', box, self.list_id, options)


@functools.cache
def zone_names() -> tuple[str, ...]:
    """Zones the services accept (asked of `timing.get_zone` itself, so the list cannot drift from the rule),
    UTC first because it is the default and the most common choice."""

    def accepted(name: str) -> bool:
        try:
            timing.get_zone(name)
        except timing.TimingError:
            return False
        return True

    return ("UTC", *sorted(z for z in zoneinfo.available_timezones() if z != "UTC" and accepted(z)))


def add_service_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Put each message under the field it names; one the form does not show goes on top, still naming
    its field, so nothing the service said is lost."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, messages in exc.message_dict.items():
        if field in form.fields:
            form.add_error(field, messages)
        else:
            prefix = "" if field == NON_FIELD_ERRORS else f"{field}: "
            form.add_error(None, [f"{prefix}{message}" for message in messages])


class TriggerAdminForm(forms.ModelForm):
    """Create or change a trigger through `trigger_register` / `trigger_update`.

    Why the services run in `_post_clean` rather than in `save()`: the admin re-renders a form only for
    errors found while validating; an error raised once it has started saving becomes a 500. The services
    are the only code that knows every rule (the whole schedule, jitter against slot spacing, the per-owner
    cap), so calling them is the last validation step and its `ValidationError` lands on the fields it names.
    The admin wraps the whole request in one transaction (`ModelAdmin.changeform_view` is atomic), so nothing
    is committed, and the beat entry is not synced, unless the request as a whole succeeds.
    """

    preset = forms.ChoiceField(
        required=False,
        label="Preset",
        help_text="Pick a common schedule to fill in the cron expression; edit it afterwards if you like.",
    )

    class Meta:
        model = Trigger
        fields = ("owner", *validation.WRITABLE_FIELDS)
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "input": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField json-input"}),
            "metadata": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField json-input"}),
            "cron_expression": forms.TextInput(
                attrs={"class": "vTextField cron-input", "spellcheck": "false", "autocomplete": "off"}
            ),
            "timezone": ZoneInput(attrs={"class": "vTextField"}),
            "windows": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField json-input"}),
            "blackouts": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField json-input"}),
        }
        labels = {
            "input": "Input (JSON)",
            "metadata": "Metadata (JSON)",
            "windows": "Windows (JSON)",
            "blackouts": "Blackouts (JSON)",
        }
        help_texts = {
            **COUNTER_HELP,  # the read-only state fields of the change page
            "anchor_at": "Interval kind: slots fall at anchor + k·interval (UTC); empty means when saved.",
            "run_at": "Once kind: the single instant to run (UTC).",
            "start_at": "No slot before this instant (UTC).",
            "end_at": "No slot after this instant (UTC).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["preset"]).choices = [("", "— choose a common schedule —")] + [
            (p.key, f"{p.label}  ({p.expression})") for p in timing.PRESETS
        ]
        self.fields["preset"].widget.attrs["data-expressions"] = json.dumps(
            {p.key: p.expression for p in timing.PRESETS}
        )
        for name, field in self.fields.items():
            if name in ("owner", "preset"):
                continue
            # Range, length and emptiness are the services' to judge, in their words: the form only parses.
            field.validators = []
            field.required = name in validation.REQUIRED_TEXT
            field.error_messages["required"] = REQUIRED_MESSAGE
            for attr in ("min", "max", "maxlength"):
                field.widget.attrs.pop(attr, None)

    def clean(self) -> dict[str, Any]:
        # BaseModelForm.clean always returns self.cleaned_data; the stubs allow None for overrides.
        cleaned = cast(dict[str, Any], super().clean())
        preset = next((p for p in timing.PRESETS if p.key == cleaned.get("preset")), None)
        if preset is not None and not (cleaned.get("cron_expression") or "").strip():
            # Without JavaScript the preset menu cannot fill the box; an empty box then means "the preset".
            cleaned["cron_expression"] = preset.expression
            cleaned["kind"] = TriggerKind.CRON
        return cleaned

    def _post_clean(self) -> None:
        if self.errors:
            return  # text the form could not even parse (bad JSON, a malformed date) is reported first
        try:
            if self.instance._state.adding:
                self.instance = services.trigger_register(
                    owner=self.cleaned_data["owner"], **self._service_fields(validation.WRITABLE_FIELDS)
                )
            else:
                changed = [name for name in validation.WRITABLE_FIELDS if name in self.changed_data]
                if "preset" in self.changed_data:
                    changed += ["kind", "cron_expression"]
                self.instance = services.trigger_update(
                    trigger=self.instance, **self._service_fields(changed)
                )
        except ValidationError as exc:
            self._add_service_errors(exc)

    def _service_fields(self, names: Iterable[str]) -> dict[str, Any]:
        """Only fields the form shows: a field hidden from this form is left to the service's default."""
        return {name: self.cleaned_data[name] for name in names if name in self.cleaned_data}

    def _add_service_errors(self, exc: ValidationError) -> None:
        add_service_errors(self, exc)

    def save(self, commit: bool = True) -> Trigger:
        """The services saved the trigger during validation; there is nothing left to write."""
        if self.errors:
            raise ValueError("The trigger could not be saved because its data did not validate.")
        # Django's own save(commit=False) sets save_m2m on the instance the same way.
        self.save_m2m = lambda: None  # type: ignore[method-assign]
        return self.instance


class BackfillForm(forms.Form):
    """The range an operator asks the admin's backfill action to run. Only the types are checked here; the
    range itself (in the past, not reversed, under the cap, a trigger that can still run) is the backfill
    service's to judge, so its messages are the ones the API gives."""

    start = forms.DateTimeField(
        help_text="First instant of the range, inclusive (UTC, e.g. 2026-03-01 00:00)."
    )
    end = forms.DateTimeField(help_text="Last instant of the range, inclusive (UTC); not in the future.")
    spread_seconds = forms.IntegerField(
        min_value=0,
        initial=0,
        required=False,
        help_text="Space the new runs' launches evenly over this many seconds (0: all at once).",
    )
    dry_run = forms.BooleanField(
        required=False, initial=True, help_text="Only count the slots and those that already have a run."
    )


class _ServiceForm(forms.ModelForm):
    """A model form whose service call is its last validation step (as `TriggerAdminForm`): a refusal lands
    on the field it names, and `save()` has nothing left to write."""

    def _post_clean(self) -> None:
        if self.errors:
            return
        try:
            self.instance = self.call_service()
        except ValidationError as exc:
            add_service_errors(self, exc)

    def call_service(self) -> Any:  # pragma: no cover - each form says which service
        raise NotImplementedError

    def save(self, commit: bool = True) -> Any:
        if self.errors:
            raise ValueError("The form could not be saved because its data did not validate.")
        self.save_m2m = lambda: None  # type: ignore[method-assign]
        return self.instance


class CalendarAdminForm(_ServiceForm):
    """Dates by hand (one per line), from an ICS file, or a country's public holidays; through
    `calendar_create` / `calendar_update`, so the admin and the API give the same messages."""

    dates = forms.CharField(
        required=False,
        label="Dates",
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="One date per line (YYYY-MM-DD). Leave as is when importing below.",
    )
    ics = forms.FileField(required=False, label="ICS file", help_text="Replace the dates with an ICS file's.")
    country = forms.CharField(
        required=False, help_text="Replace the dates with this country's public holidays (e.g. DE, US)."
    )
    subdivision = forms.CharField(required=False, help_text="Holidays of one state or province (e.g. BY).")
    years = forms.CharField(
        required=False, help_text="Holidays of these years, e.g. 2026, 2027 (default: this and next)."
    )

    class Meta:
        model = Calendar
        fields = ("owner", "name", "description", "shared")

    def __init__(self, *args: Any, actor: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor = actor
        if not self.instance._state.adding:
            self.initial["dates"] = "\n".join(self.instance.dates or [])
            self.initial["country"] = self.instance.country
            self.initial["subdivision"] = self.instance.subdivision

    def _source(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data.get("ics"):
            return {"ics": data["ics"].read()}
        if data.get("country") and (
            "country" in self.changed_data
            or "years" in self.changed_data
            or "subdivision" in self.changed_data
        ):
            text = (data.get("years") or "").replace(",", " ").split()
            try:
                years = [int(y) for y in text] or None
            except ValueError:
                raise ValidationError({"years": ["years must be numbers, e.g. 2026, 2027"]}) from None
            spec: dict[str, Any] = {"country": data["country"], "subdivision": data.get("subdivision") or ""}
            return {"holidays": {**spec, **({"years": years} if years else {})}}
        if self.instance._state.adding or "dates" in self.changed_data:
            return {
                "dates": [line.strip() for line in (data.get("dates") or "").splitlines() if line.strip()]
            }
        return {}

    def call_service(self) -> Any:
        data = self.cleaned_data
        fields = {"name": data.get("name") or "", "description": data.get("description") or ""}
        fields["shared"] = bool(data.get("shared"))
        if self.instance._state.adding:
            return services.calendar_create(owner=data["owner"], **fields, **self._source())
        return services.calendar_update(calendar=self.instance, actor=self.actor, **fields, **self._source())


class TemplateAdminForm(_ServiceForm):
    class Meta:
        model = TriggerTemplate
        fields = ("owner", "name", "description", "definition")
        widgets = {"definition": forms.Textarea(attrs={"rows": 12, "class": "vLargeTextField json-input"})}

    def call_service(self) -> Any:
        data = self.cleaned_data
        fields = {"name": data.get("name") or "", "description": data.get("description") or ""}
        if self.instance._state.adding:
            return services.template_save(
                owner=data["owner"],
                name=fields["name"],
                description=fields["description"],
                definition=data.get("definition") or {},
            )
        return services.template_update(
            template=self.instance, definition=data.get("definition") or {}, **fields
        )
