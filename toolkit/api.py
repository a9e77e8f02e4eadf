"""Project-wide REST plumbing shared by every API view: authentication, throttles, pagination, the request
body guard, the one exception handler, and the OpenAPI error shapes.

Both API styles (the snake_case `/api/v1/` one and the camelCase `/api/scheduler/` one kept for frontends of
the earlier scheduler) shape their errors here, in one function, so a message the domain raises reads the
same in both — only the envelope and the field names differ.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections, models
from django.utils.dateparse import parse_datetime
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers, status, throttling
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param

from toolkit import jsonshape, outage

# --- Authentication ---------------------------------------------------------------------------------------


class BearerTokenAuthentication(TokenAuthentication):
    """DRF token authentication that also accepts `Authorization: Bearer <token>`, the form most HTTP
    clients and API gateways send by default.

    It must stay first in `DEFAULT_AUTHENTICATION_CLASSES`: DRF answers an anonymous request with 401 (rather
    than 403) only when the first authenticator offers a `WWW-Authenticate` challenge, which session auth
    does not.
    """

    keywords = ("Token", "Bearer")
    #: Keys are 40 hex characters; anything longer or with a NUL is rejected before it reaches the database
    #: (PostgreSQL refuses NUL in text, which would otherwise surface as a 500).
    max_key_length = 40

    def authenticate(self, request):
        scheme = get_authorization_header(request).split()[:1]
        for keyword in self.keywords:
            if scheme and scheme[0].lower() == keyword.lower().encode():
                self.keyword = keyword  # instances are per request, so this does not leak between requests
                break
        return super().authenticate(request)

    def authenticate_credentials(self, key: str):
        if len(key) > self.max_key_length or "\x00" in key:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """One scheme for both header forms: OpenAPI lists alternative schemes as an AND when they come from one
    authentication class, and the value is the whole header either way (`Token <t>` or `Bearer <t>`)."""

    target_class = BearerTokenAuthentication
    name = "tokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <token>` or `Bearer <token>`, from `POST /api/v1/auth/token/`.",
        }


# --- Throttles --------------------------------------------------------------------------------------------


class _LiveRateMixin:
    """DRF copies `DEFAULT_THROTTLE_RATES` into a class attribute at import time, so a rate changed later
    (an operator's env in a long-lived shell, a test's override) would be ignored; read it per request."""

    scope: str | None

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return None if rate is None else str(rate)

    def allow_request(self, request: Any, view: Any) -> bool:
        """Fails open: the counters live in Redis, and a Redis outage must not take the API down with it
        (the database still answers). Each process warns once every 10 s while it lasts."""
        try:
            return bool(super().allow_request(request, view))  # type: ignore[misc]
        except outage.REDIS_ERRORS as exc:
            outage.warn("redis", exc, "the API throttle (failing open)")
            return True


class UserRateThrottle(_LiveRateMixin, throttling.UserRateThrottle):
    """Per user (per client IP when anonymous); rate `API_THROTTLE_USER`."""


class AuthRateThrottle(_LiveRateMixin, throttling.AnonRateThrottle):
    """Per client IP on the token endpoint (which authenticates nobody): slows password guessing. Rate
    `API_THROTTLE_AUTH`."""

    scope = "auth"


# --- Pagination -------------------------------------------------------------------------------------------


class LimitOffsetPage(LimitOffsetPagination):
    """`?limit=&offset=`, with the maximum page size from settings (`API_MAX_PAGE_SIZE`). A limit or offset
    that is not a non-negative integer is a 400 naming the parameter (DRF would quietly use the default,
    which hides a client's bug); a limit above the maximum is capped, as DRF documents."""

    def get_limit(self, request: Any) -> int | None:
        self.max_limit = api_settings.user_settings.get("MAX_PAGE_SIZE", 200)
        raw = request.query_params.get(self.limit_query_param)
        if raw is None or raw == "":
            return self.default_limit
        return min(_query_int(self.limit_query_param, raw, minimum=1), self.max_limit)

    def get_offset(self, request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None or raw == "":
            return 0
        return _query_int(self.offset_query_param, raw, minimum=0)

    def get_count(self, queryset: Any) -> int:
        self.count_estimated = False
        if cast(Any, self.request).query_params.get("count") == "exact":
            return super().get_count(queryset)
        count, self.count_estimated = estimated_count(queryset)
        return count

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        response.data["count_estimated"] = self.count_estimated
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["properties"]["count"]["description"] = COUNT_HELP
        described["properties"]["count_estimated"] = {"type": "boolean", "example": False}
        return described


COUNT_HELP = (
    "Rows matching the filters: exact up to API_EXACT_COUNT_LIMIT (1,000), the planner's estimate above it "
    "(`count_estimated` true) unless `?count=exact` asks for the full count."
)


def estimated_count(queryset: Any) -> tuple[int, bool]:
    """(count, estimated): exact when the filtered rows are few, else PostgreSQL's estimate.

    A list that polls `count(*)` over a million rows pays for every row on every request; counting at most
    limit + 1 rows answers every small list exactly at a bounded cost, and beyond it a planner estimate
    (one EXPLAIN, no rows read) is what a "1.2M triggers" badge needs. SQLite has no cheap estimate and
    holds the small tables of a development machine: it is always counted."""
    limit = int(getattr(settings, "API_EXACT_COUNT_LIMIT", 1000))
    bare = queryset.order_by()
    connection = connections[bare.db]
    if connection.vendor != "postgresql":
        return bare.count(), False
    capped = bare.values("pk")[: limit + 1].count()
    if capped <= limit:
        return capped, False
    sql, params = bare.values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return max(int(plan[0]["Plan"]["Plan Rows"]), limit + 1), True


class KeysetPage(LimitOffsetPage):
    """Keyset ("cursor") pages by default: `?limit=&cursor=`; `?offset=` still works for old clients.

    An offset page costs every row before it (`?offset=50000` reads 50,050 rows); a cursor names the last
    row seen, so the database seeks to it in the index the ordering uses and every page costs the same.
    The ordering (the view's `?ordering=` or the model's) is made total with the primary key, NULLs sort
    as PostgreSQL sorts them by default (last ascending, first descending) on every database, so one
    (scope, field, id) index serves both directions. Cursors are opaque, tied to the ordering they were
    made for, and a malformed or foreign one is a 400 naming `cursor`."""

    cursor_query_param = "cursor"

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> list[Any] | None:
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        raw_cursor = request.query_params.get(self.cursor_query_param)
        if request.query_params.get(self.offset_query_param) not in (None, "") and not raw_cursor:
            self.keyset = False  # ordered like a cursor page, so ties cannot swap between two offset pages
            return super().paginate_queryset(_sorted(queryset, _ordering_of(queryset)), request, view)
        self.keyset = True
        self.order = _ordering_of(queryset)
        self.count = self.get_count(queryset)
        position, backwards = self._decode(raw_cursor, queryset.model) if raw_cursor else (None, False)
        order = [(name, not descending) for name, descending in self.order] if backwards else self.order
        rows = _keyset_rows(queryset, order, position, self.limit + 1)
        more = len(rows) > self.limit
        rows = rows[: self.limit]
        if backwards:
            rows.reverse()
        self.rows = rows
        # An empty page (a cursor past the last row) links nowhere: there is no row to name.
        self.has_next = bool(rows) and (more or backwards)
        self.has_previous = bool(rows) and (more if backwards else raw_cursor is not None)
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        if not self.keyset:
            return super().get_paginated_response(data)
        return Response(
            {
                "count": self.count,
                "count_estimated": self.count_estimated,
                "next": self._link(self.rows[-1], backwards=False) if self.has_next and self.rows else None,
                "previous": self._link(self.rows[0], backwards=True)
                if self.has_previous and self.rows
                else None,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["properties"]["next"]["description"] = "The next page (a `cursor=` link), or null."
        return described

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            *super().get_schema_operation_parameters(view),
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque position from a `next`/`previous` link: every page costs the same.",
                "schema": {"type": "string"},
            },
            {
                "name": "count",
                "required": False,
                "in": "query",
                "description": "`exact` for a full count instead of the estimate above 1,000 rows.",
                "schema": {"type": "string", "enum": ["exact"]},
            },
        ]

    # Cursors

    def _link(self, row: Any, *, backwards: bool) -> str:
        values = [getattr(row, name) for name, _ in self.order]
        cursor = encode_cursor(self.order, values, backwards=backwards)
        url = cast(Any, self.request).build_absolute_uri()
        url = remove_query_param(url, self.offset_query_param)
        return replace_query_param(url, self.cursor_query_param, cursor)

    def _decode(self, raw: str, model: type[models.Model]) -> tuple[list[Any], bool]:
        """The position a cursor names, each value read by its model field (a bad one is a 400 here, not
        a database error on the query)."""
        values: list[Any] = []
        backwards: Any = None
        try:
            token = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            raw_values, backwards = token["v"], token["b"]
            fits = token["o"] == _order_text(self.order) and len(raw_values) == len(self.order)
            if fits:
                for (name, _), value in zip(self.order, raw_values, strict=True):
                    field = cast("models.Field[Any, Any]", model._meta.get_field(name))
                    values.append(None if value is None else field.to_python(value))
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error, DjangoValidationError):
            fits = False
        if not fits or not isinstance(backwards, bool):
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["is not a cursor from this list (follow `next`/`previous` links)"]}
            )
        return values, backwards


