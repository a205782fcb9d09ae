"""Settings, read from the environment only by create_app() and the CLI.

Everything has an embedded default, so an empty environment runs the whole service on one machine with no servers:
SQLite ledger, kombu's filesystem transport as broker, a local directory as object storage.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taskservice.errors import ConfigError

ENV_PREFIX = "TASKSERVICE_"


class Settings(BaseModel):
    """The whole configuration of one process; passed down explicitly, never looked up globally."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default=Path("var"), description="where the embedded defaults keep their files")
    database_url: str = ""
    broker_url: str = ""
    storage_url: str = ""
    storage_endpoints: str = Field(default="", description="extra named storages for handlers, NAME=URL;NAME=URL "
                                                           "(range-copy's dst_endpoint)")
    queue: str = Field(default="taskservice.invocations", min_length=1, max_length=200)
    max_payload_bytes: int = Field(default=128 * 1024, ge=1, le=64 * 1024 * 1024)
    max_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024,
                                 description="the largest body of a bulk submission (…/invocations:batch)")
    lease_s: float = Field(default=30.0, gt=0, le=3600)
    heartbeat_s: float = Field(default=5.0, gt=0, le=600)
    reaper_interval_s: float = Field(default=2.0, gt=0, le=600)
    retry_base_s: float = Field(default=1.0, ge=0, le=3600)
    retry_max_s: float = Field(default=300.0, ge=0, le=86400)
    retention_s: int = Field(default=7 * 86400, ge=60)
    drain_s: float = Field(default=30.0, ge=0, le=86400, description="on SIGTERM, how long a worker lets running "
                                                                     "attempts finish before handing them back")
    max_log_lines: int = Field(default=10_000, ge=10)
    kafka_bootstrap: str = Field(default="", description="host:port[,host:port] of the Kafka brokers")
    webhook_allow: str = Field(default="", description="CIDRs/hosts webhooks may reach despite being private")
    relay_batch: int = Field(default=200, ge=1, le=10000)
    relay_lease_s: float = Field(default=30.0, gt=0, le=3600)
    relay_idle_s: float = Field(default=0.2, gt=0, le=60)
    relay_backoff_base_s: float = Field(default=1.0, ge=0, le=3600)
    relay_backoff_max_s: float = Field(default=300.0, ge=0, le=86400)
    relay_max_attempts: int = Field(default=100, ge=1, le=100000)
    auth: bool = Field(default=True, description="require API tokens and console sign-in (dev runs open)")
    secret_key: str = Field(default="", description="signs console sessions; set the same value on every API "
                                                    "machine (default: generated once into the data dir)")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_workers: int = Field(default=0, ge=0, le=256, description="0 = 2 x cores + 1")
    api_worker_class: Literal["sync", "gthread"] = Field(
        default="sync", description="gunicorn worker class (bench/README.md: sync measured fastest on 2 cores)")
    api_threads: int = Field(default=4, ge=1, le=256, description="threads per gunicorn worker with gthread")
    worker_concurrency: int = Field(default=0, ge=0, le=1024, description="0 = number of cores")
    executor_max_attempts: int = Field(default=100, ge=0, le=1_000_000,
                                       description="attempts a warm executor runs before a fresh one replaces it; "
                                                   "0 = no warm executors (a fresh fork per attempt)")
    executor_max_rss_mb: int = Field(default=1024, ge=16, le=1024 * 1024,
                                     description="a warm executor whose RSS passes this after an attempt is replaced")

    @field_validator("storage_endpoints")
    @classmethod
    def _endpoints_parse(cls, value: str) -> str:
        from taskservice.storage import parse_endpoints

        parse_endpoints(value)  # refuse a malformed list when the process starts, not at the first copy
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://localhost//"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'objects').resolve()}"

    @property
    def embedded_broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def is_embedded(self) -> bool:
        return self.resolved_database_url.startswith("sqlite") or self.resolved_broker_url.startswith("filesystem")

    def merged(self, **overrides: Any) -> Settings:
        return Settings(**{**self.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})

    def to_env(self) -> dict[str, str]:
        """The TASKSERVICE_* variables that recreate these settings in a child process."""
        defaults = Settings()
        return {f"{ENV_PREFIX}{name.upper()}": str(value) for name, value in self.model_dump().items()
                if value != getattr(defaults, name)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from TASKSERVICE_* variables; unknown TASKSERVICE_ names are an error, not a silent typo."""
        env = os.environ if environ is None else environ
        known = set(cls.model_fields)
        values: dict[str, Any] = {}
        for key, value in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX):].lower()
            if name in known:
                values[name] = value
            elif name not in _CLIENT_ONLY:
                names = ", ".join(sorted(ENV_PREFIX + k.upper() for k in known))
                raise ConfigError(f"unknown setting {key}; known: {names}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                                 for e in exc.errors())
            raise ConfigError(f"invalid configuration: {problems}") from exc


# Variables read by the CLI client rather than the server; tolerated by from_env().
_CLIENT_ONLY = {"api_url", "token"}
