"""The embedded broker: kombu's filesystem transport, made safe for several processes and for crashes.

kombu's own version writes a message file in place, and a reader may move and read it before the writer finished —
or after the writer was killed — and then fails on an empty document. Here a message is written under a hidden
temporary name and renamed into place (atomic on one filesystem), and a reader drops a file it cannot decode
instead of failing forever on it.
"""
from __future__ import annotations

import logging
import os
import uuid
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

log = logging.getLogger(__name__)
SCHEME = "taskservice-fs"


class Channel(filesystem.Channel):  # type: ignore[misc]
    def _put(self, queue: str, message: Any, **_: Any) -> None:  # type: ignore[override]  # kombu's two bases differ
        # kombu reads files in name order: a fixed-width nanosecond clock (one clock for every process on the
        # machine) keeps the queue first-in first-out, which the reaper's silent-doorbell count relies on.
        name = f"{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        temporary = os.path.join(self.data_folder_out, f".{name}.tmp")  # readers ignore names without the queue suffix
        try:
            with open(temporary, "wb") as fh:
                fh.write(str_to_bytes(dumps(message)))
            os.replace(temporary, final)
        except OSError as exc:
            raise ChannelError(f"cannot add message {name!r} to {self.data_folder_out}") from exc

    def _get(self, queue: str, timeout: Any = None) -> Any:  # type: ignore[override]  # kombu's bases differ
        while True:
            try:
                return super()._get(queue)
            except ValueError:  # JSONDecodeError: a file left behind by an older writer; it holds no message
                log.warning("dropped an unreadable message file in queue %s", queue)


class Transport(filesystem.Transport):  # type: ignore[misc]
    Channel = Channel
    driver_type = "filesystem"
    driver_name = "filesystem"


def register() -> str:
    """Make the transport known to kombu under SCHEME; returns the scheme."""
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
    return SCHEME
