"""`taskservice flows …` as a person uses it: the CLI in subprocesses against a live `taskservice api`, with a real
worker and engine, on both backends. Deploy from a YAML file, start and wait, describe, history, stop, redrive, and
bad input refused with nothing written."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

import taskservice
from tests.support import ApiProcess

pytestmark = pytest.mark.usefixtures("shared_worker", "shared_engine")

Cli = Callable[..., Any]

SPLIT_MERGE = """
version: v1
type: flow
timeoutSeconds: 600
steps:
  - name: split
    type: pass
    inputMappings:
      - target: items
        source: $input.numbers
  - name: each
    type: foreach
    maxConcurrency: 2
    iterationMapping:
      collection: $.items
      item: item
    steps:
      - name: double
        type: task
        resourceArn: function:{double}
        inputMappings:
          - target: item
            source: $input.item
        retry:
          - errors: [FnF.ALL]
            intervalSeconds: 0.2
            maxAttempts: 2
  - name: merge
    type: pass
    inputMappings:
      - target: count
        source: $input.numbers
    outputMappings:
      - target: merged
        source: $local.count
"""


@pytest.fixture
def names(app_client: FlaskClient, deploy: Any) -> dict[str, str]:
    """A fresh flow name and fresh step functions for this test."""
    suffix = uuid.uuid4().hex[:8]
    out = {"flow": f"cli_{suffix}"}
    for short, handler in {"double": "tests.flow_handlers:double", "hang": "tests.handlers:spawn_and_hang",
                           "fail_item": "tests.flow_handlers:fail_item"}.items():
        out[short] = f"{short}_{suffix}"
        deploy(app_client, out[short], handler, max_retries=0, timeout_s=120)
    return out


def _flow_names(run_cli: Cli) -> list[str]:
    listed = run_cli("flows", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [f["name"] for f in json.loads(listed.stdout)]


def test_deploy_start_wait_describe_history_and_list(run_cli: Cli, names: dict[str, str], tmp_path: Path,
                                                      app_client: FlaskClient) -> None:
    flow = names["flow"]
    path = tmp_path / "flow.yaml"
    path.write_text(SPLIT_MERGE.format(double=names["double"]))
    deployed = run_cli("flows", "deploy", flow, "-f", str(path), "--description", "split, double, merge")
    assert deployed.returncode == 0, deployed.stderr
    assert f"flow {flow}: 3 top-level step(s)" in deployed.stdout
    assert flow in run_cli("flows", "list").stdout
    shown = json.loads(run_cli("flows", "show", flow, "--json").stdout)
    assert shown["source"] == path.read_text() and shown["description"] == "split, double, merge"

    waited = run_cli("flows", "start", flow, "-e", '{"numbers": [1, 2, 3]}', "--name", "tour_1", "--wait")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    lines = waited.stdout.splitlines()
    assert any("steps done" in line for line in lines)  # progress, one line per change (not a terminal)
    assert "Succeeded after" in waited.stdout
    output = json.loads(waited.stdout[waited.stdout.index("{"):])
    assert [it["doubled"] for it in output["each"]] == [2, 4, 6] and output["merged"] == [1, 2, 3]

    described = run_cli("flows", "describe", flow, "tour_1")
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert "Succeeded" in text.splitlines()[0]
    step_lines = text[text.index("\nsteps\n"):].splitlines()[2:]
    labels = [line.split()[0] for line in step_lines]
    assert labels == ["split", "each", "0/double", "1/double", "2/double", "merge"]  # a tree, by path
    nested = next(line for line in step_lines if "1/double" in line)
    assert nested.startswith("    1/double") and "attempts 1" in nested and f"invocation {names['double']}/" in nested
    steps = json.loads(run_cli("flows", "describe", flow, "tour_1", "--json").stdout)["steps"]
    assert {s["path"] for s in steps} == {"split", "each", "each/0/double", "each/1/double", "each/2/double",
                                          "merge"}

    history = run_cli("flows", "history", flow, "tour_1")
    assert history.returncode == 0, history.stderr
    kinds = [line.split()[2] for line in history.stdout.splitlines()]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded" and "TaskSubmitted" in kinds
    events = json.loads(run_cli("flows", "history", flow, "tour_1", "--json").stdout)["items"]
    assert [e["type"] for e in events] == kinds

    listed = json.loads(run_cli("flows", "executions", "--flow", flow, "--json").stdout)
    assert [(e["executionName"], e["status"]) for e in listed["items"]] == [("tour_1", "Succeeded")]
    assert "tour_1" in run_cli("flows", "executions", "--flow", flow, "--status", "Succeeded").stdout

    again = run_cli("flows", "start", flow, "-e", "{}", "--name", "tour_1")  # a taken name: 409, the existing one
    assert again.returncode == 1
    assert "execution tour_1 of flow" in again.stderr and "already exists (409)" in again.stderr
    assert "Succeeded" in again.stderr

    bad_json = run_cli("flows", "start", flow, "-e", "{numbers: [1")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    not_object = run_cli("flows", "start", flow, "-e", "[1, 2]")
    assert not_object.returncode == 2 and "must be a JSON object" in not_object.stderr
    missing = run_cli("flows", "start", flow, "--event-file", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    count = app_client.get(f"/v1/executions?flow={flow}").get_json()["items"]
    assert len(count) == 1  # none of the refused starts wrote anything


def test_a_bad_definition_names_its_step_path_and_writes_nothing(run_cli: Cli, names: dict[str, str],
                                                                  tmp_path: Path) -> None:
    flow = names["flow"]
    before = _flow_names(run_cli)
    path = tmp_path / "bad.yaml"
    path.write_text(SPLIT_MERGE.format(double=names["double"]).replace("type: task", "type: tsak"))
    refused = run_cli("flows", "deploy", flow, "-f", str(path))
    assert refused.returncode == 1
    assert f"the flow in {path} is invalid at step path each/*/double.type" in refused.stderr
    assert "unknown step type 'tsak'" in refused.stderr and "nothing was deployed" in refused.stderr
    missing = run_cli("flows", "deploy", flow, "-f", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert _flow_names(run_cli) == before
    gone = run_cli("flows", "show", flow)
    assert gone.returncode == 1 and "404" in gone.stderr


def test_stop_a_running_execution_then_follow_its_history_to_the_end(
        run_cli: Cli, names: dict[str, str], tmp_path: Path, live_api: ApiProcess,
        eventually: Callable[..., Any], process_gone: Callable[[int], bool]) -> None:
    flow, pids = names["flow"], tmp_path / "pids"
    path = tmp_path / "hang.yaml"
    path.write_text(f"version: v1\ntype: flow\nsteps:\n  - name: hang\n    type: task\n"
                    f"    resourceArn: function:{names['hang']}\n")
    assert run_cli("flows", "deploy", flow, "-f", str(path)).returncode == 0
    started = run_cli("flows", "start", flow, "-e", json.dumps({"pids": str(pids)}), "--json")
    assert started.returncode == 0, started.stderr
    execution = json.loads(started.stdout)["executionName"]
    eventually(lambda: pids.exists() and pids.read_text().strip(), what="the hanging step to start", timeout_s=60)
    handler_pid, child_pid = map(int, pids.read_text().split())

    stopped = run_cli("flows", "stop", flow, execution)
    assert stopped.returncode == 0, stopped.stderr
    assert "stop requested" in stopped.stdout
    followed = run_cli("flows", "history", flow, execution, "--follow", timeout_s=90)  # returns once it ended
    assert followed.returncode == 0, followed.stderr
    kinds = [line.split()[2] for line in followed.stdout.splitlines()]
    assert "ExecutionStopRequested" in kinds and kinds[-1] == "ExecutionStopped", followed.stdout
    client = taskservice.Client(live_api.base)
    assert client.get_execution(flow, execution).status == "Stopped"
    assert process_gone(handler_pid) and process_gone(child_pid)  # the step's whole process tree
    again = run_cli("flows", "stop", flow, execution)
    assert again.returncode == 1 and "409" in again.stderr


def test_redrive_after_a_failure_reruns_only_the_failed_item(run_cli: Cli, names: dict[str, str], tmp_path: Path,
                                                             live_api: ApiProcess) -> None:
    flow, bad, calls = names["flow"], tmp_path / "bad", tmp_path / "calls"
    bad.write_text("2\n")
    path = tmp_path / "items.yaml"
    path.write_text(f"""
