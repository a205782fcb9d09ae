"""How to reach the message broker: the URL and kombu transport options, shared by Celery dispatch and the
queue: destination so both talk to the same broker the same way."""
from __future__ import annotations

from typing import Any

from taskservice.config import Settings


def broker_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    """(url, transport_options). The embedded default is kombu's filesystem transport in DATA_DIR/broker, in the
    crash-safe variant of taskservice.embedded_broker."""
    url = settings.resolved_broker_url
    if url.startswith("filesystem"):
        from taskservice.embedded_broker import register

        folder = settings.embedded_broker_dir
        (folder / "control").mkdir(parents=True, exist_ok=True)
        url = f"{register()}://{url.split('://', 1)[1]}"
        return url, {"data_folder_in": str(folder), "data_folder_out": str(folder),
                     "control_folder": str(folder / "control"), "store_processed": False,
                     "polling_interval": 0.05}
    if url.startswith(("amqp", "pyamqp")):
        return url, {"confirm_publish": True}
    return url, {}
