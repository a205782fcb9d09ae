"""The console's step graph without a server: template paths, the foreach counter, status aggregation, arrows for
every way out of a step, and text that is escaped and labelled."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from taskservice.console.flow_graph import IterationCount, Progress, render, template_path
from taskservice.flowdef import parse_definition
from taskservice.ledger.flows import StepRun

DEFINITION = parse_definition({"version": "v1", "type": "flow", "steps": [
    {"name": "fetch", "type": "task", "resourceArn": "function:fetch",
     "catch": [{"errors": ["FnF.ALL"], "goto": "oops"}]},
    {"name": "route", "type": "choice", "choices": [{"condition": "$.n > 1 && $.kind == \"<b>\"", "goto": "fan"}],
     "default": {"goto": "oops"}},
    {"name": "fan", "type": "parallel", "branches": [
        {"steps": [{"name": "a", "type": "pass"}]},
        {"steps": [{"name": "each", "type": "foreach", "iterationMapping": {"collection": "$.items"},
                    "steps": [{"name": "work", "type": "task", "resourceArn": "function:work"}]}]}]},
    {"name": "done", "type": "succeed"},
    {"name": "oops", "type": "fail", "error": "Broken"}]})

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run(path: str, type_: str, status: str, **fields: Any) -> StepRun:
    values: dict[str, Any] = {"visit": 1, "attempts": 0, "items": None, "function": None, "invocation_id": None,
                              "input": None, "output": None, "error": None, "error_type": None,
                              "entered_at": NOW, "ended_at": None, **fields}
    return StepRun(path=path, type=type_, status=status, **values)


def test_template_paths_replace_foreach_indices_only() -> None:
    assert template_path(DEFINITION, "fetch") == "fetch"
    assert template_path(DEFINITION, "fan/1/each/7/work") == "fan/1/each/*/work"
    assert template_path(DEFINITION, "fan/0/a") == "fan/0/a"
    assert template_path(DEFINITION, "fan/2/a") is None and template_path(DEFINITION, "nope") is None


def test_counter_and_aggregated_status_of_a_foreach() -> None:
    runs = [run("fetch", "task", "Succeeded", attempts=2, function="fetch", invocation_id="inv_1"),
            run("route", "choice", "Succeeded"), run("fan", "parallel", "Running"),
            run("fan/1/each", "foreach", "Running", items=5)]
    runs += [run(f"fan/1/each/{k}/work", "task", s, function="work", invocation_id=f"w{k}")
             for k, s in enumerate(["Succeeded", "Succeeded", "Running", "Failed"])]
    frames = {"fan/0": "Succeeded", "fan/1": "Running", "fan/1/each/0": "Succeeded", "fan/1/each/1": "Succeeded",
              "fan/1/each/2": "Running", "fan/1/each/3": "Failed"}
    progress = Progress.of(DEFINITION, runs, frames)
    assert progress.iterations["fan/1/each"] == IterationCount(total=5, done=2, running=1, failed=1)
    assert progress.iterations["fan/1/each"].text() == "2/5 done, 1 running, 1 failed"
    assert progress.status("fan/1/each/*/work") == "Running"  # the most pressing of its four runs
    assert progress.status("done") == "NotRun"
    svg = str(render(DEFINITION, progress, lambda f, i: f"/invocations/{f}/{i}", label="graph of <x>"))
    statuses = dict(re.findall(r'data-path="([^"]+)" data-status="([^"]+)"', svg))
    assert statuses["fetch"] == "Succeeded" and statuses["fan/1/each/*/work"] == "Running"
    assert '<a href="/invocations/fetch/inv_1">' in svg and "attempt 2" in svg
    assert '<a href="#iterations-fan-1-each">' in svg  # a body step links to its foreach's iteration list
    assert "2/5 done, 1 running, 1 failed" in svg
    assert svg.count("<title>") >= 9 and 'aria-label="graph of &lt;x&gt;"' in svg
    assert "&lt;b&gt;" in svg and "<b>" not in svg  # a condition's text is escaped


def test_every_way_out_of_a_step_has_an_arrow() -> None:
    svg = str(render(DEFINITION, Progress(), lambda f, i: "", label="g"))
    kinds = re.findall(r'class="edge edge-(\w+)"', svg)
    assert kinds.count("catch") == 1 and kinds.count("choice") == 1 and kinds.count("default") == 1
    assert kinds.count("next") == 2  # fetch → route, fan → done; succeed and fail lead nowhere
    assert "catch FnF.ALL" in svg


def test_a_long_iteration_list_shows_the_iterations_that_did_not_succeed_first() -> None:
    from taskservice.console.execution_page import ITERATION_ROWS, _iteration_lists

    definition = parse_definition({"version": "v1", "type": "flow", "steps": [
        {"name": "each", "type": "foreach", "iterationMapping": {"collection": "$.items"},
         "steps": [{"name": "work", "type": "task", "resourceArn": "function:work"}]}]})
    failed = {5, 240}
    runs = [run("each", "foreach", "Failed", items=250)]
    runs += [run(f"each/{k}/work", "task", "Failed" if k in failed else "Succeeded", function="work",
                 invocation_id=f"w{k}") for k in range(250)]
    frames = {f"each/{k}": "Failed" if k in failed else "Succeeded" for k in range(250)}
    [listing] = _iteration_lists(definition, Progress.of(definition, runs, frames), runs, frames)
    scopes = [row.scope for row in listing.rows]
    assert len(scopes) == ITERATION_ROWS and listing.total == 250
    assert "each/240" in scopes and "each/5" in scopes and "each/239" not in scopes
    assert scopes == sorted(scopes, key=lambda s: int(s.rsplit("/", 1)[1]))  # in index order
    assert listing.rows[0].steps[0].invocation_id == "w0"
    assert listing.count.text() == "248/250 done, 2 failed"