version: v1
type: flow
steps:
  - name: each
    type: foreach
    iterationMapping: {{collection: $.items, item: item}}
    steps:
      - name: work
        type: task
        resourceArn: function:{names['fail_item']}
""")
    assert run_cli("flows", "deploy", flow, "-f", str(path)).returncode == 0
    event = json.dumps({"items": [1, 2, 3], "bad": str(bad), "calls": str(calls)})
    failed = run_cli("flows", "start", flow, "-e", event, "--name", "redo", "--wait")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Failed after" in failed.stdout and "item 2 fails on purpose" in failed.stderr
    described = run_cli("flows", "describe", flow, "redo").stdout
    assert "Flaky: item 2 fails on purpose" in next(line for line in described.splitlines() if "1/work" in line)

    bad.write_text("")
    redriven = run_cli("flows", "redrive", flow, "redo")
    assert redriven.returncode == 0, redriven.stderr
    assert "redriven, now Running" in redriven.stdout
    done = taskservice.Client(live_api.base).wait_execution(flow, "redo", timeout_s=60)
    assert done.status == "Succeeded", done
    assert sorted(calls.read_text().split()) == ["1", "2", "2", "3"]  # only the failed item ran again
    assert run_cli("flows", "redrive", flow, "redo").returncode == 1  # a Succeeded execution: 409
