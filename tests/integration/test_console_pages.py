"""The console through Flask's test client, in open (dev) mode: pages render what the ledger holds, filters and
pagination work, bad query parameters get a clear 400 page and change nothing, actions need confirmation and CSRF."""
from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import insert, update

from taskservice import create_app
from taskservice.config import Settings
from taskservice.ledger.models import INVOCATIONS, LOGS
from taskservice.ledger.queries import InvocationFilter
from taskservice.ledger.stats import ConsoleStats
from taskservice.services import Services
from tests.support import unread_queue

if TYPE_CHECKING:
    from tests.support import Backend


@pytest.fixture(scope="module")
def parked(backend: Backend) -> Iterator[Settings]:
    """These pages are checked against invocations that never start; on the session's queue a shared worker left
    running by an earlier module would run them."""
    with unread_queue(backend, "console") as settings:
        yield settings


@pytest.fixture(scope="module")
def app_client(parked: Settings) -> FlaskClient:
    return create_app(parked).test_client()


@pytest.fixture
def services(parked: Settings) -> Iterator[Services]:
    s = Services.build(parked)
    yield s
    s.close()


def write_logs(services: Services, pk: int, attempt: int, lines: list[tuple[datetime, str, str]]) -> None:
    """Log rows as a worker leaves them, written directly: the ledger's own append_logs takes lines only from the
    attempt that holds the lease, and these invocations never start."""
    with services.engine.begin() as conn:
        conn.execute(insert(LOGS), [{"invocation_pk": pk, "attempt": attempt, "at": at, "level": level,
                                     "message": message} for at, level, message in lines])
        conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id == pk)
                     .values(log_lines=INVOCATIONS.c.log_lines + len(lines)))


def csrf(client: FlaskClient, url: str) -> str:
    page = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def ids_on(page: str) -> list[str]:
    return re.findall(r'<td class="mono"><a href="/invocations/[^/]+/([^"]+)">', page)


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'class="flash flash-\w+"[^>]*>(.*?)</p>', page)]


@pytest.fixture
def fn(app_client: FlaskClient, fn_name: str, deploy: Any) -> str:
    deploy(app_client, fn_name, "tests.handlers:counted", on_failure="queue:console-tests")
    return fn_name


def test_list_filters_by_function_status_and_prefix_with_counts(app_client: FlaskClient, fn: str, submit: Any) -> None:
    for iid in ("a-1", "a-2", "b-1"):
        submit(app_client, fn, {}, iid)
    assert app_client.post(f"/v1/functions/{fn}/invocations/a-1/stop").status_code == 202
    page = app_client.get(f"/?function={fn}").get_data(as_text=True)
    assert ids_on(page) == ["b-1", "a-2", "a-1"]  # newest first
    assert re.search(r'data-status="Enqueued">2<', page) and re.search(r'data-status="Stopped">1<', page)
    assert ids_on(app_client.get(f"/?function={fn}&status=Stopped").get_data(as_text=True)) == ["a-1"]
    both = app_client.get(f"/?function={fn}&status=Stopped&status=Enqueued&prefix=a-").get_data(as_text=True)
    assert ids_on(both) == ["a-2", "a-1"]
    assert 'value="Stopped" checked' in both and 'value="a-"' in both  # the filter stays in the form
    assert ids_on(app_client.get(f"/?function={fn}&window=15m").get_data(as_text=True)) == ["b-1", "a-2", "a-1"]
    past = app_client.get(f"/?function={fn}&since=2020-01-01T00:00&until=2020-02-01T00:00").get_data(as_text=True)
    assert ids_on(past) == [] and "No invocation matches these filters." in past


def test_older_and_newer_pages_walk_the_list_without_gaps(app_client: FlaskClient, fn: str, submit: Any) -> None:
    for n in range(7):
        submit(app_client, fn, {}, f"p-{n}")
    seen, url, pages = [], f"/?function={fn}&limit=3", []
    while url:
        page = app_client.get(url).get_data(as_text=True)
        pages.append(page)
        seen += ids_on(page)
        older = re.search(r'rel="next" href="([^"]+)"', page)
        url = html.unescape(older.group(1)) if older else ""
    assert seen == [f"p-{n}" for n in range(6, -1, -1)]
    newer = re.search(r'rel="prev" href="([^"]+)"', pages[1])
    assert newer is None or ids_on(app_client.get(html.unescape(newer.group(1))).get_data(as_text=True))[0] == "p-6"
    back = re.search(r'rel="prev" href="([^"]+)"', pages[2])
    assert back and ids_on(app_client.get(html.unescape(back.group(1))).get_data(as_text=True)) == ["p-3", "p-2", "p-1"]


