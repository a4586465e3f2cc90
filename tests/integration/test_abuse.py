"""Abuse resistance against a real server on both databases: the log-in rate limit (dashboard
form and plain HTTP), Idempotency-Key bound to its request, and the headers every response
carries.

The server is uvicorn on 127.0.0.1, which trusts ``X-Forwarded-For`` from there (as from a
reverse proxy on the same host): the tests speak from several client addresses that way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from bulkops import engine
from bulkops.config import Settings
from bulkops.errors import AuthenticationFailed
from bulkops.model import Role
from bulkops.store import utcnow
from tests.integration.test_api import (
    MAX_FILE_BYTES,
    Api,
    problem,
    products_csv,
    start_api,
    upload,
)

PASSWORD = "correct horse battery staple"
ALICE = "alice@acme.example"
BOB = "bob@acme.example"


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    yield from start_api(settings.model_copy(update={"max_file_bytes": MAX_FILE_BYTES}))


@pytest.fixture
def people(api: Api) -> Api:
    for email in (ALICE, BOB):
        engine.create_user(api.store, api.org_id, email, Role.EDITOR, PASSWORD)
    return api


# -- the log-in rate limit ------------------------------------------------------------------------


def _login_form(api: Api, address: str) -> httpx.Client:
    """A browser-like client from ``address`` that has loaded the log-in form (CSRF cookie)."""
    client = httpx.Client(base_url=api.url, headers={"X-Forwarded-For": address}, timeout=30)
    api.clients.append(client)
    page = client.get("/login")
    assert page.status_code == 200
    return client


def _log_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    token = client.cookies.get("bulkops_login_csrf") or ""
    if not token:
        found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert found is not None
        token = found.group(1)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, "next": ""},
    )


def _fail(client: httpx.Client, email: str, times: int) -> None:
    for _ in range(times):
        assert _log_in(client, email, "wrong password!").status_code == 401


def test_login_limit_per_account_and_per_address(people: Api) -> None:
    attacker = _login_form(people, "10.0.0.1")
    _fail(attacker, ALICE, engine.LOGIN_FAILURE_LIMIT)

    # Limited: even the right password is refused, with how long to wait.
    refused = _log_in(attacker, ALICE, PASSWORD)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 850 <= retry_after <= 900
    assert "session" not in refused.cookies

    # The account is limited from any address ...
    elsewhere = _login_form(people, "10.0.0.3")
    assert _log_in(elsewhere, ALICE, PASSWORD).status_code == 429
    # ... and the address for any account.
    assert _log_in(attacker, BOB, PASSWORD).status_code == 429
    # Another account from another address is not affected.
    bob = _login_form(people, "10.0.0.2")
    welcome = _log_in(bob, BOB, PASSWORD)
    assert welcome.status_code == 303, welcome.text


def test_the_dashboard_says_when_to_try_again(people: Api) -> None:
    browser = _login_form(people, "10.0.1.1")
    _fail(browser, ALICE, engine.LOGIN_FAILURE_LIMIT)
    page = _log_in(browser, ALICE, PASSWORD)
    assert page.status_code == 429
    assert page.headers["content-type"].startswith("text/html")
    assert "Too many failed attempts. Try again in 15 minutes." in page.text
    assert page.headers["Retry-After"].isdigit()


def test_a_successful_login_clears_the_account(people: Api) -> None:
    # Each failure from its own address, so that only the account counts.
    for i in range(engine.LOGIN_FAILURE_LIMIT - 1):
        _fail(_login_form(people, f"10.0.2.{i}"), ALICE, 1)
    user = _login_form(people, "10.0.2.100")
    assert _log_in(user, ALICE, PASSWORD).status_code == 303
    for i in range(engine.LOGIN_FAILURE_LIMIT - 1):
        _fail(_login_form(people, f"10.0.3.{i}"), ALICE, 1)
    assert _log_in(_login_form(people, "10.0.3.100"), ALICE, PASSWORD).status_code == 303


def test_failures_leave_the_window(ctx: engine.Context, org_id: int) -> None:
    engine.create_user(ctx.store, org_id, ALICE, Role.EDITOR, PASSWORD)
    start = utcnow() - timedelta(minutes=19, seconds=30)
    for i in range(engine.LOGIN_FAILURE_LIMIT):
        with pytest.raises(AuthenticationFailed):
            engine.log_in(ctx.store, ALICE, "nope", "10.0.4.1", now=start + timedelta(minutes=i))
    # Ten minutes after the first failure, until five minutes from then (the first one leaves).
    with pytest.raises(engine.LoginThrottled) as limited:
        engine.log_in(
            ctx.store, " Alice@ACME.example ", PASSWORD, "10.0.4.2",
            now=start + timedelta(minutes=10),
        )
    assert limited.value.retry_after_seconds == 5 * 60
    assert str(limited.value) == "Too many failed attempts. Try again in 5 minutes."
    # Nearly twenty minutes on, five are in the window; those that left it are deleted.
    since = utcnow() - engine.LOGIN_FAILURE_WINDOW
    in_window = ctx.store.logins.recent(ALICE, "10.0.4.1", since)
    assert [len(times) for times in in_window] == [5, 5]
    assert [len(times) for times in ctx.store.logins.recent(ALICE, "10.0.4.1", start)] == [5, 5]
    # The right password opens, and clears the account's failures.
    principal = engine.log_in(ctx.store, ALICE, PASSWORD, "10.0.4.1")
    assert principal.email == ALICE
    assert ctx.store.logins.recent(ALICE, "10.0.4.1", start) == ([], [])


# -- Idempotency-Key ---------------------------------------------------------------------------


def test_a_repeated_key_with_the_same_request(api: Api) -> None:
    client = api.client(**{"Idempotency-Key": "same-1"})
    first = upload(client, products_csv(3), chunk_size=2)
    assert first.status_code == 202, first.text
    again = upload(client, products_csv(3), chunk_size=2, name="renamed.csv")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == f"/api/v1/operations/{first.json()['id']}"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": products_csv(4)}, "file"),
        ({"operation": "update"}, "operation_type"),
        ({"chunk_size": 7}, "chunk_size"),
        ({"validate_only": True}, "validate_only"),
    ],
)
def test_a_repeated_key_with_another_request(
    api: Api, change: dict[str, object], field: str
) -> None:
    client = api.client(**{"Idempotency-Key": "other-1"})
    first = upload(client, products_csv(3), chunk_size=2)
    assert first.status_code == 202, first.text
    first_id = first.json()["id"]
    arguments: dict[str, object] = {"text": products_csv(3), "chunk_size": 2, **change}
    refused = upload(client, **arguments)  # type: ignore[arg-type]
    body = problem(refused, 422)
    assert first_id in body["detail"]
    assert "different request" in body["detail"]
    assert [e["field"] for e in body["errors"]] == [field]
    # Nothing was made: one operation, and only the first file stored.
    listed = client.get("/api/v1/operations").json()["items"]
    assert [op["id"] for op in listed] == [first_id]


def test_an_expired_key_may_be_used_again(api: Api) -> None:
    client = api.client(**{"Idempotency-Key": "old-1"})
    first = upload(client, products_csv(3))
    assert first.status_code == 202, first.text
    first_id = first.json()["id"]
    with api.store.transaction(api.org_id, write=True) as tx:
        tx.operations.update(
            first_id,
            {"created_at": utcnow() - engine.IDEMPOTENCY_KEY_LIFETIME - timedelta(minutes=1)},
        )
    # Another request with the old key: a new operation, and the old one lets go of the key.
    second = upload(client, products_csv(5))
    assert second.status_code == 202, second.text
    assert second.json()["id"] != first_id
    assert engine.get_operation(api.ctx, api.org_id, first_id).idempotency_key is None
    again = upload(client, products_csv(5))
    assert again.status_code == 200
    assert again.json()["id"] == second.json()["id"]


# -- headers on every response -------------------------------------------------------------------


def _baseline(response: httpx.Response) -> None:
    assert response.headers.get_list("X-Content-Type-Options") == ["nosniff"]
    assert response.headers.get_list("Referrer-Policy") == ["same-origin"]


def test_every_response_carries_the_security_headers(api: Api) -> None:
    anonymous = httpx.Client(base_url=api.url, timeout=30)
    api.clients.append(anonymous)
    home = anonymous.get("/", follow_redirects=False)
    assert home.status_code in (302, 303, 307)
    _baseline(home)
    login = anonymous.get("/login")
    assert login.status_code == 200
    _baseline(login)
    assert "default-src 'self'" in login.headers["Content-Security-Policy"]
    _baseline(anonymous.get("/static/app.css"))
    _baseline(anonymous.get("/api/v1/operations"))  # 401

    client = api.client()
    listed = client.get("/api/v1/operations")
    assert listed.status_code == 200
    _baseline(listed)
    assert "Content-Security-Policy" not in listed.headers
    missing = client.get("/api/v1/operations/no-such-operation")
    problem(missing, 404)
    _baseline(missing)

    op = upload(client, products_csv(2)).json()
    with client.stream("GET", f"/api/v1/operations/{op['id']}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        _baseline(stream)
