"""The OpenAPI document is the contract: schemathesis fuzzes a live `taskservice api` (gunicorn, auth on, a real admin
token) against /openapi.json with every check it has, and the run must find nothing.

Every check means: each status code, header and field of every answer is documented; each request the schema allows
is accepted and each one it forbids is refused; undeclared methods get 405 with `Allow`; requests without the token
get 401. The run is deterministic (fixed seed; derandomized generation, which also means no example database) and
bounded, so a failure is a real disagreement between the document and the server, reproducible with the curl line it
prints.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from taskservice.api.schemas import CURSOR
from taskservice.ledger.queries import decode_cursor, encode_cursor
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend, Launcher

# Per API operation; with the coverage and stateful phases that is about 1,800 requests on the embedded backend and
# 1,300 on Postgres, some 20 s each. TASKSERVICE_TEST_CONTRACT_SEED / _EXAMPLES run a different or deeper fuzz.
MAX_EXAMPLES = {"embedded": 30, "postgres": 8}
SEED = os.environ.get("TASKSERVICE_TEST_CONTRACT_SEED", "20261201")
EXAMPLES = os.environ.get("TASKSERVICE_TEST_CONTRACT_EXAMPLES")


@dataclass
class SecuredApi:
    base: str
    services: Services  # on the API's ledger


@pytest.fixture
def secured_api(backend: Backend, new_backend: Callable[..., Backend], launch: Launcher) -> Iterator[SecuredApi]:
    """`taskservice api` as production runs it, with auth on (the shared fixtures run it open, as dev does), on a
    ledger of its own of `backend`'s kind: the stateful phase follows what GET answers, so the fuzz is reproducible
    only from the same starting state, whatever other tests left in the session's shared ledger."""
    own = new_backend(backend.name)
    server = launch.api(own, workers=2, auth=True)
    services = Services.build(own.settings)
    try:
        yield SecuredApi(server.base, services)
    finally:
        server.stop()
        services.close()


@pytest.mark.slow
def test_the_api_keeps_its_openapi_contract(secured_api: SecuredApi, backend: Backend, tmp_path: Path,
                                            fn_name: str) -> None:
    _, token = secured_api.services.tokens.create(f"{fn_name}_contract", "admin")
    assert requests.get(f"{secured_api.base}/v1/functions", timeout=5).status_code == 401  # auth really is on
    # Three operations check rules no JSON Schema can state — a cron expression or time zone that croniter refuses, an
    # object key that is unsafe once URL-decoded, a flow definition whose gotos loop forever or name a missing step —
    # so a body the schema allows may still get 422 there, or 413 past the body limit (nothing is written).
    # Everything else about them stays under every check.
    accepted = "[200, 201, 202, 204, 401, 403, 404, 409, 413, 422]"
    (tmp_path / "schemathesis.toml").write_text(
        "".join(f'[[operations]]\ninclude-path = "{path}"\ninclude-method = "{method}"\n'
                f'checks.positive_data_acceptance.expected-statuses = {accepted}\n\n'
                for method, path in (("PUT", "/v1/triggers/{name}"), ("POST", "/v1/storage-events"),
                                     ("PUT", "/v1/flows/{name}")))
        # A batch over its 1,000 items breaks the schema's maxItems and is refused as too large (413), which the
        # default list of rejections leaves out; nothing is written either way.
        + '[[operations]]\ninclude-path = "/v1/functions/{name}/invocations:batch"\ninclude-method = "POST"\n'
          'checks.negative_data_rejection.expected-statuses = [400, 401, 403, 404, 409, 413, 415, 422]\n')
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{secured_api.base}/openapi.json",
         "--header", f"Authorization: Bearer {token}", "--checks", "all",
         "--max-examples", EXAMPLES or str(MAX_EXAMPLES[backend.name]), "--seed", SEED, "--generation-deterministic",
         "--workers", "1", "--request-timeout", "10", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - started
    tail = run.stdout[-12000:] + run.stderr[-3000:]
    assert run.returncode == 0, f"schemathesis found disagreements between /openapi.json and the server:\n{tail}"
    assert " passed" in run.stdout and "generated" in run.stdout, tail
    print(f"schemathesis on {backend.name}: {elapsed:.1f}s\n" + run.stdout[-1500:])


def test_405_answers_say_which_methods_the_resource_has(app_client: FlaskClient) -> None:
    answer = app_client.delete("/v1/functions")
    assert answer.status_code == 405
    assert answer.get_json()["error"]["code"] == "MethodNotAllowed"
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_the_documented_cursor_is_exactly_the_ledgers_cursor() -> None:
    """schemas.CURSOR spells out encode_cursor's output by hand: every cursor matches, every match decodes."""
    for pk in [*range(0, 1200), *(random.Random(7).randrange(10**18) for _ in range(3000))]:
        assert CURSOR.fullmatch(encode_cursor(pk)), pk

    @settings(max_examples=300, derandomize=True, database=None)
    @given(st.from_regex(CURSOR, fullmatch=True))
    def decodes(cursor: str) -> None:
        assert 0 <= decode_cursor(cursor) < 10**18

    decodes()
