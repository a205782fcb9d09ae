"""An upstream gate for tests/tcp_relay.py that stops a consumer's acknowledgements at a moment the test chooses:
once armed, the first basic.ack a client sends, and everything that client sends after it, never reach the broker
(the connection stays up, so the broker does not requeue anything until the relay closes it).

This makes "the batch is in the ledger but the broker has not had its acknowledgement" certain rather than a matter
of when a SIGKILL lands: a consumer acknowledges only after its ledger commit, so a held acknowledgement is proof of
exactly that state. It reads the AMQP 0-9-1 frames of the client's byte stream: the 8-byte protocol header, then
frames of type (1 byte), channel (2), payload size (4), payload, and the frame end 0xCE; a method frame's payload
starts with its class and method ids, 60 and 80 for basic.ack."""
from __future__ import annotations

import threading

from tests.tcp_relay import Gate

PROTOCOL_HEADER_SIZE = 8
FRAME_HEADER_SIZE = 7
METHOD_FRAME = 1
BASIC_ACK = (60).to_bytes(2, "big") + (80).to_bytes(2, "big")


class AckHold:
    """`relay.forward(..., upstream_gate=hold.gate)`; `arm()`; then `holding` is set once an acknowledgement was
    held, and `held_acks` counts the acknowledgements held so far (each names one message the broker still thinks
    unacknowledged)."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.held_acks = 0

    def arm(self) -> None:
        self.armed.set()

    def gate(self) -> Gate:
        """The gate of one connection: it passes whole frames only, so an acknowledgement is never half sent."""
        pending = bytearray()
        header_seen = False
        holding = False

        def feed(data: bytes) -> bytes:
            nonlocal header_seen, holding
            pending.extend(data)
            passed = bytearray()
            while True:
                if not header_seen:
                    if len(pending) < PROTOCOL_HEADER_SIZE:
                        break
                    size, header_seen = PROTOCOL_HEADER_SIZE, True
                else:
                    if len(pending) < FRAME_HEADER_SIZE:
                        break
                    size = FRAME_HEADER_SIZE + int.from_bytes(pending[3:7], "big") + 1
                    if len(pending) < size:
                        break
                    if pending[0] == METHOD_FRAME and pending[7:11] == BASIC_ACK and (holding or self.armed.is_set()):
                        holding = True
                        self.held_acks += 1
                        self.holding.set()
                if not holding:
                    passed.extend(pending[:size])
                del pending[:size]
            return bytes(passed)

        return feed
