"""Commands that manage the people: users (list, reset a password) and API tokens (list, revoke).

``user create`` and ``token create`` live in :mod:`bulkops.cli.admin` with the set-up.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from bulkops import engine
from bulkops.cli.output import err, out, print_json
from bulkops.cli.state import reported_errors, state_of
from bulkops.errors import NotFound

__all__ = ["token_list", "token_revoke", "user_list", "user_passwd"]

JsonList = Annotated[bool, typer.Option("--json", help="Print the list as JSON only.")]


def _when(value: Any) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value is not None else "—"


def user_list(ctx: typer.Context, as_json: JsonList = False) -> None:
    """The organization's users with their roles.

    Example: bulkops --org acme user list
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        users = engine.organization_users(state.ctx, org["id"])
    if as_json:
        print_json([_user(u) for u in users])
        return
    table = Table("id", "email", "role", "created", "disabled", box=None, header_style="bold")
    for u in users:
        table.add_row(
            str(u["id"]), u["email"], u["role"], _when(u["created_at"]), _when(u["disabled_at"])
        )
    out.print(table)


def _user(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "email": user["email"],
        "role": user["role"],
        "created_at": user["created_at"].isoformat() if user["created_at"] else None,
        "disabled_at": user["disabled_at"].isoformat() if user["disabled_at"] else None,
    }


def user_passwd(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from standard input.")
    ] = False,
) -> None:
    """Set a new password (a lost admin's, say): generated and shown once, or --password-stdin.

    Example: bulkops user passwd admin@example.com
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        given = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
        password = engine.set_password(state.ctx.store, org["id"], email, given)
    out.print(f"New password set for {email.strip().lower()}.")
    if given is None:
        out.print(f"Password (shown once): [bold]{password}[/]")


def token_list(ctx: typer.Context, as_json: JsonList = False) -> None:
    """The organization's API tokens (never their secrets), revoked ones included.

    Example: bulkops token list
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        tokens = engine.organization_tokens(state.ctx, org["id"])
        emails = {u["id"]: u["email"] for u in engine.organization_users(state.ctx, org["id"])}
    views = [
        {
            "id": t["id"],
            "name": t["name"],
            "user": emails.get(t["user_id"]),
            "created_at": t["created_at"],
            "last_used_at": t["last_used_at"],
            "revoked_at": t["revoked_at"],
        }
        for t in tokens
    ]
    if as_json:
        print_json(
            [
                {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in view.items()}
                for view in views
            ]
        )
        return
    if not views:
        out.print("No API tokens yet. Create one: bulkops token create --user EMAIL")
        return
    table = Table("id", "name", "user", "created", "last used", "revoked", box=None,
                  header_style="bold")
    for v in views:
        table.add_row(
            str(v["id"]), v["name"], v["user"] or "—", _when(v["created_at"]),
            _when(v["last_used_at"]), _when(v["revoked_at"]),
        )
    out.print(table)


def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="The token's id (bulkops token list).")],
) -> None:
    """Revoke an API token at once; requests with it get 401 from then on.

    Example: bulkops token revoke 3
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        if not engine.revoke_token(state.ctx, org["id"], token_id):
            raise NotFound(f"No token {token_id} in this organization.")
    err.print(f"Token {token_id} is revoked.")
