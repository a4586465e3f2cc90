"""What the command line prints: JSON, operation summaries and the Rich progress bar.

Results go to standard output (``out``, or raw JSON); messages and the progress bar go to
standard error (``err``), so that output can be piped.
"""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from bulkops import engine
from bulkops.model import Operation, OperationStatus, OperationType, Outcome

__all__ = [
    "counted",
    "err",
    "exit_code_for",
    "live_progress",
    "out",
    "print_fields",
    "print_item",
    "print_json",
    "print_summary",
    "wait_message",
]

err = Console(stderr=True)
# On a terminal, messages wrap at words (the terminal itself cut them anywhere, 'ca' and
# 'tegory' on two lines); through a pipe or into a file each stays on one line.
err.soft_wrap = not err.is_terminal
out = Console(highlight=False, soft_wrap=True)


def counted(count: int, noun: str) -> str:
    """``1 conflict``, ``2 conflicts``: a count and its noun, plural when it is not one."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@contextlib.contextmanager
def live_progress(enabled: bool, title: str) -> Iterator[engine.ProgressCallback | None]:
    """A Rich bar with rate and time remaining, on a terminal only."""
    if not enabled or not err.is_terminal:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(title, total=100.0, counts="", rate="")

        undoing = False

        def update(event: dict[str, Any]) -> None:
            nonlocal undoing
            phase = event.get("phase", "")
            # A rollback counts records restored and conflicts, to its end (whose event is
            # the whole operation, with the counters of what it undid too).
            undoing = undoing or event.get("status") == OperationStatus.ROLLING_BACK
            if undoing:
                good = event.get("rolled_back_records") or 0
                bad = event.get("conflict_records") or 0
                rows = good + bad
            else:
                good = event.get("successful_records") or 0
                bad = event.get("failed_records") or 0
                rows = event.get("processed_records") or 0
            # Within the terminal's width (80 columns, say), time remaining included: the
            # rows only where they are more than ✓ and ✗ (unchanged ones), the phase only
            # where the title does not say it and there is room.
            counts = f"✓{good:,} ✗{bad:,}"
            if rows != good + bad:
                counts = f"{counted(rows, 'row')} {counts}"
            rate = f"{event['rate']:,.0f}/s" if event.get("rate") else ""
            description = f"{title} ({phase})" if phase in _SAID_PHASES else title
            fixed = _BAR_AND_TIMES + len(counts) + len(rate)
            if len(description) + fixed > err.width:
                description = title
            if len(description) + fixed > err.width:
                rate = ""
            bar.update(
                task,
                completed=event.get("percentage") or 0.0,
                counts=counts,
                rate=rate,
                description=description,
            )

        yield update


_SAID_PHASES = frozenset({"validating", "queued"})
"""Phases the bar names beside its title ("import products (validating)"); applying,
rolling back and exporting go without saying."""
_BAR_AND_TIMES = 34
"""What the bar's other columns take at the least: a short bar, the percentage, the time
elapsed, ``eta`` and the time remaining, and the spaces between the columns."""


def exit_code_for(op: Operation) -> int:
    """0 when the operation completed without a failed record, else 1."""
    return 0 if op.status is OperationStatus.COMPLETED and not op.failed_records else 1


_OUTCOME_STYLES = {
    Outcome.SUCCEEDED: "green",
    Outcome.COMPLETED_WITH_ERRORS: "yellow",
    Outcome.CHECKED: "cyan",
    Outcome.FAILED: "red",
    Outcome.CANCELLED: "red",
    Outcome.ROLLED_BACK: "magenta",
}


_CHANGES = ("create", "update", "delete", "unchanged", "failed")
_COUNTERS = ("created", "updated", "deleted", "unchanged", "failed")
_PLANNED = ("to create", "to update", "to delete", "unchanged", "failing")

def _change_counts(kind: OperationType, counts: Mapping[str, int], *, planned: bool) -> str:
    """``1 created, 2 updated, 0 unchanged, 0 failed`` (``planned``: ``1 to create, …,
    0 failing``): from ``counts`` by change (create, update, delete, unchanged, failed), those
    an operation of type ``kind`` can make and any other that is not zero."""
    words = _PLANNED if planned else _COUNTERS
    return ", ".join(
        f"{counts.get(change, 0):,} {word}"
        for change, word in zip(_CHANGES, words, strict=True)
        if change == "failed" or change in kind.changes or counts.get(change, 0)
    )


def print_summary(op: Operation) -> None:
    """The operation's status and counters, its first errors and where the full report is."""
    view = engine.operation_view(op)
    outcome = op.outcome
    said = (
        f"[bold {_OUTCOME_STYLES[outcome]}]{outcome.label}[/]"
        if outcome is not None
        else f"[bold]{op.status.label}[/]"
    )
    # Two lines that fit a terminal: how it went, then the counts (wrapped at words).
    out.print(f"Operation {view['id']}: {said}")
    checked = bool(view["results"].get("validate_only"))
    figures = {
        word: view[f"{counter}_records"]
        for word, counter in zip(_CHANGES, _COUNTERS, strict=True)
    }
    counts = (
        f"{view['processed_records']:,} {'checked' if checked else 'processed'}: "
        + _change_counts(op.operation_type, figures, planned=checked)
        + (f", {view['rolled_back_records']:,} rolled back" if view["rolled_back_records"] else "")
        + (f", {counted(view['conflict_records'], 'conflict')}"
           if view["conflict_records"] else "")
    )
    _print_indented(counts)
    if checked:
        out.print("Nothing was changed: a check says what applying the file would do.",
                  soft_wrap=False)
    for error in view["results"].get("first_errors", [])[:5]:
        column = f" [{error['column']}]" if error.get("column") else ""
        _print_indented(f"row {error['row']} (line {error['line']}){column}: {error['message']}")
    if view["failed_records"]:
        out.print(f"Error report: bulkops errors {view['id'][:8]} -o errors.csv")


