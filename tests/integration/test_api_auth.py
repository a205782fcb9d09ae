"""Bearer tokens on the API outside dev mode, and the `taskservice tokens` commands that manage them."""
from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from taskservice import create_app
from taskservice.cli import cli
from taskservice.db import make_engine
from taskservice.errors import FunctionNotFound
from taskservice.ledger.models import API_TOKENS
from taskservice.ledger.queries import InvocationFilter
from taskservice.ledger.tokens import TokenStore
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend


@pytest.fixture(scope="module")
def secured(backend: Backend) -> FlaskClient:
    return create_app(backend.settings.merged(auth=True)).test_client()


@pytest.fixture
def tokens(services: Services, fn_name: str) -> dict[str, str]:
    """An admin and a read-only token, named after the test so tests sharing a ledger never collide."""
    _, admin = services.tokens.create(f"{fn_name}_admin", "admin")
    _, reader = services.tokens.create(f"{fn_name}_reader", "read-only")
    return {"admin": admin, "reader": reader}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_api_needs_a_live_token(secured: FlaskClient, services: Services, tokens: dict[str, str],
                                fn_name: str, eventually: Any) -> None:
    missing = secured.get("/v1/functions")
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "Unauthorized"
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    assert "taskservice tokens create" in missing.get_json()["error"]["message"]
    for header in ({"Authorization": "Bearer tsk_not-a-real-token"}, {"Authorization": "Basic dXNlcjpwdw=="},
                   {"Authorization": "Bearer"}, {"Authorization": f"Bearer {tokens['admin']}x"}):
        assert secured.get("/v1/functions", headers=header).status_code == 401, header
    assert secured.get("/v1/functions", headers=bearer(tokens["admin"])).status_code == 200
    services.tokens.revoke(f"{fn_name}_admin")  # another TokenStore than the app's, as the CLI's would be
    # The API caches token lookups for half a second: the revoke must reach it within a second.
    revoked = eventually(lambda: secured.get("/v1/functions", headers=bearer(tokens["admin"])), timeout_s=1.0,
                         until=lambda answer: answer.status_code == 401, what="the revoked token refused")
    assert "revoked" in revoked.get_json()["error"]["message"]


def test_probes_and_the_api_document_stay_open(secured: FlaskClient) -> None:
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/openapi.json").status_code == 200


def test_a_read_only_token_reads_but_changes_nothing(secured: FlaskClient, services: Services,
                                                     tokens: dict[str, str], fn_name: str) -> None:
    admin, reader = bearer(tokens["admin"]), bearer(tokens["reader"])
    assert secured.put(f"/v1/functions/{fn_name}", json={"handler": "workers.handlers.noop:handler"},
                       headers=admin).status_code == 201
    listed = secured.get("/v1/invocations", headers=reader)
    assert listed.status_code == 200
    attempts = [
        secured.put(f"/v1/functions/{fn_name}_x", json={"handler": "workers.handlers.noop:handler"}, headers=reader),
        secured.post(f"/v1/functions/{fn_name}/invocations", json={}, headers=reader),
        secured.post("/v1/invocations/stop", json={"function": fn_name}, headers=reader),
        secured.post("/v1/invocations/retry", json={"function": fn_name}, headers=reader),
        secured.delete(f"/v1/functions/{fn_name}", headers=reader),
    ]
    for answer in attempts:
        assert answer.status_code == 403 and "read-only" in answer.get_json()["error"]["message"]
    assert services.ledger.list_invocations(InvocationFilter(function=fn_name)).items == []
    assert services.ledger.get_function(fn_name).name == fn_name
    with pytest.raises(FunctionNotFound):
        services.ledger.get_function(f"{fn_name}_x")


def test_tokens_are_stored_hashed(services: Services, tokens: dict[str, str]) -> None:
    with services.engine.connect() as conn:
        stored = [r.token_hash for r in conn.execute(select(API_TOKENS.c.token_hash))]
    assert tokens["admin"] not in stored and all(len(h) == 64 for h in stored)


