"""The console's flow pages through Flask's test client, on both backends, with a real engine and worker: the flows
list, a flow's page, the executions list (filters, pagination, clear 400s), an execution's page (the step graph as
SVG coloured by status, task boxes linking to invocations, foreach counters and iteration list, history), its live
endpoint, and Stop and Redrive with confirmation, CSRF and the read-only role."""
from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from taskservice import create_app
from taskservice.services import Services
from tests.integration.test_console_auth import csrf_of, sign_in, token
from tests.integration.test_console_pages import csrf, flashes
from tests.support import Launcher

if TYPE_CHECKING:
    from tests.support import Backend



@pytest.fixture(scope="module", autouse=True)
def flow_processes(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A worker and an engine for this module only: the session's shared worker would keep running into the
    console tests that follow, whose invocations must stay Enqueued."""
    launcher = Launcher(tmp_path_factory.mktemp("console-flows"))
    launcher.worker(backend, 2)
    launcher.engine(backend)
    yield
    launcher.stop_all()


def waiting_flow(seconds: int = 3600) -> dict[str, Any]:
    """An execution of this flow stays Running (in a durable wait) until it is stopped."""
    return {"version": "v1", "type": "flow", "steps": [
        {"name": "hold", "type": "wait", "duration": seconds}, {"name": "after", "type": "pass"}]}


@pytest.fixture
def flow_name() -> str:
    return f"cflow_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def functions(app_client: FlaskClient, deploy: Any) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = {"add": f"add_{suffix}", "fail_item": f"fail_item_{suffix}"}
    deploy(app_client, names["add"], "tests.flow_handlers:add", max_retries=0, timeout_s=60)
    deploy(app_client, names["fail_item"], "tests.flow_handlers:fail_item", max_retries=0, timeout_s=60)
    return names


def boxes(page: str) -> dict[str, str]:
    """Step path → status of every box of the step graph on a page."""
    return dict(re.findall(r'<g class="step[^"]*" data-path="([^"]+)" data-status="([^"]+)"', page))


def names_on(page: str) -> list[str]:
    return re.findall(r'<td class="mono"><a href="/flows/[^/]+/executions/([^"]+)">', page)


def test_flows_list_and_a_flows_page(app_client: FlaskClient, deploy_flow: Any, start_execution: Any,
                                     wait_for_execution: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, waiting_flow(), description="holds <b>on</b>", on_failure="queue:flows-dlq")
    name = start_execution(app_client, flow_name, {}, "held")
    listing = app_client.get("/flows").get_data(as_text=True)
    assert re.search(r'href="/flows"[^>]*>Flows</a>', listing)  # in the navigation
    assert f'href="/flows/{flow_name}"' in listing and "holds &lt;b&gt;on&lt;/b&gt;" in listing
    assert f'href="/executions?flow={flow_name}&amp;status=Running"' in listing
    assert re.search(rf'data-flow="{flow_name}".*?data-status="Running">1<', listing, re.S)
    page = app_client.get(f"/flows/{flow_name}").get_data(as_text=True)
    assert boxes(page) == {"hold": "NotRun", "after": "NotRun"}  # the definition, nothing coloured
    assert "<title>hold (wait): not run</title>" in page and "queue:flows-dlq" in page
    assert f'/flows/{flow_name}/executions/{name}"' in page  # its recent executions
    assert app_client.post(f"/v1/flows/{flow_name}/executions/{name}/stop").status_code == 202
    wait_for_execution(app_client, flow_name, name, {"Stopped"})
    missing = app_client.get("/flows/no_such_flow")
    assert missing.status_code == 404 and "flow 'no_such_flow' does not exist" in html.unescape(
        missing.get_data(as_text=True))


def test_execution_page_draws_the_graph_coloured_by_status(app_client: FlaskClient, services: Services,
                                                            deploy_flow: Any, start_execution: Any,
                                                            wait_for_execution: Any, functions: dict[str, str],
                                                            flow_name: str, tmp_path: Path) -> None:
    bad, calls = tmp_path / "bad", tmp_path / "calls"
    bad.write_text("2\n")
    definition = {"version": "v1", "type": "flow", "steps": [
        {"name": "sum", "type": "task", "resourceArn": f"function:{functions['add']}",
         "outputMappings": [{"target": "total", "source": "$local.sum"}]},
        {"name": "route", "type": "choice", "choices": [{"condition": "$.total > 100", "goto": "never"}],
         "default": {"goto": "both"}},
        {"name": "never", "type": "fail", "error": "TooBig"},
        {"name": "both", "type": "parallel", "branches": [
            {"steps": [{"name": "left", "type": "pass"}]}, {"steps": [{"name": "right", "type": "pass"}]}]},
        {"name": "each", "type": "foreach", "iterationMapping": {"collection": "$.items", "item": "item"},
         "maxConcurrency": 3, "steps": [
             {"name": "work", "type": "task", "resourceArn": f"function:{functions['fail_item']}",
              "inputMappings": [{"target": "item", "source": "$input.item"},
                                {"target": "bad", "source": "$input.bad"},
                                {"target": "calls", "source": "$input.calls"}]}]},
        {"name": "done", "type": "succeed"}]}
    deploy_flow(app_client, flow_name, definition)
    name = start_execution(app_client, flow_name, {"a": 1, "b": 2, "items": [1, 2, 3], "bad": str(bad),
                                                   "calls": str(calls)}, "drawn")
    wait_for_execution(app_client, flow_name, name, {"Failed"})
    page = app_client.get(f"/flows/{flow_name}/executions/{name}").get_data(as_text=True)
    assert boxes(page) == {"sum": "Succeeded", "route": "Succeeded", "never": "NotRun", "both": "Succeeded",
                           "both/0/left": "Succeeded", "both/1/right": "Succeeded", "each": "Failed",
                           "each/*/work": "Failed", "done": "NotRun"}
    assert ">Failed</span>" in page and 'class="step s-Succeeded"' in page  # badge text and box colour
    sum_run = next(s for s in services.flows.steps(services.flows.get_execution(flow_name, name).pk)
                   if s.path == "sum")
    assert f'<a href="/invocations/{functions["add"]}/{sum_run.invocation_id}">' in page  # the task links
    step_page = app_client.get(f"/invocations/{functions['add']}/{sum_run.invocation_id}").get_data(as_text=True)
    assert f'href="/flows/{flow_name}/executions/{name}">{flow_name} / {name}</a>' in step_page  # and back
    assert "2/3 done, 1 failed" in page  # the foreach counter, in the graph and over its iteration list
    assert 'class="edge edge-choice"' in page and 'class="edge edge-default"' in page
    assert '<a href="#iterations-each">' in page  # a step inside the foreach links to its iteration list
    iterations = page[page.index('id="iterations-each"'):]
    for k in range(3):
        assert f'data-scope="each/{k}"' in iterations
    assert re.search(rf'href="/invocations/{functions["fail_item"]}/[^"]+" title="invocation [^"]+">work</a>',
                     iterations)
    history = page[page.index('id="history"'):]
    assert history.index("ExecutionStarted") < history.index("TaskSubmitted") < history.index("ExecutionFailed")
    assert ">Redrive</button>" in page and ">Stop</button>" not in page
    assert "<title>" in page and "each (foreach): Failed" in page

    token_ = csrf(app_client, f"/flows/{flow_name}/executions/{name}")
    bad.write_text("")  # the failing item passes now: a redrive re-runs only it
    asked = app_client.post(f"/flows/{flow_name}/executions/{name}/redrive", data={"csrf_token": token_})
    assert asked.status_code == 200 and "Yes, redrive" in asked.get_data(as_text=True)
    assert services.flows.get_execution(flow_name, name).status == "Failed"  # not yet
    done = app_client.post(f"/flows/{flow_name}/executions/{name}/redrive",
                           data={"csrf_token": token_, "confirmed": "1"}, follow_redirects=True)
    assert flashes(done.get_data(as_text=True)) == ["Redriven: the steps that did not succeed run again."]
    wait_for_execution(app_client, flow_name, name, {"Succeeded"})
    after = app_client.get(f"/flows/{flow_name}/executions/{name}").get_data(as_text=True)
    assert boxes(after)["each"] == "Succeeded" and boxes(after)["done"] == "Succeeded"
    assert "3/3 done" in after and ">Redrive</button>" not in after and "ExecutionRedriven" in after
    assert sorted(calls.read_text().split()) == ["1", "2", "2", "3"]  # only the failed item ran again
    again = app_client.post(f"/flows/{flow_name}/executions/{name}/redrive",
                            data={"csrf_token": token_, "confirmed": "1"}, follow_redirects=True)
    assert flashes(again.get_data(as_text=True)) == [
        "Only a Failed, Stopped or TimedOut execution can be redriven; this one is Succeeded."]


def test_executions_list_filters_and_pages(app_client: FlaskClient, deploy_flow: Any, start_execution: Any,
                                           wait_for_execution: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, waiting_flow())
    other = f"{flow_name}_b"
    deploy_flow(app_client, other, waiting_flow())
    for name in ("up-1", "up-2", "down-1"):
        start_execution(app_client, flow_name, {}, name)
    start_execution(app_client, other, {}, "up-9")
    app_client.post(f"/v1/flows/{flow_name}/executions/up-1/stop")
    wait_for_execution(app_client, flow_name, "up-1", {"Stopped"})
    page = app_client.get(f"/executions?flow={flow_name}").get_data(as_text=True)
    assert names_on(page) == ["down-1", "up-2", "up-1"]  # newest first
    assert re.search(r'href="/executions"[^>]*>Executions</a>', page)
    assert names_on(app_client.get(f"/executions?flow={flow_name}&status=Stopped").get_data(as_text=True)) == ["up-1"]
    both = app_client.get(f"/executions?flow={flow_name}&status=Running&status=Stopped&prefix=up-")
    assert names_on(both.get_data(as_text=True)) == ["up-2", "up-1"]
    assert 'value="Stopped" checked' in both.get_data(as_text=True)
    assert "up-9" in app_client.get("/executions?prefix=up-").get_data(as_text=True)
    assert names_on(app_client.get(f"/executions?flow={flow_name}&window=15m").get_data(as_text=True)) == [
        "down-1", "up-2", "up-1"]
    past = app_client.get(f"/executions?flow={flow_name}&since=2020-01-01T00:00&until=2020-02-01T00:00")
    assert names_on(past.get_data(as_text=True)) == [] and "No execution matches these filters." in past.get_data(
        as_text=True)
    seen, url = [], f"/executions?flow={flow_name}&limit=2"
    while url:
        listing = app_client.get(url).get_data(as_text=True)
        seen += names_on(listing)
        older = re.search(r'rel="next" href="([^"]+)"', listing)
        url = html.unescape(older.group(1)) if older else ""
    assert seen == ["down-1", "up-2", "up-1"]
    for name in ("up-2", "down-1"):
        app_client.post(f"/v1/flows/{flow_name}/executions/{name}/stop")
    app_client.post(f"/v1/flows/{other}/executions/up-9/stop")


@pytest.mark.parametrize("query, message", [
    ("status=Bogus", "unknown execution status 'Bogus'"),
    ("since=yesterday", "since must be ISO 8601 or epoch milliseconds"),
    ("window=3d", "unknown time window '3d'"),
    ("window=1h&since=2024-01-01T00:00", "either a time window or since"),
    ("since=2024-02-01T00:00&until=2024-01-01T00:00", "since must be before until"),
    ("limit=0", "limit must be between 1 and 500"),
    ("older=garbage", "invalid cursor"),
    ("newer=abc", "use older, not newer"),
    ("flow=no%20spaces", "function name"),
])
def test_bad_query_parameters_get_a_clear_400_page(app_client: FlaskClient, query: str, message: str) -> None:
    answer = app_client.get(f"/executions?{query}")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert message in html.unescape(answer.get_data(as_text=True))


def test_unknown_execution_is_a_404_page(app_client: FlaskClient, deploy_flow: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, waiting_flow())
    for url in (f"/flows/{flow_name}/executions/nope", "/flows/no_flow_here/executions/nope"):
        answer = app_client.get(url)
        assert answer.status_code == 404 and "execution 'nope'" in html.unescape(answer.get_data(as_text=True))
    live = app_client.get(f"/flows/{flow_name}/executions/nope/live")
    assert live.status_code == 404 and live.get_json()["error"]["code"] == "ExecutionNotFound"


def test_live_endpoint_sends_the_changing_parts_and_new_events(app_client: FlaskClient, deploy_flow: Any,
                                                               start_execution: Any, wait_for_execution: Any,
                                                               eventually: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, waiting_flow())
    name = start_execution(app_client, flow_name, {"x": 1}, "watched")
    url = f"/flows/{flow_name}/executions/{name}/live"
    first = eventually(lambda: app_client.get(url).get_json(), until=lambda d: "WaitStarted" in "".join(d["events"]),
                       what="the wait to start")
    assert first["status"] == "Running" and not first["terminal"]
    assert boxes(first["parts"]["graph"])["hold"] == "Waiting"
    assert ">Stop</button>" in first["parts"]["execution-actions"]
    assert "ExecutionStarted" in first["events"][0]
    app_client.post(f"/v1/flows/{flow_name}/executions/{name}/stop")
    wait_for_execution(app_client, flow_name, name, {"Stopped"})
    later = app_client.get(f"{url}?after={first['lastEventId']}").get_json()
    assert later["terminal"] and later["status"] == "Stopped"
    assert boxes(later["parts"]["graph"])["hold"] == "Stopped"
    assert "ExecutionStarted" not in "".join(later["events"]) and "ExecutionStopped" in "".join(later["events"])
    assert ">Redrive</button>" in later["parts"]["execution-actions"]
    bad = app_client.get(f"{url}?after=-1")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "InvalidQuery"


def test_stop_asks_for_confirmation_needs_csrf_and_says_when_it_has_ended(
        app_client: FlaskClient, services: Services, deploy_flow: Any, start_execution: Any,
        wait_for_execution: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, waiting_flow())
    name = start_execution(app_client, flow_name, {}, "to-stop")
    page_url = f"/flows/{flow_name}/executions/{name}"
    token_ = csrf(app_client, page_url)
    for data in ({"confirmed": "1"}, {"confirmed": "1", "csrf_token": "forged"}):
        refused = app_client.post(f"{page_url}/stop", data=data)
        assert refused.status_code == 400 and "Request refused" in refused.get_data(as_text=True)
    asked = app_client.post(f"{page_url}/stop", data={"csrf_token": token_})
    assert asked.status_code == 200 and "Yes, stop" in asked.get_data(as_text=True)
    assert services.flows.get_execution(flow_name, name).status == "Running"  # nothing yet
    done = app_client.post(f"{page_url}/stop", data={"csrf_token": token_, "confirmed": "1"})
    assert done.status_code == 303 and done.headers["Location"] == page_url
    assert flashes(app_client.get(page_url).get_data(as_text=True)) == [
        "Stop requested: running steps are being stopped, then the execution ends Stopped."]
    wait_for_execution(app_client, flow_name, name, {"Stopped"})
    again = app_client.post(f"{page_url}/stop", data={"csrf_token": token_, "confirmed": "1"}, follow_redirects=True)
    assert flashes(again.get_data(as_text=True)) == [
        "This execution has already ended (Stopped); there is nothing to stop."]
    assert app_client.post(f"/v1/flows/{flow_name}/executions/{name}/stop").status_code == 409  # the API agrees


@pytest.fixture(scope="module")
def secure_app(backend: Backend) -> Iterator[Flask]:
    app = create_app(backend.settings.merged(auth=True))
    yield app
    app.extensions["taskservice"].close()


def test_read_only_sees_no_stop_or_redrive_and_its_posts_are_refused(
        secure_app: Flask, app_client: FlaskClient, services: Services, deploy_flow: Any, start_execution: Any,
        wait_for_execution: Any, flow_name: str) -> None:
    deploy_flow(app_client, flow_name, waiting_flow())
    name = start_execution(app_client, flow_name, {}, "guarded")
    client = sign_in(secure_app.test_client(), token(services, "read-only")[1])
    page_url = f"/flows/{flow_name}/executions/{name}"
    page = client.get(page_url).get_data(as_text=True)
    assert "read-only" in page and ">Stop</button>" not in page and boxes(page)
    forged = client.post(f"{page_url}/stop", data={"csrf_token": csrf_of(page), "confirmed": "1"})
    assert forged.status_code == 403 and "read-only" in html.unescape(forged.get_data(as_text=True))
    assert services.flows.get_execution(flow_name, name).status == "Running"
    app_client.post(f"/v1/flows/{flow_name}/executions/{name}/stop")
    wait_for_execution(app_client, flow_name, name, {"Stopped"})
    assert ">Redrive</button>" not in client.get(page_url).get_data(as_text=True)
    assert client.post(f"{page_url}/redrive", data={"csrf_token": csrf_of(page),
                                                    "confirmed": "1"}).status_code == 403
    assert services.flows.get_execution(flow_name, name).status == "Stopped"
    anonymous = secure_app.test_client()
    assert anonymous.get(page_url).status_code == 302
    assert anonymous.get(f"{page_url}/live").status_code == 401  # a live view is told, not redirected
