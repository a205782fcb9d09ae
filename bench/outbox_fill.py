"""Fill the outbox with real destination records, through the ledger's own terminal transition.

Each record comes from what a worker does (`create_invocation` → `claim` → `succeed`, as the relay tests'
`finish_invocations` does), so the outbox row is the one `record_outcome` writes in the transition's transaction, not
a hand-made imitation. That path costs about 4 ms of client CPU per record, so the work is split over a few child
processes (`python -m bench.outbox_fill FUNCTION START STOP`), started and stopped through the rig's ProcessSet like
every other process of the bench. Payloads and results are shaped like an order service's, so that a record is about
400 bytes of JSON.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `bench` and the service importable from the source tree
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import BenchError  # noqa: E402

if TYPE_CHECKING:
    from bench.rig import Rig

FILLER = "bench-filler"


def order_event(n: int) -> dict[str, Any]:
    """The submitted payload of invocation `n`: small, varied, realistic."""
    return {"orderId": f"ord_{n:08d}", "sku": f"SKU-{n % 997:04d}", "qty": 1 + n % 3}


def order_result(n: int) -> dict[str, Any]:
    """What the handler of invocation `n` returned."""
    return {"status": "accepted", "invoice": f"inv_{n:08d}"}  # with the envelope: about 415 bytes of record


def finish_range(function: str, start: int, stop: int) -> None:
    """Drive invocations `start`..`stop-1` of `function` to Succeeded; each leaves one outbox row behind."""
    from taskservice.config import Settings
    from taskservice.db import make_engine
    from taskservice.ledger import Ledger
    from taskservice.ledger.records import Claim

    engine = make_engine(Settings.from_env().resolved_database_url)
    ledger = Ledger(engine)
    try:
        for n in range(start, stop):
            payload = json.dumps(order_event(n), separators=(",", ":"))
            invocation = ledger.create_invocation(function, f"bulk_{n}", str(uuid.uuid4()), payload)
            claim = ledger.claim(invocation.pk, FILLER, 60)
            if not isinstance(claim, Claim):
                raise RuntimeError(f"could not claim invocation {invocation.invocation_id}: {claim!r}")
            if not ledger.succeed(invocation.pk, claim.invocation.attempts, order_result(n)):
                raise RuntimeError(f"could not finish invocation {invocation.invocation_id}")
    finally:
        engine.dispose()


def fill(rig: Rig, function: str, count: int, *, processes: int = 2) -> float:
    """Leave `count` pending records for `function`'s destination; returns how long it took (seconds)."""
    from bench.rig import venv_tool

    started = time.monotonic()
    bounds = [count * i // processes for i in range(processes + 1)]
    children = [rig.procs.start(f"fill-{function}-{i}", [venv_tool("python"), "-m", "bench.outbox_fill", function,
                                                         str(bounds[i]), str(bounds[i + 1])])
                for i in range(processes)]
    failed = []
    for child in children:
        rig.procs.wait_with_rusage(child)
        if child.popen.returncode != 0:
            failed.append(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")
        rig.procs.stop(child)  # already reaped: only forgets it
    if failed:
        raise BenchError("filling the outbox failed: " + "\n".join(failed))
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    function, start, stop = argv[0], int(argv[1]), int(argv[2])
    finish_range(function, start, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