@pytest.fixture
def run_cli(backend: Backend) -> CliRunner:
    """The CLI with exactly this backend's TASKSERVICE_* environment (and none of the caller's)."""
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TASKSERVICE_")}
    return CliRunner(env={**cleared, **backend.settings.to_env()})


def test_tokens_cli_creates_lists_and_revokes(run_cli: CliRunner, secured: FlaskClient, services: Services,
                                              fn_name: str, eventually: Any) -> None:
    created = run_cli.invoke(cli, ["tokens", "create", f"{fn_name}_ci", "--role", "read-only"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("tsk_") and "shown only now" in created.stderr
    assert secured.get("/v1/functions", headers=bearer(secret)).status_code == 200
    listed = run_cli.invoke(cli, ["tokens", "list", "--json"])
    row = next(r for r in json.loads(listed.stdout) if r["name"] == f"{fn_name}_ci")
    assert row["role"] == "read-only" and row["lastUsedAt"] is not None and secret not in listed.stdout
    assert run_cli.invoke(cli, ["tokens", "revoke", f"{fn_name}_ci"]).exit_code == 0
    eventually(lambda: secured.get("/v1/functions", headers=bearer(secret)).status_code, timeout_s=1.0,
               until=lambda status: status == 401, what="the token revoked by the CLI refused")


def test_a_revoke_reaches_every_gunicorn_worker_within_a_second(backend: Backend, new_backend: Any, launch: Any,
                                                               run_cli: CliRunner, fn_name: str,
                                                               eventually: Any) -> None:
    """`taskservice api` as production runs it (gunicorn, 2 workers, each with its own token cache, warmed by
    requests): after `taskservice tokens revoke`, no worker accepts the token a second later."""
    own = new_backend(backend.name)
    server = launch.api(own, workers=2, auth=True)
    try:
        store = TokenStore(make_engine(own.settings.resolved_database_url))
        _, secret = store.create(f"{fn_name}_live", "admin")
        for _ in range(20):  # both workers have looked the token up and cached it
            assert requests.get(f"{server.base}/v1/functions", headers=bearer(secret), timeout=5).status_code == 200
        store.revoke(f"{fn_name}_live")
        revoked_at = time.monotonic()
        answers: list[tuple[float, int]] = []  # (sent, seconds after the revoke; status)

        def refused_in_a_row() -> int:
            sent = time.monotonic() - revoked_at
            status = requests.get(f"{server.base}/v1/functions", headers=bearer(secret), timeout=5).status_code
            answers.append((sent, status))
            run = 0
            for _, seen in reversed(answers):
                if seen != 401:
                    break
                run += 1
            return run

        eventually(refused_in_a_row, until=lambda run: run >= 20, timeout_s=5.0,
                   what="20 requests in a row refusing the revoked token")
        late = [(sent, status) for sent, status in answers if sent > 1.0 and status != 401]
        assert not late, f"accepted more than a second after the revoke: {late}"
    finally:
        server.stop()


def test_tokens_cli_bad_input_is_refused_and_changes_nothing(run_cli: CliRunner, services: Services,
                                                             fn_name: str) -> None:
    before = [t.name for t in TokenStore(services.engine).list()]
    assert run_cli.invoke(cli, ["tokens", "create", "9 bad name"]).exit_code == 1
    assert run_cli.invoke(cli, ["tokens", "create", f"{fn_name}_r", "--role", "root"]).exit_code == 2
    assert run_cli.invoke(cli, ["tokens", "revoke", f"{fn_name}_missing"]).exit_code == 1
    assert run_cli.invoke(cli, ["tokens", "create", f"{fn_name}_dup"]).exit_code == 0
    duplicate = run_cli.invoke(cli, ["tokens", "create", f"{fn_name}_dup"])
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    assert run_cli.invoke(cli, ["tokens", "revoke", f"{fn_name}_dup"]).exit_code == 0
    again = run_cli.invoke(cli, ["tokens", "revoke", f"{fn_name}_dup"])
    assert again.exit_code == 1 and "already revoked" in again.output
    assert [t.name for t in TokenStore(services.engine).list()] == sorted(before + [f"{fn_name}_dup"])
