"""A small TCP relay: one asyncio loop in a daemon thread forwards each listening address to a target. Tests get it
through the `tcp_relay` fixture; `close()` ends every listener and connection at once, as a cut link would. A gate
on the upstream direction (`upstream_gate`) sees every chunk a client sends and passes on only what it returns.

For the multi-host tests: the machine's Postgres and RabbitMQ listen on 127.0.0.1 only; a relay bound to the host
side of a namespace's veth makes them reachable from inside the namespace, and the connections arrive from 127.0.0.1
(RabbitMQ lets `guest` in from loopback only). Cutting the veth leaves the relay's connections hanging exactly as a
partition would: no RST, no FIN, just silence."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

CHUNK = 65536
Gate = Callable[[bytes], bytes]  # a chunk from the client → the bytes to pass on now
# What a client sent so far, and whether it is the start of its stream → None while the next unit (frame, request)
# is incomplete, else (its size in bytes, whether it is the kind a RequestHold waits for).
Framer = Callable[[bytearray, bool], "tuple[int, bool] | None"]


class TcpRelay:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.Task[None]] = set()
        self.accepted: Counter[tuple[str, int]] = Counter()  # per listening address, for diagnostics
        self.thread = threading.Thread(target=self.loop.run_forever, name="tcp-relay", daemon=True)
        self.thread.start()

    def forward(self, listen_host: str, listen_port: int, target_host: str, target_port: int, *,
                upstream_gate: Callable[[], Gate] | None = None) -> int:
        """Listen on listen_host:listen_port (0: a free port) and relay every connection to target_host:target_port;
        `upstream_gate()`, if given, makes each connection's gate. Returns the port it listens on."""
        address: list[tuple[str, int]] = []  # the address it listens on, known once the server is up

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted[address[0]] += 1
            task = asyncio.current_task()
            assert task is not None
            self.connections.add(task)
            try:
                try:
                    up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
                except OSError:
                    writer.close()
                    return
                await asyncio.gather(_pipe(reader, up_writer, None if upstream_gate is None else upstream_gate()),
                                     _pipe(up_reader, writer))
            finally:
                self.connections.discard(task)
                writer.close()

        async def start() -> asyncio.AbstractServer:
            server = await asyncio.start_server(serve, listen_host, listen_port, reuse_address=True,
                                                start_serving=False)
            address.append((listen_host, int(server.sockets[0].getsockname()[1])))
            await server.start_serving()
            return server

        self.servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10))
        return address[0][1]

    def close(self) -> None:
        """Stop listening and drop every connection through the relay (idempotent)."""
        async def shutdown() -> None:
            for server in self.servers:
                server.close()
            for task in list(self.connections):
                task.cancel()
            await asyncio.gather(*self.connections, return_exceptions=True)

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: Gate | None = None) -> None:
    """Copy one direction until EOF or an error, then close the other side too (neither protocol half-closes)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data if gate is None else gate(data))
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        return  # the link was cut or the peer went away: the finally closes the other side
    finally:
        _abort(writer)


def _abort(writer: Any) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


class RequestHold:
    """Upstream gates (`relay.forward(..., upstream_gate=hold.gate)`) that, once armed, hold the first unit of the
    kind `framer` recognises that a client sends on a connection, and everything it sends after it on that
    connection: none of it reaches the target (the connection stays up, so the target sees neither the request nor
    an error until the relay closes it and drops what it held). Whole units only, so nothing is ever half sent.
    `holding` is set once a connection holds; `held` counts the units of that kind held so far. `disarm()` lets
    connections made afterwards pass everything (those already holding keep holding)."""

    def __init__(self, framer: Framer) -> None:
        self.framer = framer
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.held = 0

    def arm(self) -> None:
        self.armed.set()

    def disarm(self) -> None:
        self.armed.clear()

    def gate(self) -> Gate:
        pending = bytearray()
        at_start = True
        holding = False

        def feed(data: bytes) -> bytes:
            nonlocal at_start, holding
            pending.extend(data)
            passed = bytearray()
            while (unit := self.framer(pending, at_start)) is not None:
                size, wanted = unit
                at_start = False
                if wanted and (holding or self.armed.is_set()):
                    holding = True
                    self.held += 1
                    self.holding.set()
                if not holding:
                    passed.extend(pending[:size])
                del pending[:size]
            return bytes(passed)

        return feed
