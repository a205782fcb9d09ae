"""The old media parents' names start their flows (workers/media/flow_start.py): the flow name follows the
function's deploy-media prefix, a retried attempt adopts the execution it started, an undeployed flow is a bad event."""
from __future__ import annotations

import logging
from typing import Any

import pytest

from workers.context import SubmissionRefused
from workers.media import BadEvent
from workers.media.flow_start import flow_name, start_flow


class FakeContext:
    def __init__(self, function: str, refuse: str | None = None) -> None:
        self.function, self.refuse = function, refuse
        self.logger = logging.getLogger("test")
        self.started: list[tuple[str, dict[str, Any], str]] = []

    def start_execution(self, flow: str, payload: dict[str, Any], *, name: str) -> dict[str, Any]:
        if self.refuse:
            raise SubmissionRefused(self.refuse, "refused")
        self.started.append((flow, payload, name))
        return {"executionName": name, "flow": flow, "status": "Running", "requestId": "r"}


def test_the_flow_carries_the_functions_prefix() -> None:
    assert flow_name(FakeContext("transcode-split"), "transcode-split", "media-split-merge") == "media-split-merge"
    assert flow_name(FakeContext("p-transcode-split"), "transcode-split", "media-split-merge") == "p-media-split-merge"
    assert flow_name(FakeContext("mine"), "transcode-split", "media-split-merge") == "media-split-merge"


def test_start_returns_where_to_follow_and_a_retry_adopts() -> None:
    ctx = FakeContext("transcode-fanout")
    started = start_flow(ctx, "media-fanout", {"a": 1}, "inv1")
    assert started == {"flow": "media-fanout", "executionName": "inv1", "status": "Running",
                       "follow": "/v1/flows/media-fanout/executions/inv1"}
    assert ctx.started == [("media-fanout", {"a": 1}, "inv1")]
    assert start_flow(FakeContext("x", "ExecutionAlreadyExist"), "media-fanout", {}, "inv1")["status"] == "adopted"


def test_an_undeployed_flow_is_a_bad_event_naming_deploy_media() -> None:
    with pytest.raises(BadEvent, match="deploy-media"):
        start_flow(FakeContext("x", "FlowNotFound"), "media-fanout", {}, "inv1")
    with pytest.raises(SubmissionRefused):
        start_flow(FakeContext("x", "LedgerUnavailable"), "media-fanout", {}, "inv1")
