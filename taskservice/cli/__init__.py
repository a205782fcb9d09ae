"""The `taskservice` command. Reads the environment here (and in create_app), nowhere else."""
from __future__ import annotations

import os

import click

from taskservice.cli.client_commands import functions, invoke, tasks
from taskservice.cli.control_commands import retry, stop
from taskservice.cli.destination_commands import destinations, dlq
from taskservice.cli.flow_commands import engine, flows
from taskservice.cli.media_commands import deploy_media
from taskservice.cli.object_commands import objects
from taskservice.cli.server_commands import api, dev, migrate, relay, worker
from taskservice.cli.token_commands import tokens
from taskservice.cli.trigger_commands import consume, ingest, scheduler, triggers
from taskservice.client import DEFAULT_API_URL


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--api-url", envvar="TASKSERVICE_API_URL", default=DEFAULT_API_URL, show_default=True,
              help="API the client commands talk to.")
@click.version_option(package_name="taskservice")
@click.pass_context
def cli(ctx: click.Context, api_url: str) -> None:
    """taskservice: asynchronous invocations with a ledger, retries and destinations.

    \b
    Run everything locally:   taskservice dev
    Register a function:      taskservice functions deploy demo --handler workers.handlers.sleep:handler
    Invoke it and watch:      taskservice invoke demo -e '{"seconds": 3}' --wait
    Run a flow of functions:  taskservice flows deploy media -f flow.yaml && taskservice flows start media --wait
    """
    ctx.obj = {"api_url": api_url, "token": os.environ.get("TASKSERVICE_TOKEN")}


for command in (dev, api, worker, relay, migrate, functions, invoke, tasks, destinations, dlq, ingest, triggers,
                tokens, scheduler, consume, objects, engine, flows):
    cli.add_command(command)
tasks.add_command(stop)
tasks.add_command(retry)
functions.add_command(deploy_media)


def main() -> None:
    cli(prog_name="taskservice")


if __name__ == "__main__":
    main()
