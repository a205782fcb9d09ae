"""`objects put|get|ls`: object storage for people, through the same storage boundary handlers use. Runs where the
service's settings are (like `tokens`): an object put here fires the storage triggers watching it, so a file
dropped into the embedded default starts a transcode with no MinIO at all."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from taskservice.cli.output import print_table
from taskservice.storage import Storage


@contextmanager
def _storage() -> Iterator[Storage]:
    from taskservice.cli.server_commands import load_settings, require_current_schema
    from taskservice.services import Services
    from taskservice.storage import StorageError, open_storage
    from taskservice.storage.events import NotifyingStorage, ObjectEvent
    from taskservice.storage_events import StorageEvents

    settings = load_settings()
    require_current_schema(settings)
    services = Services.build(settings)
    fired: list[str] = []

    def publish(events: list[ObjectEvent]) -> None:
        published = StorageEvents(services.triggers, services.submitter).publish(events)
        fired.extend(f"{s['trigger']} → {s['function']}/{s['invocationId']}" for s in published.submitted)

    try:
        yield NotifyingStorage(open_storage(settings.resolved_storage_url), publish)
    except StorageError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        services.close()
    for line in fired:
        click.echo(f"triggered {line}")


@click.group()
def objects() -> None:
    """Put, get and list objects in the service's object storage (TASKSERVICE_STORAGE_URL)."""


@objects.command("put")
@click.argument("bucket")
@click.argument("key")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--content-type", default="application/octet-stream", show_default=True)
def put(bucket: str, key: str, file: Path, content_type: str) -> None:
    """Upload FILE as BUCKET/KEY (the bucket is made when missing); storage triggers watching it fire."""
    with _storage() as storage:
        storage.ensure_bucket(bucket)
        info = storage.upload(bucket, key, file, content_type=content_type)
        click.echo(f"put {info.bucket}/{info.key} ({info.size} bytes)")


@objects.command("get")
@click.argument("bucket")
@click.argument("key")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def get(bucket: str, key: str, file: Path) -> None:
    """Download BUCKET/KEY into FILE."""
    with _storage() as storage:
        info = storage.download(bucket, key, file)
        click.echo(f"got {info.bucket}/{info.key} ({info.size} bytes) → {file}")


@objects.command("ls")
@click.argument("bucket")
@click.option("--prefix", default="", help="Only keys starting with this.")
def ls(bucket: str, prefix: str) -> None:
    """List the objects of BUCKET."""
    with _storage() as storage:
        items = storage.list(bucket, prefix)
    print_table([{"key": i.key, "size": i.size} for i in items],
                [("KEY", lambda i: i["key"]), ("SIZE", lambda i: i["size"])])
