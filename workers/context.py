"""The `context` a handler receives (design §2). Lives in the handler's own process and talks to the worker through
a pipe, so nothing a handler does can touch the worker's database or broker connections."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, BinaryIO

from taskservice.statuses import TERMINAL

if TYPE_CHECKING:
    from taskservice.storage import Storage
    from taskservice.storage.events import ObjectEvent



class Channel:
    """JSON lines to the worker, and replies back for the calls that need one (fan-out submissions)."""

    def __init__(self, to_worker: BinaryIO, from_worker: BinaryIO) -> None:
        self._out = to_worker
        self._in = from_worker
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            self._out.write(data)
            self._out.flush()

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._out.write((json.dumps(message, separators=(",", ":")) + "\n").encode())
            self._out.flush()
            reply = self._in.readline()
        if not reply:
            raise RuntimeError("the worker closed the channel")
        answer: dict[str, Any] = json.loads(reply)
        return answer

    def receive(self) -> str:
        """One line from the worker outside a call (a warm executor's next job arrives this way)."""
        with self._lock:
            return self._in.readline().decode()

    def close(self) -> None:
        """End of the attempt: a warm executor closes its ends so the worker sees the attempt's channel end."""
        with self._lock:
            for stream in (self._out, self._in):
                with contextlib.suppress(OSError):
                    stream.close()


class _ChannelLogHandler(logging.Handler):
    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            at = datetime.fromtimestamp(record.created, timezone.utc).isoformat()
            self.channel.send({"t": "log", "at": at, "level": record.levelname, "msg": message})
        except Exception:  # a log line must never break the handler
            self.handleError(record)


class SubmissionRefused(Exception):
    """A child invocation was refused (bad input, duplicate id, unknown function); `code` says which."""

    def __init__(self, code: str, message: str, existing: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.existing = existing


class InvalidEvent(Exception):
    """Raise from a handler when the event itself is wrong (a bad key, an unsafe input): the invocation ends
    Invalid at once instead of being retried, since no retry could ever succeed."""


class StopRequested(Exception):
    """Raised by `Context.wait_for` when the worker asked this attempt to stop while it waited for children."""


class Context:
    def __init__(self, channel: Channel, *, request_id: str, invocation_id: str, function: str, attempt: int,
                 timeout_s: int, storage_url: str = "", storage_endpoints: str = "") -> None:
        self._channel = channel
        self._storage_url = storage_url
        self._storage_endpoints = storage_endpoints
        self._endpoints: dict[str, Storage] = {}
        self._storage: Storage | None = None
        self.request_id = request_id
        self.invocation_id = invocation_id
        self.function = function
        self.attempt = attempt
        self.timeout_s = timeout_s
        self._stopping = False
        self.logger = logging.getLogger(f"taskservice.handler.{function}")
        self.logger.handlers[:] = [_ChannelLogHandler(channel)]
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    @property
    def stopping(self) -> bool:
        """True once the worker asked this attempt to stop (SIGTERM); a cooperative handler returns soon after."""
        return self._stopping

    def _mark_stopping(self) -> None:
        self._stopping = True

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress (0..100); shown in the API, the CLI's --wait bar and the console."""
        percent = max(0.0, min(100.0, float(percent)))
        self._channel.send({"t": "progress", "percent": percent, "msg": str(message)[:1024]})

    def submit(self, function: str, payload: Any, *, invocation_id: str | None = None) -> dict[str, Any]:
        """Submit a child invocation through the service's one submission path; returns its id and status."""
        reply = self._channel.call({"t": "submit", "function": function, "payload": payload,
                                    "invocation_id": invocation_id})
        if "error" in reply:
            raise SubmissionRefused(reply["error"]["code"], reply["error"]["message"], reply.get("existing"))
        return reply

    def start_execution(self, flow: str, payload: dict[str, Any], *, name: str) -> dict[str, Any]:
        """Start an execution of a deployed flow (what `POST /v1/flows/{flow}/executions` does) and return at once
        with {"executionName", "flow", "requestId", "status"}: a handler hands long orchestration to the flow engine
        instead of waiting in its worker slot. A taken name raises SubmissionRefused("ExecutionAlreadyExist")."""
        reply = self._channel.call({"t": "start_execution", "flow": flow, "payload": payload, "name": name})
        if "error" in reply:
            raise SubmissionRefused(reply["error"]["code"], reply["error"]["message"], reply.get("existing"))
        return reply

    def children_status(self, children: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """One ledger read of this invocation's children, given as (function, invocation id) pairs: each answer
        has invocationId, function, status, attempts, progress, result, error and errorType."""
        reply = self._channel.call({"t": "children", "children": [list(c) for c in children]})
        if "error" in reply:
            raise SubmissionRefused(reply["error"]["code"], reply["error"]["message"])
        items: list[dict[str, Any]] = reply["items"]
        return items

    def wait_for(self, children: Sequence[tuple[str, str]], *, poll_s: float = 0.5,
                 on_progress: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """Wait until every child has ended; returns their final status documents, in the given order.

        A waiting parent keeps its worker slot (one process, mostly asleep), so a worker pool must have more slots
        than parents waiting at once, or the children never start. Raises StopRequested promptly once this
        attempt is asked to stop (the stop itself cascades to the children through the ledger)."""
        while True:
            if self.stopping:
                raise StopRequested("stop requested while waiting for child invocations")
            items = self.children_status(children)
            if on_progress is not None:
                on_progress(items)
            if all(item["status"] in TERMINAL for item in items):
                return items
            deadline = time.monotonic() + poll_s
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.05)

    @property
    def storage(self) -> Storage:
        """The service's object storage (TASKSERVICE_STORAGE_URL), opened in this process on first use."""
        if self._storage is None:
            from taskservice.storage import open_storage
            from taskservice.storage.events import NotifyingStorage

            if not self._storage_url:
                raise RuntimeError("this worker has no object storage configured")
            # Objects the handler writes fire storage triggers, as uploads reported by MinIO do.
            self._storage = NotifyingStorage(open_storage(self._storage_url), self._report_storage_events)
        return self._storage

    def _report_storage_events(self, events: list[ObjectEvent]) -> None:
        reply = self._channel.call({"t": "storage_events", "events": [
            {"event_name": e.event_name, "bucket": e.bucket, "key": e.key, "size": e.size, "etag": e.etag,
             "sequencer": e.sequencer, "time": e.time.isoformat()} for e in events]})
        if "error" in reply:
            raise SubmissionRefused(reply["error"]["code"], reply["error"]["message"])

    def storage_at(self, endpoint: str) -> Storage:
        """Another object storage this worker is configured for (TASKSERVICE_STORAGE_ENDPOINTS), by name: events name
        an endpoint rather than carry credentials."""
        if endpoint not in self._endpoints:
            from taskservice.storage import StorageError, open_storage, parse_endpoints

            urls = parse_endpoints(self._storage_endpoints)
            if endpoint not in urls:
                known = ", ".join(sorted(urls)) or "none (set TASKSERVICE_STORAGE_ENDPOINTS)"
                raise StorageError(f"unknown storage endpoint {endpoint!r}; configured: {known}")
            self._endpoints[endpoint] = open_storage(urls[endpoint])
        return self._endpoints[endpoint]

    @property
    def pid(self) -> int:
        return os.getpid()
