"""Serving the API: gunicorn in production (`taskservice api`), werkzeug's threaded server in `taskservice dev`."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.factory()  # called in each worker after fork: every worker gets its own pools


def serve_gunicorn(factory: Callable[[], Flask], *, host: str, port: int, workers: int, worker_class: str = "sync",
                   threads: int = 4) -> None:
    """`worker_class` sync or gthread (`threads` per worker): chosen by measurement, see bench/README.md."""
    workers = workers or 2 * (os.cpu_count() or 1) + 1
    _Gunicorn(factory, {"bind": f"{host}:{port}", "workers": workers, "worker_class": worker_class,
                        "threads": threads if worker_class == "gthread" else 1,
                        "accesslog": None, "errorlog": "-", "loglevel": "info", "timeout": 60,
                        "preload_app": False}).run()


def serve_dev(app: Flask, *, host: str, port: int, on_ready: Callable[[int], None] | None = None) -> None:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    if on_ready is not None:
        on_ready(server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