@pytest.mark.parametrize("query, message", [
    ("status=Nope", "unknown status 'Nope'"),
    ("function=bad%20name", "function name"),
    ("older=zzz", "invalid cursor"),
    ("since=yesterday", "since must be ISO 8601"),
    ("window=3y", "unknown time window"),
    ("limit=0", "limit must be between"),
    ("older=djE6NA&newer=djE6NA", "either older or newer"),
    ("since=2030-01-01T00:00&until=2020-01-01T00:00", "since must be before until"),
])
def test_bad_query_parameters_get_a_clear_400_page(app_client: FlaskClient, services: Services, fn: str,
                                                   query: str, message: str, submit: Any) -> None:
    submit(app_client, fn, {}, "untouched")
    answer = app_client.get(f"/?{query}")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert message in html.unescape(answer.get_data(as_text=True))
    assert services.ledger.get_invocation(fn, "untouched").status.value == "Enqueued"


def test_unknown_invocation_is_a_404_page(app_client: FlaskClient, fn: str) -> None:
    answer = app_client.get(f"/invocations/{fn}/nope")
    assert answer.status_code == 404 and "has no invocation 'nope'" in html.unescape(answer.get_data(as_text=True))


def test_invocation_page_shows_payload_timeline_logs_children_and_destinations(
        app_client: FlaskClient, services: Services, fn: str, submit: Any) -> None:
    submit(app_client, fn, {"big": ["x" * 50] * 100, "note": "<script>alert(1)</script>"}, "parent")
    parent = services.ledger.get_invocation(fn, "parent")
    services.submitter.submit(fn, {"n": 1}, invocation_id="parent-child", parent_pk=parent.pk)
    now = datetime.now(timezone.utc)
    write_logs(services, parent.pk, 1, [(now, "INFO", "first line"), (now, "ERROR", "second <b>line</b>")])
    assert app_client.post(f"/v1/functions/{fn}/invocations/parent/stop").status_code == 202
    page = app_client.get(f"/invocations/{fn}/parent").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert re.search(r'<details class="json"><summary>Payload <span class="muted">\([\d.,]+ (bytes|KiB), folded', page)
    assert "first line" in page and "second &lt;b&gt;line&lt;/b&gt;" in page
    assert "parent-child" in page and "Children" in page
    assert "queue:console-tests" in page and "pending" in page  # the failure destination's delivery
    assert "stopped before it started" in page and "Before the first attempt" in page
    assert ">Retry</button>" in page and ">Stop</button>" not in page
    child = app_client.get(f"/invocations/{fn}/parent-child").get_data(as_text=True)
    assert f"{fn} / parent</a>" in child  # the child names its parent


def test_live_endpoint_returns_status_progress_and_new_log_lines(app_client: FlaskClient, services: Services,
                                                                fn: str, submit: Any) -> None:
    submit(app_client, fn, {}, "live")
    inv = services.ledger.get_invocation(fn, "live")
    now = datetime.now(timezone.utc)
    write_logs(services, inv.pk, 1, [(now, "INFO", "one"), (now, "INFO", "two")])
    first = app_client.get(f"/invocations/{fn}/live/live").get_json()
    assert first["status"] == "Enqueued" and not first["terminal"]
    assert [line["message"] for line in first["logs"]] == ["one", "two"]
    write_logs(services, inv.pk, 1, [(now, "INFO", "three")])
    later = app_client.get(f"/invocations/{fn}/live/live?after={first['lastLogId']}").get_json()
    assert [line["message"] for line in later["logs"]] == ["three"]
    assert app_client.get(f"/invocations/{fn}/live/live?after=-1").status_code == 400


def test_stop_and_retry_ask_for_confirmation_then_act(app_client: FlaskClient, services: Services, fn: str,
                                                      submit: Any) -> None:
    submit(app_client, fn, {}, "act")
    token = csrf(app_client, f"/invocations/{fn}/act")
    asked = app_client.post(f"/invocations/{fn}/act/stop", data={"csrf_token": token})
    assert asked.status_code == 200 and "Yes, stop" in asked.get_data(as_text=True)
    assert services.ledger.get_invocation(fn, "act").status.value == "Enqueued"  # not yet
    done = app_client.post(f"/invocations/{fn}/act/stop", data={"csrf_token": token, "confirmed": "1"})
    assert done.status_code == 303 and services.ledger.get_invocation(fn, "act").status.value == "Stopped"
    assert flashes(app_client.get(done.headers["Location"]).get_data(as_text=True)) == ["Stopped."]
    again = app_client.post(f"/invocations/{fn}/act/stop", data={"csrf_token": token, "confirmed": "1"},
                            follow_redirects=True)
    assert "has already ended (Stopped)" in flashes(again.get_data(as_text=True))[0]
    retried = app_client.post(f"/invocations/{fn}/act/retry", data={"csrf_token": token, "confirmed": "1"},
                              follow_redirects=True)
    assert flashes(retried.get_data(as_text=True)) == ["Retried: a new attempt is on its way."]
    assert services.ledger.get_invocation(fn, "act").status.value == "Enqueued"
    refused = app_client.post(f"/invocations/{fn}/act/retry", data={"csrf_token": token, "confirmed": "1"},
                              follow_redirects=True)
    assert "Only an ended invocation can be retried" in flashes(refused.get_data(as_text=True))[0]


