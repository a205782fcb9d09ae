"""Browser tests: Debian's Chromium driven by Playwright against a real `taskservice api` (gunicorn, sign-in
required) and a real worker, on the embedded backend. A missing Chromium fails the run; it is never skipped.

Screenshots of every page land in tests/artifacts/ for a person to look at.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from taskservice.services import Services
from tests.browser.console import ApiSession, Console
from tests.support import Launcher

CHROMIUM = os.environ.get("TASKSERVICE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="session")
def console(new_backend: Any, launch: Launcher) -> Iterator[Console]:
    """`taskservice api` (sign-in required), a worker and a flow engine on an embedded backend of their own."""
    backend = new_backend("embedded")
    server = launch.api(backend, auth=True)
    worker = launch.worker(backend, 2)
    engine = launch.engine(backend)
    services = Services.build(backend.settings)
    try:
        secret = services.tokens.create("browser_admin", "admin")[1]
        yield Console(server.base, services, secret, ApiSession(server.base, secret))
    finally:
        engine.stop()
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


@pytest.fixture(scope="session")
def screenshot(repo_dir: Any) -> Callable[[Page, str], None]:
    """`screenshot(page, name)`: the whole page, to tests/artifacts/console-<name>.png."""
    artifacts = repo_dir / "tests" / "artifacts"

    def shoot(page: Page, name: str) -> None:
        artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / f"console-{name}.png"), full_page=True)

    return shoot