def encode_cursor(order: list[tuple[str, bool]], values: list[Any], *, backwards: bool = False) -> str:
    """The opaque `cursor=` value naming the row with these ordering values (benchmarks and tests make
    cursors to a given depth with it)."""
    token = {"o": _order_text(order), "v": [_cursor_value(v) for v in values], "b": backwards}
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def _order_text(order: list[tuple[str, bool]]) -> str:
    return ",".join(("-" if descending else "") + name for name, descending in order)


def _cursor_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)  # UUID, Decimal


def _ordering_of(queryset: Any) -> list[tuple[str, bool]]:
    """The queryset's ordering as (field, descending) pairs, made total with the primary key."""
    meta = queryset.model._meta
    names = list(queryset.query.order_by or meta.ordering or ["-pk"])
    order: list[tuple[str, bool]] = []
    for item in names:
        if not isinstance(item, str) or "__" in item or item.lstrip("-") == "?":
            raise exceptions.ValidationError({"ordering": ["cannot be paged by cursor; use offset"]})
        name = item.lstrip("-")
        name = meta.pk.name if name == "pk" else name
        order.append((name, item.startswith("-")))
    if meta.pk.name not in (name for name, _ in order):
        order.append((meta.pk.name, order[-1][1] if order else True))
    return order


def _sorted(queryset: Any, order: list[tuple[str, bool]]) -> Any:
    meta = queryset.model._meta
    terms = []
    for name, descending in order:
        nullable = meta.get_field(name).null
        field = models.F(name)
        if descending:
            terms.append(field.desc(nulls_first=True) if nullable else field.desc())
        else:
            terms.append(field.asc(nulls_last=True) if nullable else field.asc())
    return queryset.order_by(*terms)