def test_posts_without_a_valid_csrf_token_are_refused(app_client: FlaskClient, services: Services, fn: str,
                                                      submit: Any) -> None:
    submit(app_client, fn, {}, "forged")
    csrf(app_client, f"/invocations/{fn}/forged")  # the session has a token; the forged form does not carry it
    for data in ({"confirmed": "1"}, {"confirmed": "1", "csrf_token": "forged"}):
        answer = app_client.post(f"/invocations/{fn}/forged/stop", data=data)
        assert answer.status_code == 400 and "Request refused" in answer.get_data(as_text=True)
    assert services.ledger.get_invocation(fn, "forged").status.value == "Enqueued"
    assert app_client.post(f"/v1/functions/{fn}/invocations/forged/stop").status_code == 202  # the API: no CSRF


def test_dead_letters_list_and_replay_with_an_edited_payload(app_client: FlaskClient, services: Services,
                                                             fn: str, submit: Any) -> None:
    submit(app_client, fn, {"value": 1}, "dl")
    app_client.post(f"/v1/functions/{fn}/invocations/dl/stop")
    listing = app_client.get(f"/dead-letters?function={fn}").get_data(as_text=True)
    dead_id = int(re.search(r'href="/dead-letters/(\d+)"', listing).group(1))
    assert "Stopped" in listing and ">Replay</button>" in listing
    assert app_client.get("/dead-letters?condition=Nope").status_code == 400
    token = csrf(app_client, f"/dead-letters/{dead_id}")
    bad = app_client.post(f"/dead-letters/{dead_id}/replay", data={"csrf_token": token, "confirmed": "1",
                                                                   "payload": "{not json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.get_data(as_text=True)
    assert ids_on(app_client.get(f"/?function={fn}").get_data(as_text=True)) == ["dl"]  # nothing replayed
    edited = app_client.post(f"/dead-letters/{dead_id}/replay", data={"csrf_token": token, "confirmed": "1",
                                                                      "payload": '{"value": 2}'})
    assert edited.status_code == 303
    replayed = services.ledger.list_invocations(InvocationFilter(function=fn), limit=1).items[0]
    assert replayed.replay_of is not None and json.loads(replayed.payload) == {"value": 2}
    assert edited.headers["Location"].endswith(f"/invocations/{fn}/{replayed.invocation_id}")
    assert "with the edited payload" in flashes(app_client.get(edited.headers["Location"]).get_data(as_text=True))[0]
    twice = app_client.post(f"/dead-letters/{dead_id}/replay", data={"csrf_token": token, "confirmed": "1"},
                            follow_redirects=True)
    assert "Already replayed" in flashes(twice.get_data(as_text=True))[0]
    forced = app_client.post(f"/dead-letters/{dead_id}/replay", data={"csrf_token": token, "confirmed": "1",
                                                                      "force": "1"})
    assert forced.status_code == 303 and len(ids_on(app_client.get(f"/?function={fn}").get_data(as_text=True))) == 3


def test_functions_page_and_dashboard_render_health_and_charts(app_client: FlaskClient, services: Services,
                                                               fn: str, submit: Any) -> None:
    submit(app_client, fn, {}, "d-1")
    app_client.post(f"/v1/functions/{fn}/invocations/d-1/stop")
    functions = app_client.get("/functions").get_data(as_text=True)
    assert fn in functions and "tests.handlers:counted" in functions and "0.0 %" in functions
    assert app_client.get("/functions?window=2y").status_code == 400
    dashboard = app_client.get("/dashboard").get_data(as_text=True)
    assert 'id="per-minute"' in dashboard and 'class="st-fill-Stopped"' in dashboard
    assert "open dev mode" in dashboard  # dev runs open, and says so


def test_function_health_figures_are_the_same_on_both_backends(services: Services, fn: str) -> None:
    """Postgres computes them in SQL, SQLite in Python: the same nearest-rank percentiles either way."""
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    for n, (status, seconds) in enumerate([("Succeeded", 1), ("Succeeded", 2), ("Failed", 10), ("Succeeded", 3),
                                           ("Stopped", 50), ("Enqueued", None)]):
        inv = services.ledger.create_invocation(fn, f"h{n}", f"00000000-0000-0000-0000-{n:012d}", "{}")
        if seconds is not None:
            with services.engine.begin() as conn:  # test setup: a finished history without running handlers
                conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id == inv.pk).values(
                    status=status, started_at=start, finished_at=start + timedelta(seconds=seconds)))
    health = ConsoleStats(services.engine).function_health([fn])[fn]
    assert (health.ended, health.succeeded) == (5, 3)
    assert (health.p50_s, health.p95_s) == (2.0, 10.0)  # Stopped is not a duration of work; Enqueued not ended
