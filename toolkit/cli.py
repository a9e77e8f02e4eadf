"""What the management commands print: kubectl-like aligned tables, JSON, and progress for long operations.

Tables are plain text padded with spaces (no box drawing, no colour), so they read the same in a terminal, a
log and a `grep`. Progress goes to stderr through `rich`, and only when stderr is a terminal: stdout stays
the table or the JSON a script parses, and a captured or piped run prints no bar at all."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: What a cell with no value shows (kubectl's spelling).
NONE = "<none>"


def cell(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return instant(value)
    return str(value).replace("\n", " ")


def instant(value: datetime | None) -> str:
    """An instant in UTC to the second, `Z` spelled out: the same text in every table and every zone."""
    if value is None:
        return NONE
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns as wide as their widest cell, three spaces apart, headers in capitals; no trailing spaces."""
    texts = [[h.upper() for h in headers], *([cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in texts) for i in range(len(headers))]
    return "\n".join(
        "   ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in texts
    )


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """`Label:   value` lines, the values aligned (kubectl describe)."""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(f"{(label + ':').ljust(width)}   {cell(value)}" for label, value in pairs)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return instant(value)
    return str(value)


def add_progress_argument(parser: Any) -> None:
    """`--progress`, for the commands whose work is long (reconcile, backfill, prune)."""
    parser.add_argument(
        "--progress",
        action="store_true",
        help="Draw a progress bar on stderr even when it is not a terminal (it is drawn on one anyway).",
    )


@contextmanager
def progress(
    stream: IO[str] | Any, description: str, total: int | None, *, force: bool = False
) -> Iterator[Callable[[int, int | None], None]]:
    """A bar on `stream` (stderr) while the block runs; yields `update(done, total)` (`total` None: a count
    with no end known). Nothing is drawn when `stream` is not a terminal unless `force` (`--progress`), so
    tests and pipes see only the command's real output."""
    # Django's OutputWrapper ends every write with a newline, which would break a live bar: draw on the
    # stream it wraps.
    console = Console(file=getattr(stream, "_out", stream), force_terminal=True if force else None)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def update(done: int, of: int | None) -> None:
            bar.update(task, completed=done, total=of)

        yield update
