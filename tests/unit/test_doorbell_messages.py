"""The dispatcher's doorbell template against Celery's own message builder: a worker must not be able to tell a
templated doorbell from one Celery would have made (it is Celery's worker that parses them)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.serialization import dumps, loads

from taskservice.config import Settings
from taskservice.dispatch import RUN_TASK, doorbell_messages, make_celery

CELERY = make_celery(Settings(data_dir=Path("/nonexistent-unused")))


def celery_message(task_id: str, pk: int, countdown: float | None = None) -> tuple[dict, dict, bytes]:
    headers, properties, body, _ = CELERY.amqp.create_task_message(task_id, RUN_TASK, (pk,), {}, countdown=countdown)
    _, _, encoded = dumps(body, serializer="json")
    return headers, dict(properties, delivery_mode=2), encoded.encode() if isinstance(encoded, str) else encoded


@given(st.lists(st.integers(min_value=1, max_value=2**63 - 1), min_size=1, max_size=20))
def test_each_doorbell_is_the_message_celery_would_make(pks: list[int]) -> None:
    ids = [f"id-{i}" for i in range(len(pks))]
    made = list(doorbell_messages(CELERY, pks, task_ids=ids))
    assert made == [celery_message(task_id, pk) for task_id, pk in zip(ids, pks, strict=True)]
    for (_, _, body), pk in zip(made, pks, strict=True):
        assert loads(body, "application/json", "utf-8") == [[pk], {}, {"callbacks": None, "errbacks": None,
                                                                         "chain": None, "chord": None}]


def test_every_doorbell_gets_its_own_task_id() -> None:
    made = list(doorbell_messages(CELERY, [7, 7, 8]))
    ids = [headers["id"] for headers, _, _ in made]
    assert len(set(ids)) == 3
    assert all(headers["root_id"] == properties["correlation_id"] == headers["id"] for headers, properties, _ in made)


def test_a_delayed_doorbell_carries_celerys_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(CELERY, "now", lambda: fixed)  # one clock for both builders, so their ETAs can be compared
    (made,) = doorbell_messages(CELERY, [5], countdown=30.0, task_ids=["t"])
    assert made == celery_message("t", 5, countdown=30.0)
    assert datetime.fromisoformat(made[0]["eta"]) == fixed + timedelta(seconds=30)


def test_not_a_whole_number_is_refused() -> None:
    with pytest.raises((TypeError, ValueError)):
        list(doorbell_messages(CELERY, ["1]; x"]))  # type: ignore[list-item]
