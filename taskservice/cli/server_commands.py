"""Commands that run parts of the service: dev, api, worker, migrate."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from taskservice.config import Settings
from taskservice.errors import ConfigError
from taskservice.lifetime import die_with_parent

#: How long a server process waits at start-up for a ledger that is briefly unreachable.
LEDGER_PATIENCE_S = 30.0
#: How long `taskservice dev` waits for its children before it prints its addresses anyway.
READY_TIMEOUT_S = 60.0
#: Tells the parent (`taskservice dev`) when this process is up; not meant to be typed.
ready_file_option = click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                                 hidden=True)


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def _migrate(settings: Settings) -> str | None:
    from taskservice import migrate as migrations
    from taskservice.db import make_engine

    engine = make_engine(settings.resolved_database_url)
    try:
        migrations.upgrade(engine)
        return migrations.current_revision(engine)
    finally:
        engine.dispose()


def require_current_schema(settings: Settings, *, patience_s: float = LEDGER_PATIENCE_S) -> None:
    """Refuse to start on an unmigrated ledger. A ledger that is briefly away (a restart while this process starts)
    is waited for, saying so, for up to `patience_s`: a blip must not turn into a crash loop."""
    from taskservice import migrate as migrations
    from taskservice.db import is_outage, make_engine

    engine = make_engine(settings.resolved_database_url)
    deadline = time.monotonic() + patience_s
    try:
        while True:
            try:
                migrations.ensure_current(engine)
                return
            except ConfigError as exc:
                raise click.ClickException(exc.message) from None
            except Exception as exc:  # the database itself is unreachable
                if not is_outage(exc) or time.monotonic() >= deadline:
                    raise click.ClickException(f"cannot open the ledger at "
                                               f"{_redact(settings.resolved_database_url)}: {exc}") from None
                click.echo(f"waiting for the ledger at {_redact(settings.resolved_database_url)} "
                           f"({type(exc).__name__})…", err=True)
                time.sleep(1.0)
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
    from taskservice.api.server import serve_gunicorn
    from taskservice.app import create_app

    settings = load_settings(api_host=host, api_port=port, api_workers=workers)
    require_current_schema(settings)
    serve_gunicorn(lambda: create_app(settings), host=settings.api_host, port=settings.api_port,
                   workers=settings.api_workers, worker_class=settings.api_worker_class, threads=settings.api_threads)


@click.command()
@click.option("--concurrency", "-c", type=int, default=None, help="Handler processes (default: number of cores).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--name", default=None, help="Celery node name (default celery@hostname).")
@click.option("--quiet", is_flag=True, help="No Celery banner and no superuser warning at startup.")
@ready_file_option
@click.option("--health-port", type=click.IntRange(0, 65535), default=None,
              help="Answer GET /readyz and /healthz on this port (for probes; no Celery broadcast).")
@click.option("--health-host", default="0.0.0.0", show_default=True, help="Interface for --health-port.")
@click.option("--executor-max-attempts", type=click.IntRange(0), default=None,
              help="Attempts a warm executor runs before it is replaced (default 100; 0 = a fresh fork per "
                   "attempt). Env TASKSERVICE_EXECUTOR_MAX_ATTEMPTS.")
@click.option("--executor-max-rss-mb", type=click.IntRange(16), default=None,
              help="Replace a warm executor whose RSS passes this many MiB (default 1024). "
                   "Env TASKSERVICE_EXECUTOR_MAX_RSS_MB.")
def worker(concurrency: int | None, loglevel: str, name: str | None, quiet: bool, ready_file: Path | None,
           health_port: int | None, health_host: str, executor_max_attempts: int | None,
           executor_max_rss_mb: int | None) -> None:
    """Run a Celery worker (prefork) with the lease reaper beside it; each pool slot runs attempts in a warm
    executor process (README, "Workers")."""
    from workers.celery_app import run_worker

    settings = load_settings(worker_concurrency=concurrency, executor_max_attempts=executor_max_attempts,
                             executor_max_rss_mb=executor_max_rss_mb)
    require_current_schema(settings)
    run_worker(settings, concurrency=settings.worker_concurrency or os.cpu_count() or 1, loglevel=loglevel,
               name=name, quiet=quiet, ready_file=ready_file, health_port=health_port, health_host=health_host)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--port", type=int, default=None, help="API and console port (default 8000).")
@click.option("--concurrency", "-c", type=int, default=2, show_default=True, help="Handler processes.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the embedded ledger, broker and objects live (default ./var).")
@click.option("--auth", is_flag=True, help="Require tokens and console sign-in, as `taskservice api` does.")
@click.option("--verbose", "-v", is_flag=True,
              help="Also show Celery's banner and startup warnings, and the children's INFO logs.")
def dev(port: int | None, concurrency: int, data_dir: Path | None, auth: bool, verbose: bool) -> None:
    """API, console, worker, relay, flow engine, timer scheduler and queue consumer in one command, on the embedded
    default unless TASKSERVICE_* says otherwise.
    Open (no sign-in) and bound to 127.0.0.1 unless --auth."""
    from taskservice.api.server import serve_dev
    from taskservice.app import create_app

    settings = load_settings(api_port=port, data_dir=data_dir)
    revision = _migrate(settings)
    env = {**os.environ, **settings.to_env()}
    me = [sys.executable, "-m", "taskservice.cli"]
    loglevel = ["--loglevel", "INFO" if verbose else "WARNING"]
    ready_dir = Path(tempfile.mkdtemp(prefix="taskservice-dev-"))
    commands = {"worker": ["worker", "--concurrency", str(concurrency), *([] if verbose else ["--quiet"])],
                "relay": ["relay"], "engine": ["engine"], "scheduler": ["scheduler"], "consumer": ["consume"]}
    if settings.kafka_bootstrap:  # Kafka triggers run only where a broker is configured
        commands["ingest"] = ["ingest"]
    children = {name: _child([*me, *command, *loglevel, "--ready-file", str(ready_dir / name)], env)
                for name, command in commands.items()}
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
        click.echo(f"  engine    flow executions, pid {children['engine'].pid}")
        click.echo(f"  scheduler timer triggers, pid {children['scheduler'].pid}")
        click.echo(f"  consumer  queue triggers, pid {children['consumer'].pid}")
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
        # The addresses come last, once the children have said what they had to say, so they stay on the screen.
        for name in _wait_until_ready({name: ready_dir / name for name in children}, READY_TIMEOUT_S):
            click.echo(f"the {name} is not ready after {READY_TIMEOUT_S:.0f} s; going on without waiting", err=True)
        serve_dev(app, host="127.0.0.1", port=settings.api_port, on_ready=banner)
    except KeyboardInterrupt:
        click.echo("stopping…")
    finally:
        stopping.set()
        for proc in children.values():
            _stop_group(proc)
        shutil.rmtree(ready_dir, ignore_errors=True)
    for name, proc in children.items():
        if proc.returncode not in (0, -signal.SIGTERM, None):
            raise click.ClickException(f"the {name} exited with status {proc.returncode}; see its output above")


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@ready_file_option
def relay(loglevel: str, ready_file: Path | None) -> None:
    """Deliver destination records from the outbox (at least once, with backoff). Run as many as you like."""
    from taskservice.services import Services, build_relay

    settings = load_settings()
    require_current_schema(settings)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/relay] %(message)s")
    services = Services.build(settings)
    the_relay = build_relay(services, f"{socket.gethostname()}:{os.getpid()}")
    signal.signal(signal.SIGTERM, lambda *_: the_relay.stop())
    if ready_file is not None:
        ready_file.touch()
    try:
        the_relay.run_forever()
    except KeyboardInterrupt:
        the_relay.stop()
    finally:
        services.close()


def _child(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process of `dev`'s own: in its own session (a Ctrl-C reaches dev only, which stops it in order), and told
    by the kernel with SIGTERM when dev dies, even by SIGKILL, so that it drains and exits instead of running on."""
    return subprocess.Popen(argv, env=env, start_new_session=True,
                            preexec_fn=lambda: die_with_parent(signal.SIGTERM))


def _wait_until_ready(ready_files: dict[str, Path], timeout_s: float) -> list[str]:
    """Wait until every child has created its ready file; the names of those that did not in time.

    A child that dies instead is not waited for here: its watcher thread interrupts the main thread."""
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [name for name, path in ready_files.items() if not path.exists()]
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(0.05)


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
