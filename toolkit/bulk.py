"""Writing many rows, each with its own values, in one statement whose text does not depend on their number.

Why not `QuerySet.bulk_update` / `bulk_create`: `bulk_update` builds a `CASE WHEN pk = … THEN …` expression
per field and row and resolves each through the ORM (0.47 s of Python for 200 triggers by 7 fields, more than
the whole rest of a fire batch); `bulk_create` writes one `(%s, %s, …)` group per row, so the statement's text
grows with the batch and psycopg re-parses it every time (its query cache only keeps short statements), and it
cannot say which rows `ON CONFLICT DO NOTHING` kept without a second query. On PostgreSQL both here send one
array per column and let `unnest` turn them into rows: a constant statement (parsed once per process), one
round trip, and `RETURNING` names the rows that went in. Other databases (SQLite on a laptop) keep the ORM.

Values go to the driver as they are when psycopg adapts them exactly as the field would (str, int, bool,
UUID, aware datetimes, None); anything else (JSON, enums, naive datetimes, decimals) goes through the field's
own `get_db_prep_save`, so the column receives what `save()` would have written.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, cast

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import ServerBindingCursor

#: Rows per statement: bounds the size of one message to the server, not the number of statements' texts.
CHUNK = 1000

_PLAIN = (str, int, bool, uuid.UUID, type(None))


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field[Any, Any]]:
    meta = model._meta
    return [cast("models.Field[Any, Any]", meta.get_field(name)) for name in names]


def _array_type(field: models.Field[Any, Any], connection: BaseDatabaseWrapper) -> str:
    return f"{field.cast_db_type(connection) or field.db_type(connection)}[]"


def _prepared(
    objs: Sequence[Any],
    fields: Sequence[models.Field[Any, Any]],
    connection: BaseDatabaseWrapper,
    *,
    add: bool | None,
) -> list[list[Any]]:
    """One list per field: each object's value as the database should get it. `add` (True for an insert,
    False for an update, None for neither) runs the fields' `pre_save`, so `auto_now(_add)` stamps the rows
    as `save()` would; other fields are read as they are on the instances."""
    arrays: list[list[Any]] = []
    for field in fields:
        stamped = add is not None and bool(
            getattr(field, "auto_now", False) or (add and getattr(field, "auto_now_add", False))
        )
        values = []
        for obj in objs:
            value = field.pre_save(obj, cast(bool, add)) if stamped else getattr(obj, field.attname)
            if isinstance(value, Enum):
                value = value.value
            if not isinstance(value, _PLAIN) and not (type(value) is datetime and value.tzinfo is not None):
                value = field.get_db_prep_save(value, connection)
            values.append(value)
        arrays.append(values)
    return arrays


def update_each(
    objs: Sequence[Any],
    fields: Sequence[str],
    *,
    only_if: Mapping[str, Any] | None = None,
    model: type[models.Model] | None = None,
) -> set[Any]:
    """Write `fields` of every object in `objs` (all of one model) as they are on the instances; with
    `only_if` ({field: value}), only the rows that still hold those values (a compare-and-set, e.g. claim
    the runs still pending). Returns the primary keys of the rows written.

    With `model`, `objs` may be any objects carrying `pk` and the fields' attributes (a claim of a
    thousand rows need not build a thousand model instances); a plain `bulk_update` (no `only_if`, on a
    database without `unnest`) still needs instances."""
    if not objs:
        return set()
    model = model or type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        return _update_each_orm(model, objs, fields, only_if or {})
    meta = model._meta
    columns = _columns(model, [meta.pk.name, *fields])
    qn = connection.ops.quote_name
    names = [qn(str(c.column)) for c in columns]
    arrays = ", ".join(f"%b::{_array_type(c, connection)}" for c in columns)
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    table = qn(meta.db_table)
    conditions = [f"{table}.{names[0]} = v.{names[0]}"]
    guards = _columns(model, list(only_if or {}))
    conditions += [f"{table}.{qn(str(c.column))} = %s" for c in guards]
    guard_values = [
        c.get_db_prep_value(value, connection)
        for c, value in zip(guards, (only_if or {}).values(), strict=True)
    ]
    sql = (
        f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({', '.join(names)}) "  # noqa: S608
        f"WHERE {' AND '.join(conditions)} RETURNING {table}.{names[0]}"
    )
    return _returning(connection, sql, objs, columns, add=None, extra=guard_values)


def _update_each_orm(
    model: type[models.Model], objs: Sequence[Any], fields: Sequence[str], only_if: Mapping[str, Any]
) -> set[Any]:
    """`update_each` where there is no `unnest` (SQLite, the laptop default): `bulk_update`, or, for a
    compare-and-set, one UPDATE per set of equal values (a claim gives many rows the same ones)."""
    manager = model._default_manager
    if not only_if:
        manager.bulk_update(objs, list(fields), batch_size=500)
        return {obj.pk for obj in objs}
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for obj in objs:
        groups.setdefault(tuple(getattr(obj, name) for name in fields), []).append(obj.pk)
    written: set[Any] = set()
    # One transaction: SQLite serialises writers, so what the read finds holding is what the update takes.
    with transaction.atomic(using=router.db_for_write(model)):
        for values, pks in groups.items():
            held = list(manager.filter(pk__in=pks, **only_if).values_list("pk", flat=True))
            manager.filter(pk__in=held).update(**dict(zip(fields, values, strict=True)))
            written.update(held)
    return written


def insert_new(objs: Sequence[models.Model]) -> set[Any]:
    """INSERT `objs` (all of one model, primary keys set by the caller), skipping any row a unique constraint
    already holds (`ON CONFLICT DO NOTHING`); returns the primary keys of the rows that went in. The unique
    key, not the caller, decides what is a duplicate."""
    if not objs:
        return set()
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs, ignore_conflicts=True, batch_size=500)
        pks = [obj.pk for obj in objs]
        return set(model._default_manager.filter(pk__in=pks).values_list("pk", flat=True))
    columns = list(meta.concrete_fields)
    qn = connection.ops.quote_name
    names = ", ".join(qn(str(c.column)) for c in columns)
    arrays = ", ".join(f"%b::{_array_type(c, connection)}" for c in columns)
    pk_column = qn(str(meta.pk.column))
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({names}) SELECT * FROM unnest({arrays}) "  # noqa: S608
        f"ON CONFLICT DO NOTHING RETURNING {pk_column}"
    )
    return _returning(connection, sql, objs, columns, add=True)


def _returning(
    connection: BaseDatabaseWrapper,
    sql: str,
    objs: Sequence[Any],
    columns: Sequence[models.Field[Any, Any]],
    *,
    add: bool | None,
    extra: Sequence[Any] = (),
) -> set[Any]:
    """Run `sql` (its arrays first, then `extra` parameters) a CHUNK of objects at a time; the keys its
    RETURNING names, all chunks together."""
    written: set[Any] = set()
    with _binding_cursor(connection) as cursor:
        for start in range(0, len(objs), CHUNK):
            cursor.execute(
                sql, [*_prepared(objs[start : start + CHUNK], columns, connection, add=add), *extra]
            )
            written.update(row[0] for row in cursor.fetchall())
    return written


def _binding_cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor that sends the arrays as parameters beside the statement (server-side binding), wrapped as
    Django wraps its own (error translation, execute wrappers, the debug log that counts queries).

    Why not `connection.cursor()`: Django's psycopg cursor binds on the client, so every value of every array
    is quoted into the SQL text in Python (about a tenth of a fire batch's client time, profiled) and
    the server parses a statement as long as the data. Bound, the text is the constant one and psycopg dumps
    the arrays in C. Only these statements are bound on the server: Django's own queries keep its default."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)  # type: ignore[call-arg]
        return connection._prepare_cursor(raw)  # type: ignore[attr-defined]