def print_fields(fields: list[tuple[str, str | list[str]]]) -> None:
    """Labelled values, one a line, their values in one column after the longest label.

    A value is a text, or a list of parts (``"chunk_size": 1000``) that wrap between parts,
    never inside one. What does not fit beside its label goes on the lines below, indented
    under the value column; a single word longer than that room (a checksum on a narrow
    terminal) starts on its own line, two spaces in, so that it is never cut in two.
    """
    column = max(len(label) for label, _ in fields) + 2
    width = max(out.width, 40)
    lines: list[str] = []
    for label, value in fields:
        parts = value if isinstance(value, list) else value.split(" ")
        head = f"{label}:".ljust(column)
        if len(head) + max(map(len, parts), default=0) > width:
            lines.append(head.rstrip())
            head = "  "
        lines.extend(_packed(parts, head, " " * len(head), width))
    out.print(Text("\n".join(lines)), soft_wrap=True)


def _packed(parts: list[str], first: str, indent: str, width: int) -> list[str]:
    """``parts`` joined by spaces into lines of at most ``width`` (a part longer than that
    stands alone), the first line after ``first``, the others after ``indent``."""
    lines: list[str] = []
    line, start = first, len(first)
    for part in parts:
        if len(line) > start and len(line) + 1 + len(part) > width:
            lines.append(line.rstrip())
            line, start = indent, len(indent)
        line = f"{line} {part}" if len(line) > start else line + part
    lines.append(line.rstrip())
    return lines


def print_item(text: str) -> None:
    """An item of a list of messages on standard error, ``  - text``: wrapped at words under
    its text on a terminal, on one line otherwise; as plain text (brackets are not markup)."""
    line = f"  - {text}"
    err.print(Text(_filled(line, err.width, "    ") if err.is_terminal else line), soft_wrap=True)


def _print_indented(line: str) -> None:
    """Two spaces in, wrapped at words to the width with the same indent, no trailing spaces;
    as plain text (a value in brackets is not markup)."""
    out.print(Text(_filled("  " + line, out.width, "  ")), soft_wrap=True)


def _filled(line: str, width: int, indent: str) -> str:
    """``line`` wrapped at words (never inside one, nor at a hyphen) to ``width``, its
    continuation lines after ``indent``."""
    return textwrap.fill(
        line, width=max(width, 20), subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    )


def wait_message(ctx: engine.Context, org_id: int, op_id: str) -> Callable[[], bool]:
    """The engine's wait callback, called only when the operation really waits: say once
    which operation it waits for, then poll slowly."""
    shown: str | None = None

    def wait() -> bool:
        nonlocal shown
        other = engine.blocker(ctx, org_id, op_id)
        if other is not None and other.id != shown:
            err.print(
                f"Queued: operation {op_id[:8]} waits for operation {other.id[:8]} "
                f"({other.status.label}) on the same data to end."
            )
            shown = other.id
        time.sleep(0.5)
        return True

    return wait
