from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskservice.errors import IllegalTransition
from taskservice.ledger.states import ALLOWED, TERMINAL, WAITING, Status, check_transition


def test_status_names_are_exactly_function_computes() -> None:
    assert [s.value for s in Status] == ["Enqueued", "Running", "Retrying", "Succeeded", "Failed", "Stopping",
                                         "Stopped", "Expired", "Invalid"]
    assert {s.value for s in TERMINAL} == {"Succeeded", "Failed", "Stopped", "Expired", "Invalid"}


@pytest.mark.parametrize("current,target", [
    (Status.ENQUEUED, Status.RUNNING), (Status.RETRYING, Status.RUNNING), (Status.RUNNING, Status.SUCCEEDED),
    (Status.RUNNING, Status.RETRYING), (Status.RUNNING, Status.FAILED), (Status.RUNNING, Status.STOPPING),
    (Status.STOPPING, Status.STOPPED), (Status.ENQUEUED, Status.EXPIRED), (Status.ENQUEUED, Status.STOPPED),
    (Status.ENQUEUED, Status.INVALID), (Status.FAILED, Status.ENQUEUED),
])
def test_legal_moves(current: Status, target: Status) -> None:
    check_transition(current, target)


@pytest.mark.parametrize("current,target", [
    (Status.SUCCEEDED, Status.RUNNING), (Status.FAILED, Status.SUCCEEDED), (Status.ENQUEUED, Status.SUCCEEDED),
    (Status.ENQUEUED, Status.FAILED), (Status.STOPPING, Status.RUNNING), (Status.STOPPED, Status.RUNNING),
    (Status.RUNNING, Status.ENQUEUED), (Status.RUNNING, Status.RUNNING), (Status.INVALID, Status.RUNNING),
])
def test_illegal_moves_raise(current: Status, target: Status) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {target.value}"):
        check_transition(current, target)


@given(st.sampled_from(list(Status)), st.sampled_from(list(Status)))
def test_check_transition_agrees_with_the_table(current: Status, target: Status) -> None:
    if target in ALLOWED[current]:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)


def test_only_waiting_states_start_and_terminal_states_only_restart_by_retry() -> None:
    assert {s for s, targets in ALLOWED.items() if Status.RUNNING in targets} == WAITING
    for status in TERMINAL:
        assert ALLOWED[status] == {Status.ENQUEUED}


def test_every_state_can_reach_a_terminal_state() -> None:
    for start in Status:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in ALLOWED[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL, start


def test_no_self_loops() -> None:
    assert all(s not in ALLOWED[s] for s in Status)
    assert len(list(itertools.product(Status, Status))) == 81
