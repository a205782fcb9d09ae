"""Warm executors through real processes (zygote, executor, the handler's children); only the ledger side is replaced
by the sandbox tests' recorder."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.unit.test_sandbox import Recorder, job
from workers.executors import ExecutorSlot, RecyclePolicy
from workers.sandbox import Outcome

WHOAMI = "tests.executor_handlers:whoami"
MIB = 1024 * 1024
HEADROOM_MB = 256  # the RSS bound above this pytest process's own RSS; the RSS test allocates well past it


@pytest.fixture
def slot() -> Iterator[ExecutorSlot]:
    """A slot whose zygote is forked from this pytest process. A forked executor starts at about its parent's RSS,
    and the suite's process grows as it goes (540 MiB by the unit tests of a full run), so the RSS bound is set a
    fixed headroom above the process as it is now rather than at a fixed figure."""
    bound = psutil.Process().memory_info().rss + HEADROOM_MB * MIB
    made = ExecutorSlot(RecyclePolicy(max_attempts=3, max_rss_bytes=bound))
    yield made
    made.close()


def run(slot: ExecutorSlot, handler: str, payload: Any = None, **options: Any) -> tuple[Outcome, Recorder]:
    hooks = Recorder(stop_after_ticks=options.pop("stop_after_ticks", None))
    return slot.run(job(handler, payload or {}, **options), hooks, tick_s=0.1), hooks


def pid_of(slot: ExecutorSlot) -> int:
    outcome, hooks = run(slot, WHOAMI)
    assert outcome.kind == "succeeded", outcome
    assert outcome.result["pid"] == hooks.pid
    return int(outcome.result["pid"])


def test_attempts_reuse_the_executor_until_the_attempt_bound(slot: ExecutorSlot) -> None:
    first = [pid_of(slot) for _ in range(3)]
    assert len(set(first)) == 1 and first[0] != os.getpid()
    assert pid_of(slot) != first[0], "a fourth attempt must run in a fresh executor (max_attempts=3)"


def test_the_executor_is_forked_from_a_clean_zygote_not_from_the_worker(slot: ExecutorSlot) -> None:
    executor = psutil.Process(pid_of(slot))
    zygote = executor.parent()
    assert zygote is not None and zygote.pid == slot.zygote.pid and zygote.ppid() == os.getpid()
    assert executor.pid == os.getpgid(executor.pid) == os.getsid(executor.pid), "its own session and group"


def test_an_executor_past_its_rss_bound_is_replaced(slot: ExecutorSlot, process_gone: Any) -> None:
    bound_mb = slot.policy.max_rss_bytes / MIB
    outcome, _ = run(slot, WHOAMI)
    small = outcome.result["pid"]
    assert outcome.result["rss_mb"] < bound_mb, "the bound must be above an idle executor for this test to mean much"
    outcome, _ = run(slot, WHOAMI, {"allocate_mb": 2 * HEADROOM_MB})  # kept in a module global: resident after return
    assert outcome.kind == "succeeded" and outcome.result["pid"] == small and outcome.result["rss_mb"] > bound_mb
    assert process_gone(small), "an executor past its RSS bound must be replaced"
    assert pid_of(slot) != small


@pytest.mark.parametrize("how, kind", [("raise", "failed"), ("exit", "failed"), ("sigkill", "failed"),
                                       ("hang", "timeout"), ("stop", "stopped")])
def test_after_any_failure_the_next_attempt_runs_in_a_fresh_executor(slot: ExecutorSlot, tmp_path: Path,
                                                                     process_gone: Any, how: str, kind: str) -> None:
    before = pid_of(slot)
    pids = tmp_path / "pids"
    options: dict[str, Any] = {"timeout_s": 1} if how == "hang" else {}
    if how == "stop":
        options["stop_after_ticks"] = 5
    outcome, hooks = run(slot, "tests.executor_handlers:crash", {"pids": str(pids), "how": how}, **options)
    assert outcome.kind == kind, outcome
    assert int(pids.read_text()) == before == hooks.pid, "the failing attempt ran in the warm executor"
    assert process_gone(before), "the executor of a failed attempt must be killed"
    after = pid_of(slot)
    assert after != before


def test_a_failure_is_reported_as_before(slot: ExecutorSlot, tmp_path: Path) -> None:
    outcome, _ = run(slot, "tests.executor_handlers:crash", {"pids": str(tmp_path / "p"), "how": "exit"})
    assert (outcome.kind, outcome.error_type) == ("failed", "ProcessExited")
    assert "exit code 3" in outcome.error
    outcome, _ = run(slot, "tests.executor_handlers:crash", {"pids": str(tmp_path / "p"), "how": "sigkill"})
    assert "killed by signal SIGKILL" in outcome.error
    outcome, _ = run(slot, "tests.handlers:exits")
    assert (outcome.kind, outcome.error_type) == ("failed", "SystemExit")


def test_a_timeout_kills_the_whole_tree_grandchild_in_its_own_session_too(slot: ExecutorSlot, tmp_path: Path,
                                                                          process_gone: Any) -> None:
    pid_of(slot)
    pids = tmp_path / "pids"
    outcome, _ = run(slot, "tests.executor_handlers:tree_and_hang", {"pids": str(pids)}, timeout_s=3)
    assert outcome.kind == "timeout", outcome
    for pid in map(int, pids.read_text().split()):
        assert process_gone(pid), f"process {pid} survived the timeout"
    assert pid_of(slot) not in map(int, pids.read_text().split())


def test_a_clean_return_that_leaves_a_child_behind_recycles_and_kills_it(slot: ExecutorSlot,
                                                                         process_gone: Any) -> None:
    outcome, _ = run(slot, "tests.executor_handlers:leave_child")
    assert outcome.kind == "succeeded"
    assert process_gone(outcome.result["child"]) and process_gone(outcome.result["pid"])
    assert pid_of(slot) != outcome.result["pid"]


def test_cwd_and_environment_are_restored_between_attempts(slot: ExecutorSlot, tmp_path: Path) -> None:
    start = run(slot, WHOAMI)[0].result
    outcome, _ = run(slot, "tests.executor_handlers:dirty_state", {"cwd": str(tmp_path)})
    assert outcome.result["pid"] == start["pid"]
    after = run(slot, WHOAMI)[0].result
    assert after["pid"] == start["pid"] and after["cwd"] == start["cwd"] and after["marker"] is None


def test_an_executor_killed_while_idle_is_replaced_before_the_next_attempt(slot: ExecutorSlot,
                                                                           process_gone: Any) -> None:
    before = pid_of(slot)
    os.kill(before, signal.SIGKILL)
    assert process_gone(before)
    assert pid_of(slot) != before


def test_logs_output_progress_and_fan_out_keep_working_across_attempts(slot: ExecutorSlot) -> None:
    for _ in range(2):
        outcome, hooks = run(slot, "tests.handlers:chatty", {"lines": 2})
        assert outcome.kind == "succeeded" and outcome.result == "ok"
        assert ("OUTPUT", "plain stdout line") in hooks.logs and ("OUTPUT", "from a child process") in hooks.logs
        assert [m for _, m in hooks.logs].count("line 0") == 1
        assert hooks.progress == [(50.0, "step 1"), (100.0, "step 2")]
        outcome, hooks = run(slot, "tests.handlers:fan_out", {"child": "g", "count": 2})
        assert outcome.result == ["inv_1-0", "inv_1-1"] and len(hooks.submits) == 2


def test_a_handler_that_cannot_be_loaded_is_invalid_and_the_slot_goes_on(slot: ExecutorSlot) -> None:
    outcome, _ = run(slot, "no.such.module:handler")
    assert outcome.kind == "invalid" and "no.such.module:handler" in outcome.error
    assert pid_of(slot) > 0


def test_the_handler_sees_none_of_the_worker_processes_descriptors(tmp_path: Path) -> None:
    """A socket and a ledger file the pool process holds when its slot starts are unreachable from a handler."""
    import socket

    held = socket.create_server(("127.0.0.1", 0))
    ledger_file = open(tmp_path / "ledger.db", "wb")
    held_target = os.readlink(f"/proc/self/fd/{held.fileno()}")
    slot = ExecutorSlot(RecyclePolicy())
    try:
        outcome, _ = run(slot, "tests.executor_handlers:descriptors")
    finally:
        slot.close()
        held.close()
        ledger_file.close()
    mine = outcome.result["mine"]
    assert held_target not in mine
    assert not [t for t in mine if t.endswith("ledger.db")]
    assert not [t for t in mine if t.startswith("socket:") and t in set(outcome.result["worker"][str(os.getpid())])]
