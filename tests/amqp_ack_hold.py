"""An upstream gate for tests/tcp_relay.py that stops a consumer's acknowledgements at a moment the test chooses:
once armed, the first basic.ack a client sends, and everything that client sends after it, never reach the broker
(the connection stays up, so the broker does not requeue anything until the relay closes it).

This makes "the batch is in the ledger but the broker has not had its acknowledgement" certain rather than a matter
of when a SIGKILL lands: a consumer acknowledges only after its ledger commit, so a held acknowledgement is proof of
exactly that state. It reads the AMQP 0-9-1 frames of the client's byte stream: the 8-byte protocol header, then
frames of type (1 byte), channel (2), payload size (4), payload, and the frame end 0xCE; a method frame's payload
starts with its class and method ids, 60 and 80 for basic.ack."""
from __future__ import annotations

from tests.tcp_relay import RequestHold

PROTOCOL_HEADER_SIZE = 8
FRAME_HEADER_SIZE = 7
METHOD_FRAME = 1
BASIC_ACK = (60).to_bytes(2, "big") + (80).to_bytes(2, "big")


def amqp_frame(pending: bytearray, at_start: bool) -> tuple[int, bool] | None:
    """The next unit of a client's AMQP stream (the protocol header first, then frames); True for a basic.ack."""
    if at_start:
        return (PROTOCOL_HEADER_SIZE, False) if len(pending) >= PROTOCOL_HEADER_SIZE else None
    if len(pending) < FRAME_HEADER_SIZE:
        return None
    size = FRAME_HEADER_SIZE + int.from_bytes(pending[3:7], "big") + 1
    if len(pending) < size:
        return None
    return size, pending[0] == METHOD_FRAME and pending[7:11] == BASIC_ACK


def ack_hold() -> RequestHold:
    """A hold whose `held` counts acknowledgements, each naming one message the broker still thinks unacknowledged."""
    return RequestHold(amqp_frame)
