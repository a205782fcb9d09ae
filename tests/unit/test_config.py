from __future__ import annotations

from pathlib import Path

import pytest

from taskservice.config import Settings
from taskservice.errors import ConfigError


def test_empty_environment_is_the_embedded_default(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/ledger.db"
    assert settings.resolved_broker_url.startswith("filesystem://")
    assert settings.is_embedded
    assert settings.max_payload_bytes == 128 * 1024


def test_prefixed_variables_are_read() -> None:
    settings = Settings.from_env({"TASKSERVICE_DATABASE_URL": "postgresql+psycopg://u@h/db",
                                  "TASKSERVICE_BROKER_URL": "amqp://guest:guest@h//",
                                  "TASKSERVICE_MAX_PAYLOAD_BYTES": "1024", "OTHER": "x"})
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.max_payload_bytes == 1024
    assert not settings.is_embedded


def test_a_misspelt_setting_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ConfigError, match="unknown setting TASKSERVICE_DATABSE_URL"):
        Settings.from_env({"TASKSERVICE_DATABSE_URL": "x"})


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TASKSERVICE_LEASE_S"):
        Settings.from_env({"TASKSERVICE_LEASE_S": "-1"})


def test_to_env_round_trips(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, lease_s=3.5, queue="q1")
    assert Settings.from_env(settings.to_env()) == settings
