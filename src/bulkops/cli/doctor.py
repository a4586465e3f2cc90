"""``bulkops doctor``: the keys of a database that differ only by letter case or Unicode form.

Imports refuse such twins, but a database may hold them from before or from rows written
behind bulkops' back. The command lists them per organization and entity, with the rows'
ids, so they can be merged; its exit code says whether there are any (0 none, 1 some), for
scripts and monitoring.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bulkops.cli.output import err, out, print_json
from bulkops.cli.state import reported_errors, state_of
from bulkops.engine.doctor import find_key_twins

__all__ = ["doctor"]


def doctor(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print the groups as JSON only.")] = False,
) -> None:
    """List keys that differ only by letter case or Unicode form (exit 1 if there are any).

    Every organization is checked, or only the one given with --org.

    Example: bulkops --org acme doctor --json
    """
    state = state_of(ctx)
    with reported_errors():
        groups = find_key_twins(state.ctx, state.org_slug)
    if json_:
        print_json([group.as_dict() for group in groups])
    elif not groups:
        err.print("No keys differ only by letter case or Unicode form.")
    else:
        for group in groups:
            spellings = ", ".join(
                f"{_shown(values)} (id {row_id})" for row_id, values in group.rows
            )
            out.print(f"{group.organization} {group.entity.value}: {spellings}", markup=False)
        err.print(
            f"{len(groups)} group(s) of keys differ only by letter case or Unicode form; "
            "merge each into one row (updates reach each by its exact key meanwhile)."
        )
    raise typer.Exit(1 if groups else 0)


def _shown(values: tuple[object, ...]) -> str:
    # ascii(): a decomposed é (e + U+0301) must not look like its NFC twin.
    parts = [ascii(v) if isinstance(v, str) and not v.isascii() else repr(v) for v in values]
    return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"
