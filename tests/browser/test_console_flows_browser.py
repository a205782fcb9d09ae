"""An execution's page in a real browser: the step graph is drawn, a running step's box changes colour in place (no
reload) when its step ends, and Stop ends the execution Stopped with the hanging step's process tree gone."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import Page, expect

if TYPE_CHECKING:
    from tests.browser.console import Console


def fresh(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def box_fill(page: Page, path: str) -> str:
    """The computed fill of a step box's rectangle: what the eye sees, not only the class that sets it."""
    return str(page.locator(f'g.step[data-path="{path}"] > a > rect, g.step[data-path="{path}"] > rect')
               .first.evaluate("rect => getComputedStyle(rect).fill"))


def test_execution_page_draws_the_graph_updates_live_and_stops(console: Console, page: Page, tmp_path: Path,
                                                                deploy: Any, deploy_flow: Any, start_execution: Any,
                                                                wait_for_execution: Any, process_gone: Any,
                                                                eventually: Any, screenshot: Any) -> None:
    quick, stuck, flow = fresh("quick"), fresh("stuck"), fresh("pipeline")
    deploy(console.api, quick, "tests.flow_handlers:double", timeout_s=60, max_retries=0)
    deploy(console.api, stuck, "tests.handlers:spawn_and_hang", timeout_s=600, max_retries=0)
    deploy_flow(console.api, flow, {"version": "v1", "type": "flow", "steps": [
        {"name": "prepare", "type": "pass"},
        {"name": "both", "type": "parallel", "branches": [
            {"steps": [{"name": "encode", "type": "task", "resourceArn": f"function:{quick}",
                        "inputMappings": [{"target": "item", "source": 21},
                                          {"target": "gate", "source": "$input.gate"}]}]},
            {"steps": [{"name": "hang", "type": "task", "resourceArn": f"function:{stuck}",
                        "inputMappings": [{"target": "pids", "source": "$input.pids"}]}]}]},
        {"name": "publish", "type": "pass"}]})
    pids, gate = tmp_path / "pids", tmp_path / "encode-may-end"
    # The encode step holds at the gate until the test has seen it Running in the page: no window to act within.
    name = start_execution(console.api, flow, {"pids": str(pids), "gate": str(gate)}, "watched")
    runs = console.services.flows
    eventually(lambda: {s.path: s.status for s in runs.steps(runs.get_execution(flow, name).pk)},
               until=lambda seen: seen.get("both/0/encode") == "Running", what="the encode step to start")

    console.sign_in(page)
    page.goto(f"{console.base}/flows/{flow}/executions/{name}")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads: updates must arrive live
    graph = page.locator("svg.flow-graph")
    expect(graph).to_be_visible()
    expect(graph.locator("g.step")).to_have_count(5)  # prepare, both, both/0/encode, both/1/hang, publish
    encode = graph.locator('g.step[data-path="both/0/encode"]')
    expect(encode).to_have_attribute("data-status", "Running")
    expect(encode.locator("text.meta")).to_contain_text("Running")  # a text label, not colour only
    expect(encode.locator("title")).to_contain_text("encode (task")
    expect(graph.locator('g.step[data-path="prepare"]')).to_have_attribute("data-status", "Succeeded")
    running_fill = box_fill(page, "both/0/encode")
    screenshot(page, "execution-running")

    gate.touch()  # now the encode step may end
    expect(encode).to_have_attribute("data-status", "Succeeded", timeout=20_000)  # the step ended: live
    expect(encode.locator("text.meta")).to_contain_text("Succeeded")
    assert box_fill(page, "both/0/encode") != running_fill
    expect(page.locator("#history")).to_contain_text("TaskSucceeded")
    assert page.evaluate("window.sameDocument === true")
    href = encode.locator("a").get_attribute("href") or ""
    assert href.startswith(f"/invocations/{quick}/")  # the box links to its invocation
    expect(graph.locator('g.step[data-path="both/1/hang"]')).to_have_attribute("data-status", "Running")
    eventually(lambda: pids.exists() and pids.read_text().split(), what="the hanging handler to start its child")

    page.click("button:text-is('Stop')")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".question")).to_contain_text("every process they started")
    screenshot(page, "confirm-stop-execution")
    dialog.locator("#confirm-ok").click()
    expect(page.locator(".flash-ok")).to_contain_text("Stop requested")
    expect(page.locator("#status-badge")).to_have_text("Stopped", timeout=30_000)
    expect(graph.locator('g.step[data-path="both/1/hang"]')).to_have_attribute("data-status", "Stopped")
    expect(graph.locator('g.step[data-path="publish"]')).to_have_attribute("data-status", "NotRun")
    expect(page.locator("button:text-is('Redrive')")).to_be_visible()
    expect(page.locator("#history")).to_contain_text("ExecutionStopped")
    assert wait_for_execution(console.api, flow, name, {"Stopped"})["status"] == "Stopped"
    for pid in map(int, pids.read_text().split()):
        assert process_gone(pid), f"process {pid} outlived the stop"
    screenshot(page, "execution-stopped")

    page.click("header nav >> text=Flows")  # the flows list is in the navigation, its counts lead to the list
    expect(page.locator("#flows")).to_contain_text(flow)
    screenshot(page, "flows")
    page.click(f'#flows tr[data-flow="{flow}"] a.count:has(.n[data-status="Stopped"])')
    expect(page.locator("#executions tbody tr")).to_have_count(1)
    expect(page.locator("#executions")).to_contain_text(name)
    screenshot(page, "executions")
