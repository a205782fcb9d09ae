"""The Alembic boundary: upgrade a ledger to the newest schema, and compare migrations with the models."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from taskservice.errors import ConfigError
from taskservice.ledger.models import Base

SOURCE_TREE_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def migrations_dir() -> Path:
    """Where the Alembic scripts are: in an installed wheel the top-level migrations/ travels as the package
    taskservice._migrations (setup.py maps it); running from a checkout, it is the source tree's migrations/."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("taskservice._migrations")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(location) for location in spec.submodule_search_locations)
    candidates.append(SOURCE_TREE_MIGRATIONS)
    for candidate in candidates:
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise FileNotFoundError(f"migrations not found (looked in {', '.join(map(str, candidates))}); install "
                            "taskservice from its wheel or run it from its source tree")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def differences(engine: Engine) -> list[Any]:
    """What the models have that the migrated database lacks (or the reverse); empty when they agree."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def ensure_current(engine: Engine) -> None:
    """Refuse to serve or work on a ledger whose schema is not the one this code expects."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ConfigError(f"the ledger at {engine.url.render_as_string(hide_password=True)} is at schema revision "
                          f"{current or '(none)'}, this code needs {head}: run `taskservice migrate` first")
