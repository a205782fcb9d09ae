"""A worker's link is cut while it runs a long handler (design §6, §9; issue 11).

Three hosts: the API in one network namespace, a one-slot worker in each of two others. The worker running the
attempt loses its network; self-fencing must kill its handler's process tree before the lease lapses, so the
attempt the other worker starts after the lease never overlaps it (checked from the handlers' own clocks and pids).
When the link comes back, the stale worker must write nothing: no transition, log line, outcome or destination
record of the taken-over attempt."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from tests.multihost.handlers import TICKS, earlier_attempts

if TYPE_CHECKING:
    from tests.multihost.hosts import Cluster

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

FIRST_ATTEMPT_S = 40.0  # far longer than the lease: without fencing it would still be running at the takeover
LATER_ATTEMPT_S = 4.0  # the takeover only has to finish


def ticks(cluster: Cluster) -> dict[int, list[tuple[str, float]]]:
    """attempt -> [(host, time.time()), ...] in the order the handler wrote them."""
    out: dict[int, list[tuple[str, float]]] = {}
    path = cluster.shared_dir / TICKS
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) == 3:  # a line being written right now may be partial
            out.setdefault(int(parts[0]), []).append((parts[1], float(parts[2])))
    return out


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def starts(cluster: Cluster) -> dict[int, dict[str, Any]]:
    return {rec["attempt"]: rec for rec in earlier_attempts(cluster.shared_dir)}


def test_cut_off_worker_fences_itself_and_stays_silent(cluster: Cluster, eventually: Callable[..., Any]) -> None:
    lease_s = cluster.lease_s
    fn, queue = f"part_{uuid.uuid4().hex[:10]}", f"ts_test_dest_{uuid.uuid4().hex[:10]}"
    cluster.put(f"/v1/functions/{fn}", {"handler": "tests.multihost.handlers:long_ticker", "timeout_s": 300,
                                        "max_retries": 2, "on_success": f"queue:{queue}"})
    submitted = cluster.post(f"/v1/functions/{fn}/invocations",
                             {"dir": str(cluster.shared_dir), "seconds": FIRST_ATTEMPT_S,
                              "later_seconds": LATER_ATTEMPT_S})
    path = f"/v1/functions/{fn}/invocations/{submitted['invocationId']}"

    def view() -> dict[str, Any]:
        return dict(cluster.get(path))

    def state() -> str:
        v = view()
        return (f"invocation: {v['status']} attempts={v['attempts']} worker={v['worker']}\n"
                f"transitions: {v['transitions']}\nstarts: {starts(cluster)}\n{cluster.logs()}")

    # 1. The first attempt runs on one of the workers.
    first = eventually(lambda: 1 in starts(cluster) and view()["status"] == "Running" and starts(cluster)[1],
                       what="attempt 1 to start and be Running", timeout_s=30, describe=state)
    stale_role = first["host"]
    assert stale_role in ("w1", "w2"), first
    other_role = "w2" if stale_role == "w1" else "w1"
    stale_worker_id = view()["worker"]
    stale = cluster.network.hosts[stale_role]
    # Cut in steady state: after a heartbeat of the running attempt (the claim itself also sets heartbeatAt).
    before_cut = eventually(lambda: _epoch((v := view())["heartbeatAt"]) > _epoch(v["startedAt"]) and v,
                            what="a heartbeat of attempt 1 after its claim", timeout_s=10, describe=state)

    # 2. Cut its link. The other worker's reaper must take over once the lease lapses.
    cut_at = time.time()
    stale.cut()
    second = eventually(lambda: starts(cluster).get(2), what="attempt 2 to start on the other worker",
                        timeout_s=lease_s + 20, describe=state)
    seen_takeover_at = time.time()
    # While the link is still down the stale worker cannot have written anything since the cut: this is the
    # baseline its later writes are measured against.
    baseline = view()
    baseline_logs = cluster.get(f"{path}/logs?attempt=1")["items"]

    done = eventually(lambda: view()["status"] in ("Succeeded", "Failed") and view(),
                      what="the invocation to succeed", timeout_s=LATER_ATTEMPT_S + 30, describe=state)

    # 3. Restore the link. Take the other worker away, then ring a probe: with its single slot the stale worker can
    # only run it once it is done with the taken-over attempt, so by then it has written whatever it was going to.
    stale.restore()
    restored_at = time.time()
    connections_before = cluster.network.relay_connections(stale_role)
    cluster.workers[other_role].stop()
    probe_fn = f"probe_{uuid.uuid4().hex[:10]}"
    cluster.put(f"/v1/functions/{probe_fn}", {"handler": "tests.multihost.handlers:where", "timeout_s": 30})
    probe = cluster.post(f"/v1/functions/{probe_fn}/invocations", {})
    probe_path = f"/v1/functions/{probe_fn}/invocations/{probe['invocationId']}"
    problems: list[str] = []
    try:
        eventually(lambda: cluster.get(probe_path)["status"] == "Succeeded",
                   what="the stale worker, link restored, to run a probe invocation", timeout_s=60, describe=state)
        assert cluster.get(probe_path)["result"]["host"] == stale_role
    except AssertionError as exc:
        problems.append(f"stale worker did not come back: {exc}")
    final = view()
    final_logs = cluster.get(f"{path}/logs?attempt=1")["items"]

    # --- What happened, from the handlers' own records.
    by_attempt = ticks(cluster)
    first_ticks, second_ticks = by_attempt.get(1, []), by_attempt.get(2, [])
    last_of_first = max(t for _, t in first_ticks)
    start_of_second = second["at"]
    lapsed = [t for t in final["transitions"] if t["to"] == "Retrying" and t["attempt"] == 1]
    heartbeat_before_cut = _epoch(before_cut["heartbeatAt"])
    taken_at = ", ".join(f"{_epoch(t['at']) - cut_at:+.1f} s" for t in lapsed) or "?"
    report = (f"stale={stale_role} other={other_role}; cut at +0.0 s (a heartbeat seen at "
              f"{heartbeat_before_cut - cut_at:+.1f} s); lease of attempt 1 taken at "
              f"{taken_at}; attempt 1 last tick "
              f"{last_of_first - cut_at:+.1f} s; attempt 2 start {start_of_second - cut_at:+.1f} s (seen "
              f"{seen_takeover_at - cut_at:+.1f} s); restored {restored_at - cut_at:+.1f} s; relay connections from "
              f"{stale_role}: {connections_before} at restore, {cluster.network.relay_connections(stale_role)} "
              f"at the end")
    print(report)

    # The two attempts never overlap in time.
    if not last_of_first < start_of_second:
        overlap = [t for _, t in first_ticks if t >= start_of_second]
        problems.append(f"OVERLAP: attempt 1 kept running {last_of_first - start_of_second:.1f} s after attempt 2 "
                        f"started ({len(overlap)} ticks of attempt 1 after attempt 2's start; last tick "
                        f"{last_of_first - cut_at:.1f} s after the cut)")
    # Fencing is the cut-off worker's own doing, within the lease of its last heartbeat (which is before the cut).
    if last_of_first - cut_at >= lease_s:
        problems.append(f"NOT FENCED: attempt 1 still ran {last_of_first - cut_at:.1f} s after its link was cut "
                        f"(lease {lease_s:.0f} s)")
    if lapsed and last_of_first >= _epoch(lapsed[0]["at"]):
        problems.append(f"attempt 1 still ran when the reaper took its lease "
                        f"({last_of_first - _epoch(lapsed[0]['at']):.1f} s after)")
    # Its whole process tree was gone when attempt 2 started (checked by attempt 2 itself).
    if second["alive_at_start"]:
        problems.append(f"attempt 1's processes still alive when attempt 2 started: {second['alive_at_start']}")
    if second["host"] != other_role:
        problems.append(f"attempt 2 ran on {second['host']}, expected {other_role}")
    if any(host != stale_role for host, _ in first_ticks) or any(host != other_role for host, _ in second_ticks):
        problems.append("ticks of an attempt came from the wrong host")

    # --- The outcome is attempt 2's, once.
    if (final["status"], final["attempts"]) != ("Succeeded", 2) or done["status"] != "Succeeded":
        problems.append(f"expected Succeeded with attempts 2, got {done['status']} then {final['status']} with "
                        f"attempts {final['attempts']} ({final['error']})")
    if final["result"] != {"attempt": 2, "host": other_role}:
        problems.append(f"result is not attempt 2's: {final['result']}")
    if final["worker"] == stale_worker_id:
        problems.append(f"the ledger names the stale worker {stale_worker_id} as the last one")
    succeeded = [t for t in final["transitions"] if t["to"] == "Succeeded"]
    if len(succeeded) != 1 or succeeded[0]["attempt"] != 2:
        problems.append(f"expected one Succeeded transition, of attempt 2: {succeeded}")
    if len(final["destinations"]) != 1:
        problems.append(f"expected one on_success record, got {final['destinations']}")

    # --- The stale worker wrote nothing after the takeover.
    new_transitions = final["transitions"][len(baseline["transitions"]):]
    if final["transitions"][:len(baseline["transitions"])] != baseline["transitions"]:
        problems.append("transitions before the takeover changed")
    stale_transitions = [t for t in new_transitions if t["attempt"] == 1]
    if stale_transitions:
        problems.append(f"transitions of attempt 1 written after the takeover: {stale_transitions}")
    if final_logs != baseline_logs:
        extra = final_logs[len(baseline_logs):]
        problems.append(f"{len(final_logs) - len(baseline_logs)} log lines of attempt 1 written after the takeover "
                        f"(first: {extra[:2]})")
    if len(lapsed) != 1 or "lease" not in lapsed[0]["reason"]:
        problems.append(f"expected one 'lease lapsed' hand-over of attempt 1: {final['transitions']}")

    assert not problems, "\n".join([report, *problems, f"transitions: {final['transitions']}",
                                    f"starts: {starts(cluster)}", cluster.logs()])
