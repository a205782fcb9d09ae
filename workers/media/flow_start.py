"""The old slot-holding parents' names kept working: `transcode-fanout`, `transcode-split` and `range-copy` now start
their flow (`media-fanout`, `media-split-merge`, `media-range-copy`) and end at once, so no worker slot waits for
children. The result names the execution to follow; the execution's output is what the parent used to return.
"""
from __future__ import annotations

from typing import Any

from workers.context import SubmissionRefused
from workers.media import BadEvent


def flow_name(context: Any, old_name: str, flow: str) -> str:
    """The flow deployed beside this function: `deploy-media --prefix p-` names both `p-<name>`."""
    prefix = context.function[:-len(old_name)] if context.function.endswith(old_name) else ""
    return prefix + flow


def start_flow(context: Any, flow: str, payload: dict[str, Any], name: str) -> dict[str, Any]:
    """Start `flow` under `name` (derived from this invocation, so a retried attempt adopts the execution it
    started before instead of starting a second one); returns where to follow it."""
    try:
        started = context.start_execution(flow, payload, name=name)
        status = started["status"]
    except SubmissionRefused as exc:
        if exc.code == "FlowNotFound":
            raise BadEvent(f"flow {flow!r} is not deployed; run `taskservice functions deploy-media`") from None
        if exc.code != "ExecutionAlreadyExist":
            raise
        status = "adopted"
        context.logger.info("execution %s of %s was started by an earlier attempt", name, flow)
    follow = f"/v1/flows/{flow}/executions/{name}"
    context.logger.info("started flow execution %s/%s: follow it with GET %s", flow, name, follow)
    return {"flow": flow, "executionName": name, "status": status, "follow": follow}
