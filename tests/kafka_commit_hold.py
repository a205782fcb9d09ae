"""An upstream gate for tests/tcp_relay.py that stops a Kafka consumer's offset commits at a moment the test chooses:
once armed, the first OffsetCommit request a client sends on a connection, and everything that client sends after
it on that connection, never reach the broker (the connection stays up, so the broker sees neither the commit nor
an error until the client goes away; then the relay drops what it held).

This makes "the batch is in the ledger but its offsets are not committed" certain rather than a matter of when a
SIGKILL lands: `taskservice ingest` commits a read's offsets only after its ledger insert returned (and commits
nothing by itself: no auto-commit, nothing on close), so a held OffsetCommit is proof of exactly that state.

The relay must carry every connection of the client, not only the bootstrap one: a Kafka client connects to the
addresses the broker advertises (metadata, FindCoordinator), so the broker has to advertise the relay's address
(`KafkaBroker(advertised_port=...)`). It reads the Kafka request framing of the client's byte stream: a 4-byte size,
then the request header, which starts with the int16 api_key (OffsetCommit is 8), int16 api_version and int32
correlation_id."""
from __future__ import annotations

import threading

from tests.tcp_relay import Gate

SIZE_FIELD = 4
OFFSET_COMMIT = (8).to_bytes(2, "big")


class CommitHold:
    """`relay.forward(..., upstream_gate=hold.gate)`; `arm()`; then `holding` is set once an OffsetCommit was held,
    and `held_commits` counts the OffsetCommit requests held so far. `disarm()` lets connections made afterwards
    pass everything (those already holding keep holding)."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.held_commits = 0

    def arm(self) -> None:
        self.armed.set()

    def disarm(self) -> None:
        self.armed.clear()

    def gate(self) -> Gate:
        """The gate of one connection: it passes whole requests only, so a commit is never half sent."""
        pending = bytearray()
        holding = False

        def feed(data: bytes) -> bytes:
            nonlocal holding
            pending.extend(data)
            passed = bytearray()
            while len(pending) >= SIZE_FIELD + 2:
                size = SIZE_FIELD + int.from_bytes(pending[:SIZE_FIELD], "big")
                if len(pending) < size:
                    break
                if pending[SIZE_FIELD:SIZE_FIELD + 2] == OFFSET_COMMIT and (holding or self.armed.is_set()):
                    holding = True
                    self.held_commits += 1
                    self.holding.set()
                if not holding:
                    passed.extend(pending[:size])
                del pending[:size]
            return bytes(passed)

        return feed
