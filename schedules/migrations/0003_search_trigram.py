"""Trigram indexes for `?search=` and the admin's search, PostgreSQL only. Django writes `icontains` as
`UPPER(name) LIKE UPPER('%…%')`, so the indexes are on UPPER(column): an index on the bare column would
never be used by it.

A substring search cannot use a b-tree, so without these every search reads every live trigger; with
pg_trgm a term of three or more characters is an index lookup. The extension is trusted (any database
owner may create it); where it cannot be created, search still works, by a scan, and the migration says so
rather than failing a deploy. Other databases (SQLite for development) skip this migration's SQL.
"""

from __future__ import annotations

import logging

from django.db import migrations, transaction

log = logging.getLogger(__name__)

INDEXES = {
    "trigger_name_trgm": "name",
    "trigger_workflow_trgm": "workflow_id",
}


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # noqa: BLE001 - any refusal (permissions, a managed host) leaves search working
        log.warning("pg_trgm is not available (%s): trigger search will scan instead of using an index", exc)
        return
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON schedules_trigger "
            f"USING gin ((UPPER({column})) gin_trgm_ops) WHERE deleted_at IS NULL"
        )


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("schedules", "0002_list_indexes")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
