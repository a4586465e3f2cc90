"""``/api/v1/me``, ``/users`` and ``/tokens``: who is calling, and the admin's account tools."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from bulkops import engine
from bulkops.errors import NotFound

from .deps import Admin, State, Viewer
from .models import (
    MeOut,
    TokenCreatedOut,
    TokenIn,
    TokenPage,
    UserCreatedOut,
    UserIn,
    UserPage,
)
from .problems import problem_responses

__all__ = ["router"]

log = logging.getLogger("bulkops.api.accounts")
router = APIRouter(prefix="/api/v1", tags=["accounts"])
_NOT_ADMIN = "Not an admin (or a session without its CSRF token)"


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _user_out(user: dict[str, Any]) -> dict[str, Any]:
    return {k: _aware(user[k]) for k in ("id", "email", "role", "created_at", "disabled_at")}


def _token_out(token: dict[str, Any]) -> dict[str, Any]:
    return {
        k: token[k] for k in ("id", "user_id", "name", "created_at", "last_used_at", "revoked_at")
    }


@router.get("/me", response_model=MeOut, summary="The caller", responses=problem_responses(401))
def me(principal: Viewer) -> dict[str, Any]:
    return {
        "user_id": principal.user_id,
        "email": principal.email,
        "role": principal.role,
        "organization_id": principal.org_id,
    }


@router.get(
    "/users",
    response_model=UserPage,
    summary="Users of your organization",
    responses=problem_responses(401, 403, s403=_NOT_ADMIN),
)
def list_users(principal: Admin, state: State) -> dict[str, Any]:
    users = engine.organization_users(state.ctx, principal.org_id)
    return {"items": [_user_out(u) for u in users]}


@router.post(
    "/users",
    response_model=UserCreatedOut,
    status_code=201,
    summary="Create a user (admin)",
    responses=problem_responses(
        400,
        401,
        403,
        409,
        422,
        s400="A body that cannot be read, an email without @ or a short password",
        s403=_NOT_ADMIN,
        s409="The email is taken",
    ),
)
def create_user(body: UserIn, principal: Admin, state: State) -> dict[str, Any]:
    """Without ``password`` one is generated and returned once."""
    password = body.password or engine.generate_password()
    user_id = engine.create_user(state.ctx.store, principal.org_id, body.email, body.role, password)
    user = engine.organization_user(state.ctx, principal.org_id, user_id)
    assert user is not None
    log.info(
        "user created",
        extra={
            "org_id": principal.org_id,
            "user_id": principal.user_id,
            "created_user_id": user_id,
            "role": body.role.value,
        },
    )
    return {**_user_out(user), "password": None if body.password else password}


@router.get(
    "/tokens",
    response_model=TokenPage,
    summary="API tokens of your organization",
    responses=problem_responses(401, 403, s403=_NOT_ADMIN),
)
def list_tokens(principal: Admin, state: State) -> dict[str, Any]:
    tokens = engine.organization_tokens(state.ctx, principal.org_id)
    return {"items": [_token_out(t) for t in tokens]}


@router.post(
    "/tokens",
    response_model=TokenCreatedOut,
    status_code=201,
    summary="Create an API token (admin); shown once",
    responses=problem_responses(
        400, 401, 403, 404, 422, s403=_NOT_ADMIN, s404="No such user"
    ),
)
def create_token(body: TokenIn, principal: Admin, state: State) -> dict[str, Any]:
    user_id = body.user_id if body.user_id is not None else principal.user_id
    user = (
        engine.organization_user(state.ctx, principal.org_id, user_id)
        if user_id is not None
        else None
    )
    if user is None:
        raise NotFound(f"No user {body.user_id} in your organization.")
    token = engine.create_token(state.ctx.store, principal.org_id, user["id"], body.name)
    created = engine.organization_token(state.ctx, principal.org_id, token=token)
    assert created is not None
    log.info(
        "token created",
        extra={
            "org_id": principal.org_id,
            "user_id": principal.user_id,
            "token_id": created["id"],
            "for_user_id": user["id"],
        },
    )
    return {**_token_out(created), "token": token}


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    summary="Revoke an API token (admin)",
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422, s403=_NOT_ADMIN, s404="No such token"),
)
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**62)], principal: Admin, state: State
) -> Response:
    if not engine.revoke_token(state.ctx, principal.org_id, token_id):
        raise NotFound(f"No token {token_id} in your organization.")
    log.info(
        "token revoked",
        extra={"org_id": principal.org_id, "user_id": principal.user_id, "token_id": token_id},
    )
    return Response(status_code=204)
