"""The running service as the browser tests see it, as the `console` fixture (browser/conftest.py) hands it out."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import requests
from playwright.sync_api import Page

from taskservice.services import Services


class ApiSession(requests.Session):
    """A requests session that resolves paths against the server's base URL, so the `deploy` and `submit` fixtures
    work on it as on a Flask test client."""

    def __init__(self, base: str, secret: str) -> None:
        super().__init__()
        self.base = base
        self.headers["Authorization"] = f"Bearer {secret}"

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        return super().request(method, target if "://" in target else self.base + target, *args, **kwargs)


@dataclass
class Console:
    """Its URL, an admin API token, an API session with it and the services beside it."""

    base: str
    services: Services
    admin_secret: str
    api: ApiSession

    def token(self, role: str = "admin") -> str:
        return self.services.tokens.create(f"browser_{uuid.uuid4().hex[:8]}", role)[1]

    def sign_in(self, page: Page, secret: str | None = None) -> None:
        page.goto(f"{self.base}/login")
        page.fill("#token", secret or self.admin_secret)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.base}/")
