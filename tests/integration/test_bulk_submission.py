"""POST /v1/functions/{name}/invocations:batch: up to 1,000 invocations in one transaction and one publish batch.

Valid items are accepted with per-item statuses (202; 409 for a taken id; 400/413 for a bad id or payload); a
request that is malformed as a whole (bad JSON, a malformed item, too many items, an unknown function) is refused
and writes nothing. Runs on both backends.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from taskservice import create_app
from taskservice.ledger.models import INVOCATIONS
from taskservice.services import Services
from taskservice.submission import BatchItem
from tests.integration.test_api_input import error_of, ledger_counts

if TYPE_CHECKING:
    from tests.support import Backend, WorkerProcess


@pytest.fixture
def noop(app_client: FlaskClient, fn_name: str, deploy: Any) -> Iterator[str]:
    """A no-op function; whatever the test left waiting is stopped afterwards, so that the session's shared queue
    does not make later tests' workers wade through a thousand doorbells first."""
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    yield fn_name
    stopped = app_client.post("/v1/invocations/stop", json={"function": fn_name})
    assert stopped.status_code == 200, stopped.get_json()


def batch(client: FlaskClient, function: str, items: list[dict[str, Any]], **kwargs: Any) -> Any:
    return client.post(f"/v1/functions/{function}/invocations:batch", json={"items": items}, **kwargs)


def test_a_batch_of_1000_is_one_transaction_with_per_item_statuses(app_client: FlaskClient, services: Services,
                                                                   noop: str, submit: Any) -> None:
    taken = submit(app_client, noop, {"n": -1}, invocation_id="taken")
    items: list[dict[str, Any]] = [{"invocationId": f"b{i}", "payload": {"n": i}} for i in range(994)]
    items += [{"payload": {"generated": True}}, {"invocationId": "b7", "payload": "again"},
              {"invocationId": taken}, {"invocationId": "1-bad", "payload": 1},
              {"invocationId": "big", "payload": "x" * (128 * 1024)}, {"invocationId": "nulls"}]
    assert len(items) == 1000
    before = ledger_counts(services)
    answer = batch(app_client, noop, items)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    results = body["items"]
    assert [r["index"] for r in results] == list(range(1000))
    assert (body["accepted"], body["duplicates"], body["refused"]) == (996, 2, 2)
    assert {r["status"] for r in results[:994]} == {202} and results[994]["status"] == 202
    assert results[994]["invocationId"].startswith("inv_")
    assert results[995]["status"] == 409 and "item 7" in results[995]["error"]["message"]
    assert results[995]["requestId"] == results[7]["requestId"]  # the earlier item of the batch holds the id
    assert results[996]["status"] == 409 and results[996]["error"]["code"] == "InvocationAlreadyExist"
    assert results[996]["requestId"] == services.ledger.get_invocation(noop, taken).request_id
    assert results[997]["status"] == 400 and results[997]["error"]["code"] == "InvalidInvocationId"
    assert results[998]["status"] == 413 and results[998]["error"]["code"] == "PayloadTooLarge"
    assert results[999]["status"] == 202 and results[999]["invocationStatus"] == "Enqueued"
    assert ledger_counts(services) == (before[0], before[1] + 996, before[2] + 996)
    with services.engine.connect() as conn:
        rows = conn.execute(select(INVOCATIONS.c.created_at, func.count()).where(INVOCATIONS.c.function == noop)
                            .group_by(INVOCATIONS.c.created_at)).all()
    # One transaction: every row of the batch carries the same instant, apart from the one submitted before it.
    assert sorted(count for _, count in rows) == [1, 996]
    assert services.ledger.get_invocation(noop, "b7").payload == json.dumps({"n": 7}, separators=(",", ":"))
    assert services.ledger.get_invocation(noop, "nulls").payload == "null"


