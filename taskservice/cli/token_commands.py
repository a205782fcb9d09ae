"""`taskservice tokens create | list | revoke`: access tokens, managed directly in the ledger (you need one before
the API lets you in, so these commands cannot go through the API)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from taskservice.cli.output import print_json, print_table
from taskservice.cli.server_commands import load_settings, require_current_schema
from taskservice.errors import TaskServiceError
from taskservice.specs import READ_ONLY, ROLES

if TYPE_CHECKING:
    from taskservice.ledger.tokens import TokenStore


@contextmanager
def _store() -> Iterator[TokenStore]:
    from taskservice.db import make_engine
    from taskservice.ledger.tokens import TokenStore  # here: SQLAlchemy would cost every other command 0.6 s

    settings = load_settings()
    require_current_schema(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        yield TokenStore(engine)
    except TaskServiceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        engine.dispose()


@click.group()
def tokens() -> None:
    """Access tokens for the API (Authorization: Bearer …) and the console sign-in."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="admin", show_default=True,
              help=f"{READ_ONLY!r} may look at everything but not stop, retry, replay or deploy.")
def create(name: str, role: str) -> None:
    """Create token NAME and print it once (only its SHA-256 is stored)."""
    with _store() as store:
        token, secret = store.create(name, role)
    click.echo(secret)
    click.echo(f"token {token.name!r} ({token.role}) created; it is shown only now. Use it as "
               "TASKSERVICE_TOKEN for the CLI, 'Authorization: Bearer …' for the API, or to sign in to the console.",
               err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_tokens(as_json: bool) -> None:
    """Every token with its role and when it was last used (never the token itself)."""
    with _store() as store:
        found = store.list()
    rows = [{"name": t.name, "role": t.role, "createdAt": t.created_at.isoformat(),
             "lastUsedAt": t.last_used_at.isoformat() if t.last_used_at else None,
             "revokedAt": t.revoked_at.isoformat() if t.revoked_at else None} for t in found]
    if as_json:
        print_json(rows)
        return
    print_table(rows, [("NAME", lambda r: r["name"]), ("ROLE", lambda r: r["role"]),
                       ("CREATED", lambda r: r["createdAt"]), ("LAST USED", lambda r: r["lastUsedAt"]),
                       ("REVOKED", lambda r: r["revokedAt"])])


@tokens.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke token NAME: API calls and console sessions using it are refused from now on."""
    with _store() as store:
        store.revoke(name)
    click.echo(f"token {name!r} revoked")
