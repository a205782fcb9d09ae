"""The relay gates that hold a Kafka client's offset commits (tests/kafka_commit_hold.py) and an AMQP client's
acknowledgements (tests/amqp_ack_hold.py) read their protocol's framing right however the stream is cut into chunks,
and hold from the first such request on only once armed."""
from __future__ import annotations

import struct

from tests.amqp_ack_hold import ack_hold
from tests.kafka_commit_hold import commit_hold
from tests.tcp_relay import Gate

FETCH, OFFSET_COMMIT, HEARTBEAT = 1, 8, 12


def request(api_key: int, correlation_id: int, body: bytes = b"x" * 20) -> bytes:
    header = struct.pack(">hhih", api_key, 7, correlation_id, 5) + b"tests"
    return struct.pack(">i", len(header) + len(body)) + header + body


def feed_in_chunks(gate_feed: Gate, stream: bytes, size: int) -> bytes:
    out = b""
    for start in range(0, len(stream), size):
        out += gate_feed(stream[start:start + size])
    return out


def test_unarmed_every_request_passes_whole_whatever_the_chunking() -> None:
    stream = request(FETCH, 1) + request(OFFSET_COMMIT, 2) + request(HEARTBEAT, 3)
    for size in (1, 3, 7, len(stream)):
        hold = commit_hold()
        assert feed_in_chunks(hold.gate(), stream, size) == stream
        assert not hold.holding.is_set() and hold.held == 0


def test_armed_the_first_commit_and_all_after_it_are_held_on_that_connection() -> None:
    before, commit, after = request(FETCH, 1), request(OFFSET_COMMIT, 2), request(HEARTBEAT, 3) + request(FETCH, 4)
    for size in (1, 5, 1000):
        hold = commit_hold()
        feed = hold.gate()
        assert feed_in_chunks(feed, before, size) == before
        hold.arm()
        assert feed_in_chunks(feed, commit + after, size) == b""
        assert hold.holding.is_set() and hold.held == 1
        hold.disarm()
        assert feed(request(OFFSET_COMMIT, 5)) == b"", "a connection that holds keeps holding"
        fresh = hold.gate()
        assert fresh(request(OFFSET_COMMIT, 6)) == request(OFFSET_COMMIT, 6), "disarmed: new connections pass"


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(class_id: int, method_id: int, args: bytes = b"\0" * 9) -> bytes:
    return frame(1, 1, struct.pack(">HH", class_id, method_id) + args)


def test_amqp_the_first_ack_after_arming_and_all_after_it_are_held() -> None:
    header, publish, body = b"AMQP\x00\x00\x09\x01", method(60, 40), frame(3, 1, b"hello")
    ack, heartbeat = method(60, 80), frame(8, 0, b"")
    before = header + method(60, 80) + publish + body  # an ack before arming passes
    for size in (1, 4, 1000):
        hold = ack_hold()
        feed = hold.gate()
        assert feed_in_chunks(feed, before, size) == before
        hold.arm()
        assert feed_in_chunks(feed, heartbeat, size) == heartbeat, "armed, other frames still pass"
        assert feed_in_chunks(feed, ack + publish + ack, size) == b""
        assert hold.holding.is_set() and hold.held == 2
