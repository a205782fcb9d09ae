"""Commands that run parts of the service: dev, api, worker, migrate."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from taskservice.config import Settings
from taskservice.errors import ConfigError


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def _migrate(settings: Settings) -> str | None:
    from taskservice import migrate as migrations
    from taskservice.db import make_engine

    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        migrations.upgrade(engine)
        return migrations.current_revision(engine)
    finally:
        engine.dispose()


def require_current_schema(settings: Settings) -> None:
    from taskservice import migrate as migrations
    from taskservice.db import make_engine

    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        migrations.ensure_current(engine)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    except Exception as exc:  # the database itself is unreachable
        raise click.ClickException(f"cannot open the ledger at {_redact(settings.resolved_database_url)}: {exc}") \
            from None
    finally:
        engine.dispose()


@click.command()
def migrate() -> None:
    """Upgrade the ledger schema to the newest migration."""
    settings = load_settings()
    revision = _migrate(settings)
    click.echo(f"ledger at {_redact(settings.resolved_database_url)} is at revision {revision}")


@click.command()
@click.option("--host", default=None, help="Interface to bind (default TASKSERVICE_API_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default TASKSERVICE_API_PORT or 8000).")
@click.option("--workers", type=int, default=None, help="gunicorn worker processes (default 2 × cores + 1).")
def api(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the REST API with gunicorn."""
    from taskservice import create_app
    from taskservice.api.server import serve_gunicorn

    settings = load_settings(api_host=host, api_port=port, api_workers=workers)
    require_current_schema(settings)
    serve_gunicorn(lambda: create_app(settings), host=settings.api_host, port=settings.api_port,
                   workers=settings.api_workers)


@click.command()
@click.option("--concurrency", "-c", type=int, default=None, help="Handler processes (default: number of cores).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--name", default=None, help="Celery node name (default celery@hostname).")
@click.option("--health-port", type=click.IntRange(0, 65535), default=None,
              help="Answer GET /readyz and /healthz on this port (for probes; no Celery broadcast).")
@click.option("--health-host", default="0.0.0.0", show_default=True, help="Interface for --health-port.")
def worker(concurrency: int | None, loglevel: str, name: str | None, health_port: int | None,
           health_host: str) -> None:
    """Run a Celery worker (prefork) with the lease reaper beside it."""
    from workers.celery_app import run_worker

    settings = load_settings(worker_concurrency=concurrency)
    require_current_schema(settings)
    run_worker(settings, concurrency=settings.worker_concurrency or os.cpu_count() or 1, loglevel=loglevel,
               name=name, health_port=health_port, health_host=health_host)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--port", type=int, default=None, help="API and console port (default 8000).")
@click.option("--concurrency", "-c", type=int, default=2, show_default=True, help="Handler processes.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the embedded ledger, broker and objects live (default ./var).")
@click.option("--auth", is_flag=True, help="Require tokens and console sign-in, as `taskservice api` does.")
def dev(port: int | None, concurrency: int, data_dir: Path | None, auth: bool) -> None:
    """API, console, worker and relay in one command, on the embedded default unless TASKSERVICE_* says otherwise.
    Open (no sign-in) and bound to 127.0.0.1 unless --auth."""
    from taskservice import create_app
    from taskservice.api.server import serve_dev

    settings = load_settings(api_port=port, data_dir=data_dir)
    revision = _migrate(settings)
    env = {**os.environ, **settings.to_env()}
    me = [sys.executable, "-m", "taskservice.cli"]
    children = {
        "worker": subprocess.Popen([*me, "worker", "--concurrency", str(concurrency), "--loglevel", "WARNING"],
                                   env=env, start_new_session=True),
        "relay": subprocess.Popen([*me, "relay", "--loglevel", "WARNING"], env=env, start_new_session=True),
    }
    if settings.kafka_bootstrap:  # Kafka triggers run only where a broker is configured
        children["ingest"] = subprocess.Popen([*me, "ingest", "--loglevel", "WARNING"], env=env,
                                              start_new_session=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stopping = threading.Event()
    for name, proc in children.items():
        threading.Thread(target=_exit_when_child_dies, args=(name, proc, stopping), daemon=True).start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(settings.merged(auth=auth))

    def banner(bound_port: int) -> None:
        base = f"http://127.0.0.1:{bound_port}"
        click.echo(click.style("taskservice dev is running", bold=True))
        click.echo(f"  API       {base}/v1   (OpenAPI: {base}/openapi.json)")
        click.echo(f"  health    {base}/healthz")
        click.echo(f"  ledger    {_redact(settings.resolved_database_url)} (revision {revision})")
        embedded = settings.resolved_broker_url.startswith("filesystem")
        click.echo(f"  broker    {_redact(settings.resolved_broker_url)}"
                   + (f" in {settings.embedded_broker_dir}" if embedded else ""))
        click.echo(f"  workers   {concurrency} handler process(es), pid {children['worker'].pid}")
        click.echo(f"  relay     delivering destination records, pid {children['relay'].pid}")
        if "ingest" in children:
            click.echo(f"  ingest    Kafka triggers from {settings.kafka_bootstrap}, pid {children['ingest'].pid}")
        click.echo(f"  console   {base}/")
        if auth:
            click.echo("  auth      tokens required (taskservice tokens create NAME); bound to 127.0.0.1 only")
        else:
            click.echo("  open mode: no authentication, bound to 127.0.0.1 only. Ctrl-C stops everything.")
        click.echo(f"  try:      TASKSERVICE_API_URL={base} taskservice functions deploy demo "
                   "--handler workers.handlers.sleep:handler")

    try:
        serve_dev(app, host="127.0.0.1", port=settings.api_port, on_ready=banner)
    except KeyboardInterrupt:
        click.echo("stopping…")
    finally:
        stopping.set()
        for proc in children.values():
            _stop_group(proc)
    for name, proc in children.items():
        if proc.returncode not in (0, -signal.SIGTERM, None):
            raise click.ClickException(f"the {name} exited with status {proc.returncode}; see its output above")


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
def relay(loglevel: str) -> None:
    """Deliver destination records from the outbox (at least once, with backoff). Run as many as you like."""
    from taskservice.services import Services, build_relay

    settings = load_settings()
    require_current_schema(settings)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/relay] %(message)s")
    services = Services.build(settings)
    the_relay = build_relay(services, f"{socket.gethostname()}:{os.getpid()}")
    signal.signal(signal.SIGTERM, lambda *_: the_relay.stop())
    try:
        the_relay.run_forever()
    except KeyboardInterrupt:
        the_relay.stop()
    finally:
        services.close()


def _exit_when_child_dies(name: str, proc: subprocess.Popen[bytes], stopping: threading.Event) -> None:
    proc.wait()
    if stopping.is_set():
        return
    click.echo(f"the {name} (pid {proc.pid}) exited with status {proc.returncode}; stopping", err=True)
    os.kill(os.getpid(), signal.SIGTERM)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Warm-stop the Celery main process (it stops its own pool), then kill whatever is left of its group.

    Signalling the pool processes directly would leave the main process waiting forever on a queue lock one of
    them held."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.terminate()
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