def _after(order: list[tuple[str, bool]], values: list[Any], nullable: list[bool]) -> models.Q:
    """Rows strictly after `values` in `order` (NULLs last ascending, first descending)."""
    (name, descending), value, can_be_null = order[0], values[0], nullable[0]
    if value is None:
        beyond = models.Q(**{f"{name}__isnull": False}) if descending else models.Q(pk__in=[])
        same = models.Q(**{f"{name}__isnull": True})
    else:
        beyond = models.Q(**{f"{name}__{'lt' if descending else 'gt'}": value})
        if can_be_null and not descending:
            beyond |= models.Q(**{f"{name}__isnull": True})
        same = models.Q(**{name: value})
    if len(order) == 1:
        return beyond
    return beyond | (same & _after(order[1:], values[1:], nullable[1:]))


def _keyset_rows(
    queryset: Any, order: list[tuple[str, bool]], position: list[Any] | None, n: int
) -> list[Any]:
    """Up to n rows after `position` (None: from the start). With one field before the key, the condition
    is written so the database can seek: `field >= v AND (field > v OR id > x)` is an index range, where
    the equivalent OR alone is a scan from the start. A nullable field's NULL rows form their own range,
    read after (ascending) or before (descending) the others."""
    meta = queryset.model._meta
    nullable = [meta.get_field(name).null for name, _ in order]
    if position is None:
        return list(_sorted(queryset, order)[:n])
    if len(order) != 2:
        return list(_sorted(queryset, order).filter(_after(order, position, nullable))[:n])
    (name, descending), (key, _) = order
    value, last_key = position
    seek = "lt" if descending else "gt"
    if value is None:  # inside the NULL rows
        rows = list(
            _sorted(queryset, order).filter(**{f"{name}__isnull": True, f"{key}__{seek}": last_key})[:n]
        )
        if descending and len(rows) < n:
            rows += list(_sorted(queryset, order).filter(**{f"{name}__isnull": False})[: n - len(rows)])
        return rows
    bound = models.Q(**{f"{name}__{seek}e": value}) & (
        models.Q(**{f"{name}__{seek}": value}) | models.Q(**{f"{key}__{seek}": last_key})
    )
    rows = list(_sorted(queryset, order).filter(bound)[:n])
    if nullable[0] and not descending and len(rows) < n:
        rows += list(_sorted(queryset, order).filter(**{f"{name}__isnull": True})[: n - len(rows)])
    return rows


