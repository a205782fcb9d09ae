"""Console sign-in outside dev mode: every page needs a session signed in with a token, a revoked token ends the
session, read-only sessions see no action buttons and their POSTs are refused, and sign-out is a CSRF-checked POST."""
from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from flask.testing import FlaskClient

from taskservice import create_app
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend


@pytest.fixture(scope="module")
def secure_app(backend: Backend) -> Iterator[Flask]:
    app = create_app(backend.settings.merged(auth=True))
    yield app
    app.extensions["taskservice"].close()


def token(services: Services, role: str = "admin") -> tuple[str, str]:
    name = f"console_{uuid.uuid4().hex[:10]}"
    return name, services.tokens.create(name, role)[1]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: FlaskClient, secret: str, next_url: str = "/") -> FlaskClient:
    form = client.get(f"/login?next={next_url}").get_data(as_text=True)
    answer = client.post("/login", data={"csrf_token": csrf_of(form), "token": secret, "next": next_url})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return client


@pytest.fixture
def fn(secure_app: Flask, services: Services, fn_name: str) -> str:
    from taskservice.specs import FunctionConfig

    services.ledger.put_function(fn_name, FunctionConfig(handler="tests.handlers:counted"))
    services.submitter.submit(fn_name, {}, invocation_id="guarded")
    return fn_name


def test_every_page_needs_a_signed_in_session(secure_app: Flask, fn: str) -> None:
    client = secure_app.test_client()
    for url in ("/", "/functions", "/dead-letters", "/dashboard", f"/invocations/{fn}/guarded"):
        answer = client.get(url)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=")
    assert client.get(f"/invocations/{fn}/guarded/live").status_code == 401
    assert client.get("/static/console/console.css").status_code == 200  # the sign-in page needs its stylesheet
    assert client.get("/v1/functions").status_code == 401  # and the API its bearer token, as before


def test_sign_in_with_a_token_then_sign_out(secure_app: Flask, services: Services, fn: str) -> None:
    client = secure_app.test_client()
    form = client.get("/login").get_data(as_text=True)
    wrong = client.post("/login", data={"csrf_token": csrf_of(form), "token": "tsk_not-a-token"})
    assert wrong.status_code == 401 and "unknown or has been revoked" in wrong.get_data(as_text=True)
    name, secret = token(services)
    sign_in(client, secret, f"/invocations/{fn}/guarded")
    page = client.get(f"/invocations/{fn}/guarded").get_data(as_text=True)
    assert name in page and ">Stop</button>" in page and "Sign out" in page
    assert client.post("/logout", data={}).status_code == 400  # sign-out is CSRF-checked too
    out = client.post("/logout", data={"csrf_token": csrf_of(page)})
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_sign_in_only_redirects_within_the_console(secure_app: Flask, services: Services) -> None:
    client = secure_app.test_client()
    form = client.get("/login").get_data(as_text=True)
    _name, secret = token(services)
    answer = client.post("/login", data={"csrf_token": csrf_of(form), "token": secret, "next": "//evil.example/x"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_a_revoked_token_ends_its_sessions(secure_app: Flask, services: Services) -> None:
    name, secret = token(services)
    client = sign_in(secure_app.test_client(), secret)
    assert client.get("/").status_code == 200
    services.tokens.revoke(name)
    answer = client.get("/", follow_redirects=True)
    assert "/login" in answer.request.path and "has been revoked" in answer.get_data(as_text=True)


def test_read_only_sees_no_actions_and_its_posts_are_refused(secure_app: Flask, services: Services, fn: str) -> None:
    name, secret = token(services, "read-only")
    client = sign_in(secure_app.test_client(), secret)
    page = client.get(f"/invocations/{fn}/guarded").get_data(as_text=True)
    assert "read-only" in page and ">Stop</button>" not in page and ">Retry</button>" not in page
    forged = client.post(f"/invocations/{fn}/guarded/stop", data={"csrf_token": csrf_of(page), "confirmed": "1"})
    assert forged.status_code == 403 and "read-only" in html.unescape(forged.get_data(as_text=True))
    assert services.ledger.get_invocation(fn, "guarded").status.value == "Enqueued"
    services.control.stop(services.ledger.get_invocation(fn, "guarded"))
    assert client.post(f"/invocations/{fn}/guarded/retry", data={"csrf_token": csrf_of(page),
                                                                  "confirmed": "1"}).status_code == 403
    dead = services.dead_letters.find(fn, "guarded")
    assert dead is not None
    letters = client.get(f"/dead-letters?function={fn}").get_data(as_text=True)
    assert "guarded" in letters and ">Replay</button>" not in letters
    assert client.post(f"/dead-letters/{dead.id}/replay", data={"csrf_token": csrf_of(page),
                                                               "confirmed": "1"}).status_code == 403
    assert services.ledger.get_invocation(fn, "guarded").status.value == "Stopped"


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example/x", "https://evil.example/", "javascript:x"])
def test_sign_in_never_redirects_off_site(secure_app: Flask, services: Services, target: str) -> None:
    client = secure_app.test_client()
    form = client.get("/login").get_data(as_text=True)
    answer = client.post("/login", data={"csrf_token": csrf_of(form), "token": token(services)[1], "next": target})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
