"""`taskservice engine`: the flow engine process. (The client commands for flows are in `flows`.)"""
from __future__ import annotations

import logging
import signal
from pathlib import Path

import click

from taskservice.cli.server_commands import ready_file_option


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@ready_file_option
def engine(loglevel: str, ready_file: Path | None) -> None:
    """Advance flow executions as their steps end and their timers come due. Run as many as you like: each
    execution is advanced by one engine at a time, and a killed engine loses and doubles nothing."""
    from taskservice.cli.server_commands import load_settings, require_current_schema
    from taskservice.flows.engine import FlowEngine
    from taskservice.services import Services

    settings = load_settings()
    require_current_schema(settings)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/engine] %(message)s")
    services = Services.build(settings)
    the_engine = FlowEngine(services)
    signal.signal(signal.SIGTERM, lambda *_: the_engine.stop.set())
    if ready_file is not None:
        ready_file.touch()
    try:
        the_engine.run_forever()
    except KeyboardInterrupt:
        the_engine.stop.set()
    finally:
        services.close()
