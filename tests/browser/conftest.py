"""Browser tests: Debian's Chromium driven by Playwright against a real `taskservice api` (gunicorn, sign-in
required) and a real worker, on the embedded backend. A missing Chromium fails the run; it is never skipped.

Screenshots of every page land in tests/artifacts/ for a person to look at.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, sync_playwright

from taskservice.config import Settings
from taskservice.services import Services
from tests.conftest import FAST, REPO, Backend, ServiceProcess, WorkerProcess, free_port, migrated, wait_for_health

CHROMIUM = os.environ.get("TASKSERVICE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = REPO / "tests" / "artifacts"


class ApiProcess(ServiceProcess):
    ready_marks = (b"Listening at",)

    def __init__(self, backend: Backend, port: int, log_path: Path, **overrides: Any) -> None:
        super().__init__(backend, ["api", "--port", str(port), "--workers", "2"], log_path, **overrides)


@dataclass
class Console:
    """The running service as the browser tests see it: its URL, an admin API token and the services beside it."""

    base: str
    services: Services
    admin_secret: str
    api: requests.Session

    def token(self, role: str = "admin") -> str:
        return self.services.tokens.create(f"browser_{uuid.uuid4().hex[:8]}", role)[1]

    def deploy(self, name: str, handler: str, **config: Any) -> None:
        answer = self.api.put(f"{self.base}/v1/functions/{name}", json={"handler": handler, **config})
        assert answer.status_code in (200, 201), answer.text

    def invoke(self, name: str, payload: Any, invocation_id: str) -> None:
        answer = self.api.post(f"{self.base}/v1/functions/{name}/invocations", json=payload,
                               headers={"X-Invocation-Id": invocation_id})
        assert answer.status_code == 202, answer.text

    def sign_in(self, page: Page, secret: str | None = None) -> None:
        page.goto(f"{self.base}/login")
        page.fill("#token", secret or self.admin_secret)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.base}/")


@pytest.fixture(scope="session")
def browser_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    yield from migrated(Backend("embedded", Settings(data_dir=tmp_path_factory.mktemp("browser"), **FAST)))


@pytest.fixture(scope="session")
def console(browser_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    logs = tmp_path_factory.mktemp("browser-logs")
    port = free_port()
    server = ApiProcess(browser_backend, port, logs / "api.log", auth=True)
    worker = WorkerProcess(browser_backend, 2, logs / "worker.log")
    services = Services.build(browser_backend.settings)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, server.proc, server.log_path)
        secret = services.tokens.create("browser_admin", "admin")[1]
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {secret}"
        yield Console(base, services, secret, api)
    finally:
        worker.stop()
        server.stop()
        services.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: `make system-packages` (apt-get install chromium)",
                    pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context per test: its own cookies, so every test signs in as somebody of its own."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)