def test_accepted_items_run(app_client: FlaskClient, services: Services, noop: str,
                            start_worker: Callable[..., WorkerProcess], eventually: Any) -> None:
    start_worker()
    answer = batch(app_client, noop, [{"invocationId": f"r{i}", "payload": {"i": i}} for i in range(20)])
    assert answer.get_json()["accepted"] == 20

    def succeeded() -> int:
        with services.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(INVOCATIONS).where(
                INVOCATIONS.c.function == noop, INVOCATIONS.c.status == "Succeeded")).scalar_one())

    eventually(succeeded, until=lambda n: n == 20, what="all 20 batch invocations Succeeded")


MALFORMED = [
    # (what, body, status, code, words in the message)
    ("not an object", [1, 2], 400, "InvalidQuery", "JSON object"),
    ("no items", {}, 400, "InvalidQuery", "items"),
    ("empty list", {"items": []}, 400, "InvalidQuery", "items"),
    ("an item is not an object", {"items": [{"payload": 1}, 5]}, 400, "InvalidQuery", "items.1"),
    ("an unknown field in item 2", {"items": [{}, {}, {"invocationid": "x"}]}, 400, "InvalidQuery", "items.2"),
    ("a non-string id", {"items": [{"invocationId": 7}]}, 400, "InvalidQuery", "items.0.invocationId"),
    ("1,001 items", {"items": [{}] * 1001}, 413, "PayloadTooLarge", "1001 items"),
]


@pytest.mark.parametrize("what,body,status,code,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_batch_is_refused_whole_and_writes_nothing(app_client: FlaskClient, services: Services,
                                                               noop: str, what: str, body: Any, status: int,
                                                               code: str, words: str) -> None:
    before = ledger_counts(services)
    answer = app_client.post(f"/v1/functions/{noop}/invocations:batch", json=body)
    assert answer.status_code == status, answer.get_json()
    error = error_of(answer)
    assert error["code"] == code and words in error["message"], error
    assert ledger_counts(services) == before


def test_bad_json_an_unknown_function_and_a_body_over_the_limit_write_nothing(
        app_client: FlaskClient, services: Services, noop: str, backend: Backend) -> None:
    before = ledger_counts(services)
    bad = app_client.post(f"/v1/functions/{noop}/invocations:batch", data=b'{"items": [',
                          content_type="application/json")
    assert bad.status_code == 400 and error_of(bad)["code"] == "MalformedJSON"
    unknown = batch(app_client, "no_such_fn", [{}])
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "FunctionNotFound"
    small = create_app(backend.settings.merged(max_batch_bytes=1000, auth=False)).test_client()
    over = batch(small, noop, [{"payload": "x" * 600}, {"payload": "y" * 600}])
    assert over.status_code == 413 and error_of(over)["code"] == "PayloadTooLarge"
    assert ledger_counts(services) == before


def test_a_read_only_token_may_not_submit_a_batch(backend: Backend, services: Services, noop: str) -> None:
    secured = create_app(backend.settings.merged(auth=True)).test_client()
    _, reader = services.tokens.create(f"{noop}_reader", "read-only")
    _, admin = services.tokens.create(f"{noop}_admin", "admin")
    before = ledger_counts(services)
    assert batch(secured, noop, [{}]).status_code == 401
    refused = batch(secured, noop, [{}], headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403 and error_of(refused)["code"] == "Forbidden"
    assert ledger_counts(services) == before
    accepted = batch(secured, noop, [{}], headers={"Authorization": f"Bearer {admin}"})
    assert accepted.status_code == 200 and accepted.get_json()["accepted"] == 1


def test_concurrent_batches_with_the_same_ids_accept_each_id_once(services: Services, noop: str) -> None:
    ids = [f"c{i}" for i in range(200)]
    answers: list[list[int]] = []

    def submit_all() -> None:
        outcomes = services.submitter.submit_many(noop, [BatchItem({"i": i}, i) for i in ids])
        answers.append([o.status for o in outcomes])

    threads = [threading.Thread(target=submit_all) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 3
    for position in range(len(ids)):
        assert sorted(a[position] for a in answers) == [202, 409, 409], position