_QUERY_INT_MAX = 10**12  # far beyond any real table, and far inside every database's integer range


def _query_int(name: str, raw: str, *, minimum: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) < minimum:
        raise exceptions.ValidationError(
            {name: [f"must be a whole number from {minimum} to {_QUERY_INT_MAX - 1}"]}
        )
    return int(raw)


# --- Request bodies ---------------------------------------------------------------------------------------


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "request_too_large"


def request_too_large() -> RequestTooLarge:
    return RequestTooLarge(f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


def read_limited(stream, parser_context: Mapping[str, Any] | None) -> bytes:
    """The request body, refused with 413 beyond `DATA_UPLOAD_MAX_MEMORY_SIZE`.

    DRF 3.18 reads `request.body` for JSON and form bodies, where Django enforces the limit (its
    `RequestDataTooBig` is mapped to 413 by the exception handler); older DRF versions hand parsers the raw
    stream and would buffer any size, so the check is also made here, on the declared length and on what is
    read (a chunked body declares none)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        return stream.read()
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    too_large = request_too_large()
    if declared and str(declared).isdigit() and int(declared) > limit:
        raise too_large
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


class GuardedJSONParser(JSONParser):
    """JSON with a size limit, no NaN/Infinity, no number that overflows to infinity, and nesting deep enough
    to exhaust the stack answered as a parse error (400) instead of a RecursionError (500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = read_limited(stream, parser_context)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = body.decode(encoding)
            # Before parsing (which recurses): a value nested past the limit is a 400 naming its field.
            deep, key = jsonshape.too_deep(text, max_depth=jsonshape.JSON_MAX_DEPTH + 1)
            if deep:
                message = f"nested too deeply (at most {jsonshape.JSON_MAX_DEPTH} levels)"
                if not key:
                    raise exceptions.ParseError(f"JSON parse error - {message}")
                raise exceptions.ValidationError({key: [f"is {message}"]})
            data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
            # A lone surrogate (`"\\ud800"`) is valid JSON but not storable text: PostgreSQL refuses it in
            # text and jsonb alike, so it is refused here, once, for every field.
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise exceptions.ParseError("JSON parse error - unpaired surrogate in a string") from None
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise exceptions.ParseError(f"JSON parse error - {reason}") from None
        return data


class AnyContentJSONParser(GuardedJSONParser):
    """The same guarded JSON, whatever the declared content type: for the adapter routes only.

    Clients of the systems those routes replace post JSON without saying so — the earlier scheduler's
    documented browser snippet is `fetch(url, {method: "POST", body: JSON.stringify(...)})`, which sends
    `text/plain;charset=UTF-8`, and `curl -d` sends a form type. Answering them 415 would break clients that
    worked; reading the body as JSON keeps them working, and a body that is not JSON is still a 400 naming
    the problem (`body: JSON parse error - ...`)."""

    media_type = "*/*"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class GuardedFormParser(FormParser):
    """Form bodies (the token endpoint accepts `curl -d username=…`) under the same size limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        return super().parse(io.BytesIO(read_limited(stream, parser_context)), media_type, parser_context)


# --- Instants --------------------------------------------------------------------------------------------

INSTANT_HINT = "e.g. 2026-01-01T09:00:00Z"


def parse_instant(value: Any) -> datetime:
    """An ISO 8601 instant with an offset, as aware UTC. A naive time is refused rather than guessed: which
    zone the client meant is exactly the mistake a scheduler must not make for them. Raises `ValueError` with
    a message for people; out-of-range values (year 9999 with a negative offset) included."""
    parsed = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        raise ValueError(f"must be an ISO 8601 date-time ({INSTANT_HINT})")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"must include a time zone offset ({INSTANT_HINT})")
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range") from None


class InstantField(serializers.DateTimeField):
    """Reads an instant with `parse_instant`; writes it in UTC (`…Z`)."""

    def to_internal_value(self, value: Any) -> datetime:
        try:
            return parse_instant(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


def help_of(model: type[models.Model], name: str) -> str:
    """A model field's help_text, for the API field that shows it (one wording in admin, API and schema).
    Only concrete fields are described this way; a reverse relation has no help_text."""
    return str(cast("models.Field[Any, Any]", model._meta.get_field(name)).help_text)


class InstantModelSerializer(serializers.ModelSerializer):
    """A model serializer whose every `DateTimeField` is an `InstantField`: one mapping instead of a
    declaration per timestamp, so a new timestamp column cannot come out in the server's local form."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: InstantField,
    }


@extend_schema_field(
    {
        "type": "string",
        "description": "ISO 8601 wall time with the zone's offset. Not `format: date-time`: a historic "
        "local-mean-time offset has seconds (`-04:56:02`), which RFC 3339 cannot express.",
        "example": "2026-03-08T03:00:00-04:00",
    }
)
class LocalInstantField(serializers.DateTimeField):
    """Writes an aware datetime with its own offset (`2026-03-08T03:00:00-07:00`): a preview shows the wall
    time in the trigger's zone, which converting to UTC would erase."""

    def to_representation(self, value: datetime | None) -> str | None:  # type: ignore[override]
        # DRF's stubs say str; DRF itself renders a null instant as None, which the schema documents.
        return value.isoformat() if value is not None else None


# --- Errors -----------------------------------------------------------------------------------------------

#: Key under which errors about the request as a whole are reported (DRF's own name for it).
NON_FIELD = api_settings.NON_FIELD_ERRORS_KEY
#: Key a malformed body is reported under, so every 400 is `{name: [messages]}`.
BODY_FIELD = "body"


def field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's error detail (nested dicts and lists, as nested serializers produce) into
    `{field: [messages]}` with dotted names, so every 400 has one shape a client can rely on."""
    if isinstance(detail, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in field_errors(value, name).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    if isinstance(detail, list | tuple):
        flat = {}
        for index, item in enumerate(detail):
            nested = isinstance(item, Mapping | list | tuple)
            name = f"{prefix}.{index}" if nested and prefix else prefix
            for field, messages in field_errors(item, name).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    return {prefix or NON_FIELD: [str(detail)]}


def _from_django(exc: DjangoValidationError) -> exceptions.ValidationError:
    """The services raise Django's `ValidationError` keyed by field; DRF would let it become a 500."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({NON_FIELD: exc.messages})


def one_line(errors: Mapping[str, list[str]]) -> str:
    """`field: message` for the first problem: the compatible API's errors are a single string."""
    for field, messages in errors.items():
        message = messages[0] if messages else "is invalid"
        return message if field in (NON_FIELD, "detail") else f"{field}: {message}"
    return "invalid request"


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """The one place API errors get their shape.

    - Django `ValidationError` (what services raise) and DRF's become 400 `{field: [messages]}`; a parse error
      becomes `{"body": [message]}`.
    - Everything else DRF knows (401, 403, 404, 405, 413, 415, 429) keeps `{"detail": message}`, with DRF's
      `WWW-Authenticate` and `Retry-After` headers.
    - A view may rename fields (`error_field_names`: the domain's `cron_expression` is the compat API's
      `cronExpression`) and choose the compat envelope (`error_style = "compat"` →
      `{"success": false, "error": "field: message"}`).
    - The database or Redis being unreachable is 503 with `Retry-After` (`toolkit.outage`), in the view's
      envelope.
    Anything else is left to Django (a 500, logged): hiding a bug behind a 400 would only delay finding it.
    """
    from rest_framework.views import exception_handler  # not at import time: see document_error_responses

    view = context.get("view")
    dependency = outage.unavailable(exc)
    if dependency is not None:
        request = context.get("request")
        outage.warn(dependency, exc, getattr(request, "path", "the API"))
        answer = Response(
            outage.body(dependency, style=getattr(view, "error_style", "v1")),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(outage.retry_after()), "Cache-Control": "no-store"},
        )
        return cast(Response, outage.quiet(answer))
    if isinstance(exc, DjangoValidationError):
        exc = _from_django(exc)
    elif isinstance(exc, RequestDataTooBig):
        exc = request_too_large()
    response = exception_handler(exc, dict(context))
    if response is None:
        return None
    renames: Mapping[str, str] = getattr(view, "error_field_names", {})
    if isinstance(exc, exceptions.ParseError):
        errors = {BODY_FIELD: [str(exc.detail)]}
    elif response.status_code == status.HTTP_400_BAD_REQUEST:
        errors = field_errors(response.data)
    else:
        errors = {"detail": [str(response.data.get("detail", "")) if isinstance(response.data, dict) else ""]}
    errors = {_rename(field, renames): messages for field, messages in errors.items()}
    style = getattr(view, "error_style", "v1")
    if style == "compat":
        response.data = {"success": False, "error": one_line(errors)}
    elif style == "flows":
        response.data = flows_error(
            response.status_code,
            one_line(errors),
            errors if response.status_code == status.HTTP_400_BAD_REQUEST else None,
        )
    elif "detail" in errors and response.status_code != status.HTTP_400_BAD_REQUEST:
        response.data = {"detail": errors["detail"][0]}
    else:
        response.data = errors
    return response


