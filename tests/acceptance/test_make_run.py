"""`make run` and the CLI, as a person uses them: real subprocesses, the embedded default, no servers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory, repo_dir: Path, free_port: Any,
               wait_for_health: Any) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("make-run")
    port = free_port()
    log_path = data_dir / "make-run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKSERVICE_", "MAKE"))}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["make", "run", f"PORT={port}", f"DATA_DIR={data_dir}"], cwd=repo_dir, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc, log_path, timeout_s=120)
    except BaseException:  # never healthy: stop it here, or nothing would
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    yield {"base": base, "data_dir": data_dir, "log": log_path, "proc": proc, "repo": repo_dir}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def cli(server: dict[str, Any], *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")},
           "TASKSERVICE_API_URL": server["base"]}
    return subprocess.run([sys.executable, "-m", "taskservice.cli", *args], cwd=server["repo"], env=env, text=True,
                          capture_output=True, timeout=60, input=input_text)


def test_make_run_serves_health_and_runs_an_invocation_end_to_end(dev_server: dict[str, Any]) -> None:
    health = requests.get(f"{dev_server['base']}/healthz", timeout=5).json()
    assert health["status"] == "ok"
    assert (dev_server["data_dir"] / "ledger.db").exists()  # the embedded default: SQLite in DATA_DIR
    banner = dev_server["log"].read_text()
    assert "taskservice dev is running" in banner and "127.0.0.1 only" in banner
    deployed = cli(dev_server, "functions", "deploy", "demo", "--handler", "workers.handlers.sleep:handler")
    assert deployed.returncode == 0, deployed.stderr
    waited = cli(dev_server, "invoke", "demo", "-e", '{"seconds": 1, "step": 0.2}', "--invocation-id", "tour_1",
                 "--wait")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "Succeeded after 1 attempt(s)" in waited.stdout
    assert '"slept"' in waited.stdout
    assert "%" in waited.stdout  # the progress bar was drawn


def test_cli_lists_shows_and_prints_logs(dev_server: dict[str, Any]) -> None:
    cli(dev_server, "functions", "deploy", "echo", "--handler", "workers.handlers.echo:handler", "--max-retries", "0")
    done = cli(dev_server, "invoke", "echo", "-e", '{"x": 1}', "--invocation-id", "cli_show", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"x": 1}
    listed = cli(dev_server, "tasks", "list", "--function", "echo")
    assert "cli_show" in listed.stdout and "Succeeded" in listed.stdout
    shown = cli(dev_server, "tasks", "show", "echo", "cli_show")
    assert "Enqueued → Running" in shown.stdout.replace("  ", " ") or "Running" in shown.stdout
    logs = cli(dev_server, "tasks", "logs", "echo", "cli_show")
    assert "echo for cli_show" in logs.stdout
    functions = cli(dev_server, "functions", "list", "--json")
    assert "echo" in {f["name"] for f in json.loads(functions.stdout)}


def test_cli_failure_exits_non_zero_with_the_error(dev_server: dict[str, Any]) -> None:
    cli(dev_server, "functions", "deploy", "echo", "--handler", "workers.handlers.echo:handler", "--max-retries", "0")
    failed = cli(dev_server, "invoke", "echo", "-e", '{"fail": "on purpose"}', "--wait")
    assert failed.returncode == 1
    assert "Failed" in failed.stdout and "RequestedFailure" in failed.stderr


def _invocation_count(server: dict[str, Any]) -> int:
    page = requests.get(f"{server['base']}/v1/invocations?limit=1000", timeout=5).json()
    return len(page["items"])


def test_cli_bad_input_is_refused_and_changes_nothing(dev_server: dict[str, Any]) -> None:
    cli(dev_server, "functions", "deploy", "echo", "--handler", "workers.handlers.echo:handler")
    before = _invocation_count(dev_server)
    bad_json = cli(dev_server, "invoke", "echo", "-e", "{not json")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_id = cli(dev_server, "invoke", "echo", "-e", "{}", "--invocation-id", "9-bad")
    assert bad_id.returncode == 1 and "InvalidInvocationId (400)" in bad_id.stderr
    unknown = cli(dev_server, "invoke", "nope_fn", "-e", "{}")
    assert unknown.returncode == 1 and "FunctionNotFound (404)" in unknown.stderr
    assert cli(dev_server, "invoke", "echo", "-e", "{}", "--invocation-id", "once").returncode == 0
    after_first = _invocation_count(dev_server)
    duplicate = cli(dev_server, "invoke", "echo", "-e", "{}", "--invocation-id", "once")
    assert duplicate.returncode == 1 and "InvocationAlreadyExist (409)" in duplicate.stderr
    assert _invocation_count(dev_server) == after_first == before + 1
    bad_config = cli(dev_server, "functions", "deploy", "broken", "--handler", "no_colon", "--timeout", "0")
    assert bad_config.returncode == 1
    assert "InvalidFunctionConfig (422)" in bad_config.stderr and "timeout_s" in bad_config.stderr
    listed = json.loads(cli(dev_server, "functions", "list", "--json").stdout)
    assert "broken" not in {f["name"] for f in listed}


def test_cli_says_clearly_when_the_api_is_not_there(repo_dir: Path, free_port: Any) -> None:
    result = cli({"base": f"http://127.0.0.1:{free_port()}", "repo": repo_dir}, "tasks", "list")
    assert result.returncode == 1
    assert "cannot reach the taskservice API" in result.stderr


def test_cli_stops_and_retries_one_or_many(dev_server: dict[str, Any]) -> None:
    cli(dev_server, "functions", "deploy", "napper", "--handler", "workers.handlers.sleep:handler")
    assert cli(dev_server, "invoke", "napper", "-e", '{"seconds": 60}', "--invocation-id", "nap_1").returncode == 0
    stopped = cli(dev_server, "tasks", "stop", "napper", "nap_1")
    assert stopped.returncode == 0 and "stop napper/nap_1: now" in stopped.stdout, stopped.stderr
    shown = json.loads(cli(dev_server, "tasks", "show", "napper", "nap_1", "--json").stdout)
    assert shown["status"] in ("Stopping", "Stopped")
    again = cli(dev_server, "tasks", "stop", "napper", "nap_1")
    assert again.returncode == 1 and "(409)" in again.stderr
    for n in (2, 3):
        cli(dev_server, "invoke", "napper", "-e", '{"seconds": 60}', "--invocation-id", f"nap_{n}")
    no_filter = cli(dev_server, "tasks", "stop")
    assert no_filter.returncode == 2 and "at least one filter" in no_filter.stderr
    declined = cli(dev_server, "tasks", "stop", "--function", "napper", input_text="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stderr
    bulk = cli(dev_server, "tasks", "stop", "--function", "napper", "--prefix", "nap_", "--yes")
    assert bulk.returncode == 0 and "stopped" in bulk.stdout, bulk.stderr
    retried = cli(dev_server, "tasks", "retry", "--function", "napper", "--status", "Stopped", "--yes", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["changed"] >= 1
    cli(dev_server, "tasks", "stop", "--function", "napper", "--yes")
    succeeded = cli(dev_server, "invoke", "napper", "-e", '{"seconds": 0}', "--invocation-id", "nap_ok", "--wait")
    assert succeeded.returncode == 0
    refused = cli(dev_server, "tasks", "retry", "napper", "nap_ok")
    assert refused.returncode == 1 and "NotRetryable (409)" in refused.stderr
    rerun = cli(dev_server, "tasks", "retry", "napper", "nap_ok", "--include-succeeded")
    assert rerun.returncode == 0 and "now" in rerun.stdout


def test_cli_lists_dead_letters_page_by_page(dev_server: dict[str, Any]) -> None:
    cli(dev_server, "functions", "deploy", "doomed", "--handler", "workers.handlers.echo:handler", "--max-retries", "0")
    for n in range(3):
        cli(dev_server, "invoke", "doomed", "-e", '{"fail": "on purpose"}', "--invocation-id", f"doomed_{n}", "--wait")
    table = cli(dev_server, "dlq", "list", "--function", "doomed", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert "doomed_2" in table.stdout and "RetriesExhausted" in table.stdout and "more: --cursor" in table.stdout
    cursor = table.stdout.rsplit("--cursor ", 1)[1].strip()
    rest = json.loads(cli(dev_server, "dlq", "list", "--function", "doomed", "--cursor", cursor, "--json").stdout)
    assert [d["invocationId"] for d in rest["items"]] == ["doomed_0"] and rest["next_cursor"] is None
