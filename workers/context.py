"""The `context` a handler receives (design §2). Lives in the handler's own process and talks to the worker through
a pipe, so nothing a handler does can touch the worker's database or broker connections."""
from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any, BinaryIO


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


class Context:
    def __init__(self, channel: Channel, *, request_id: str, invocation_id: str, function: str, attempt: int,
                 timeout_s: int) -> None:
        self._channel = channel
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

    @property
    def pid(self) -> int:
        return os.getpid()