def flows_error(status_code: int, message: str, errors: Mapping[str, list[str]] | None = None) -> dict:
    """The flows API's error body: what its server (Nitro/h3) answered for `createError`, so its clients'
    `error.data.statusMessage` reads our message; `data` holds every field's problems on a 400."""
    body: dict[str, Any] = {
        "error": True,
        "statusCode": status_code,
        "statusMessage": message,
        "message": message,
    }
    if errors:
        body["data"] = dict(errors)
    return body


def _rename(field: str, renames: Mapping[str, str]) -> str:
    head, dot, rest = field.partition(".")
    return renames.get(head, head) + dot + rest


# --- OpenAPI: the error shapes every operation can answer with ---------------------------------------------

ERROR_COMPONENTS: dict[str, dict[str, Any]] = {
    "FieldErrors": {
        "type": "object",
        "description": "Each key names a field (or `body` for malformed JSON, `non_field_errors` for the "
        "request as a whole) and lists what is wrong with it.",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
        "example": {"cron_expression": ["field 2 (hour): 25 is out of range 0-23"]},
    },
    "ErrorDetail": {
        "type": "object",
        "properties": {"detail": {"type": "string", "description": "What went wrong."}},
        "required": ["detail"],
        "example": {"detail": "Not found."},
    },
    "FlowsError": {
        "type": "object",
        "properties": {
            "error": {"type": "boolean", "enum": [True]},
            "statusCode": {"type": "integer", "description": "The HTTP status, repeated."},
            "statusMessage": {"type": "string", "description": "The problem, naming the field."},
            "message": {"type": "string", "description": "The same text as `statusMessage`."},
            "data": {
                "type": "object",
                "description": "On a 400: each field's problems (`cron`, `delay`, `input`, ...).",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "required": ["error", "statusCode", "statusMessage", "message"],
        "example": {
            "error": True,
            "statusCode": 400,
            "statusMessage": "cron: field 2 (hour): 25 is out of range 0-23",
            "message": "cron: field 2 (hour): 25 is out of range 0-23",
            "data": {"cron": ["field 2 (hour): 25 is out of range 0-23"]},
        },
    },
    "CompatError": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {"type": "string", "description": "The problem, naming the field."},
        },
        "required": ["success", "error"],
        "example": {"success": False, "error": "cronExpression: field 2 (hour): 25 is out of range 0-23"},
    },
}
_ERROR_DESCRIPTIONS = {
    "400": "Invalid input: each key names a field (or `body` for malformed JSON).",
    "401": "Missing or invalid credentials.",
    "404": "No such object among yours.",
    "413": "Request body larger than the configured limit.",
    "415": "Unsupported content type (send JSON).",
    "429": "Too many requests; retry after `Retry-After` seconds.",
}
_BODY_METHODS = {"post", "put", "patch"}


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular post-processing hook: add to every operation the error responses it can give, in the
    shape of its API style, so the schema says what clients (and schemathesis) actually receive.

    A hook rather than an `AutoSchema` subclass because this module is imported while DRF's views module is
    still loading (it holds the authentication class), and `drf_spectacular.openapi` imports that module."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(ERROR_COMPONENTS)
    view_classes = {
        (path, method.lower()): getattr(callback, "cls", None)
        for path, _, method, callback in generator.endpoints
    }
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            view_class = view_classes.get((path, method))
            style = getattr(view_class, "error_style", "v1")
            responses = operation.setdefault("responses", {})
            # An adapter's routes can all answer 400 (a bad body, query or name) and 404.
            for code in _error_codes(path, method, operation, compat=style in _ERROR_SCHEMAS):
                responses.setdefault(code, _error_response(code, style=style))
    return result


def _error_codes(path: str, method: str, operation: Mapping[str, Any], *, compat: bool) -> list[str]:
    has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
    security = operation.get("security")
    codes = []
    if method in _BODY_METHODS or has_query or compat:
        codes.append("400")
    if security and {} not in security:
        codes.append("401")
    if "{" in path or compat:
        codes.append("404")
    if "requestBody" in operation:
        codes += ["413", "415"]
    codes.append("429")  # every API view is throttled (the token endpoint per client IP)
    return codes


_ERROR_SCHEMAS = {"compat": "CompatError", "flows": "FlowsError"}


def _error_response(code: str, *, style: str) -> dict[str, Any]:
    name = _ERROR_SCHEMAS.get(style) or ("FieldErrors" if code == "400" else "ErrorDetail")
    response: dict[str, Any] = {
        "description": _ERROR_DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }
    if code == "429":
        response["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
        }
    return response
