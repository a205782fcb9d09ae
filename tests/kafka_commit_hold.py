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

from tests.tcp_relay import RequestHold

SIZE_FIELD = 4
OFFSET_COMMIT = (8).to_bytes(2, "big")


def kafka_request(pending: bytearray, at_start: bool) -> tuple[int, bool] | None:
    """The next request of a client's Kafka stream; True for an OffsetCommit."""
    if len(pending) < SIZE_FIELD + 2:
        return None
    size = SIZE_FIELD + int.from_bytes(pending[:SIZE_FIELD], "big")
    if len(pending) < size:
        return None
    return size, pending[SIZE_FIELD:SIZE_FIELD + 2] == OFFSET_COMMIT


def commit_hold() -> RequestHold:
    """A hold whose `held` counts OffsetCommit requests."""
    return RequestHold(kafka_request)
