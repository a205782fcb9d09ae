"""The console in a real browser: sign in and out, filter the list, watch a running invocation's progress and logs,
stop it (its child process dies with it), retry it, replay a dead letter, and a read-only user who can only look."""
from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import Page, expect

if TYPE_CHECKING:
    from tests.browser.console import Console


def fresh(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_sign_in_and_out(console: Console, page: Page, screenshot: Any) -> None:
    page.goto(f"{console.base}/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next=/dashboard"))
    screenshot(page, "login")
    page.fill("#token", "tsk_wrong")
    page.click("button[type=submit]")
    expect(page.locator(".flash-error")).to_contain_text("unknown or has been revoked")
    page.fill("#token", console.admin_secret)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{console.base}/dashboard")
    expect(page.locator("header .user")).to_contain_text("browser_admin")
    page.click("text=Sign out")
    expect(page).to_have_url(f"{console.base}/login")
    expect(page.locator(".flash-ok")).to_have_text("Signed out.")
    page.goto(f"{console.base}/")
    expect(page).to_have_url(re.compile(r"/login"))


def test_filter_the_list(console: Console, page: Page,
                         deploy: Any, submit: Any, wait_for_status: Any, screenshot: Any) -> None:
    fn, other = fresh("shop"), fresh("mail")
    deploy(console.api, fn, "tests.handlers:fail_until", max_retries=0)
    deploy(console.api, other, "tests.handlers:counted")
    for n in range(3):
        submit(console.api, fn, {"succeed_on": 1}, f"order-{n}")
    submit(console.api, fn, {"succeed_on": 5}, "refund-1")  # fails: no retries
    submit(console.api, other, {}, "order-9")
    wait_for_status(console.services, fn, "refund-1", {"Failed"})
    wait_for_status(console.services, fn, "order-2", {"Succeeded"})
    console.sign_in(page)
    page.select_option("select[name=function]", fn)
    page.check("input[name=status][value=Succeeded]")
    page.check("input[name=status][value=Failed]")
    page.fill("input[name=prefix]", "order-")
    page.click("text=Apply")
    for param in (f"function={fn}", "status=Succeeded", "status=Failed", "prefix=order-"):
        assert param in page.url
    assert "since=" not in page.url  # empty fields stay out of the URL
    rows = page.locator("#invocations tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("order-2")  # newest first
    expect(page.locator(".count .n[data-status=Succeeded]")).to_have_text("3")
    screenshot(page, "invocations")
    page.fill("input[name=prefix]", "")
    page.click("text=Apply")
    expect(rows).to_have_count(4)
    page.click(".count:has(.n[data-status=Succeeded])")  # a count toggles its status out of the filter
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("refund-1")
    page.click("text=Reset")
    expect(page.locator("#invocations")).to_contain_text("order-9")


def test_watch_stop_and_retry_a_running_invocation(console: Console, page: Page, tmp_path: Path,
                                                   deploy: Any, submit: Any, wait_for_status: Any, process_gone: Any,
                                                   eventually: Any, screenshot: Any) -> None:
    fn = fresh("ticker")
    deploy(console.api, fn, "tests.handlers:ticker", timeout_s=600, max_retries=0)
    pids = tmp_path / "pids"
    submit(console.api, fn, {"seconds": 120, "pids": str(pids)}, "long-job")
    wait_for_status(console.services, fn, "long-job", {"Running"})
    console.sign_in(page)
    page.goto(f"{console.base}/invocations/{fn}/long-job")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads: updates must arrive live
    progress = page.locator("#progress .progress")
    expect(progress).not_to_have_attribute("aria-valuenow", "0")
    first_progress = float(progress.get_attribute("aria-valuenow") or 0)
    first_lines = page.locator("#logs span").count()
    expect(page.locator("#logs")).to_contain_text("started child process")
    eventually(lambda: (float(progress.get_attribute("aria-valuenow") or 0), page.locator("#logs span").count()),
               until=lambda seen: seen[0] > first_progress and seen[1] > first_lines + 5, timeout_s=10,
               what=f"progress to move past {first_progress} and more than {first_lines + 5} log lines (live)")
    assert page.evaluate("window.sameDocument === true")
    screenshot(page, "invocation-running")

    page.click("button:text-is('Stop')")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".question")).to_contain_text("child")
    screenshot(page, "confirm-stop")
    dialog.locator("#confirm-ok").click()
    expect(page.locator("#status-badge")).to_have_text("Stopped", timeout=20_000)
    for pid in map(int, pids.read_text().split()):
        assert process_gone(pid), f"process {pid} outlived the stop"
    expect(page.locator(".timeline").last).to_contain_text("Stopping")
    expect(page.locator(".error-card")).to_contain_text("stopped on request")
    screenshot(page, "invocation-stopped")

    page.click("button:text-is('Retry')")
    page.locator("#confirm-dialog #confirm-ok").click()
    expect(page.locator(".flash-ok")).to_have_text("Retried: a new attempt is on its way.")
    expect(page.locator("#status-badge")).to_have_text("Running", timeout=20_000)
    expect(page.locator("#attempts")).to_have_text("2")
    page.click("button:text-is('Stop')")
    page.locator("#confirm-dialog #confirm-ok").click()
    expect(page.locator("#status-badge")).to_have_text("Stopped", timeout=20_000)


def test_read_only_user_can_look_but_not_stop(console: Console, page: Page,
                                              deploy: Any, submit: Any, wait_for_status: Any, screenshot: Any) -> None:
    fn = fresh("guarded")
    deploy(console.api, fn, "tests.handlers:ticker", timeout_s=600)
    submit(console.api, fn, {"seconds": 60}, "watched")
    wait_for_status(console.services, fn, "watched", {"Running"})
    console.sign_in(page, console.token("read-only"))
    page.goto(f"{console.base}/invocations/{fn}/watched")
    expect(page.locator("header .role")).to_have_text("read-only")
    expect(page.locator("#status-badge")).to_have_text("Running")
    expect(page.locator("button:text-is('Stop')")).to_have_count(0)
    screenshot(page, "invocation-read-only")
    forged = page.evaluate("""async (url) => {
        const token = document.querySelector('input[name=csrf_token]').value;  // from the sign-out form
        const body = new URLSearchParams({csrf_token: token, confirmed: '1'});
        const withToken = await fetch(url, {method: 'POST', body});
        const without = await fetch(url, {method: 'POST', body: new URLSearchParams({confirmed: '1'})});
        return [withToken.status, without.status];
    }""", f"{console.base}/invocations/{fn}/watched/stop")
    assert forged == [403, 400]
    assert console.services.ledger.get_invocation(fn, "watched").status.value == "Running"
    console.api.post(f"/v1/functions/{fn}/invocations/watched/stop")


def test_functions_dead_letters_replay_and_dashboard(console: Console, page: Page,
                                                     deploy: Any, submit: Any, wait_for_status: Any,
                                                     screenshot: Any) -> None:
    fn = fresh("flaky")
    deploy(console.api, fn, "tests.handlers:fail_until", max_retries=0, on_failure="queue:browser-dlq")
    submit(console.api, fn, {"succeed_on": 2}, "first-try")
    wait_for_status(console.services, fn, "first-try", {"Failed"})
    console.sign_in(page)
    page.goto(f"{console.base}/functions")
    expect(page.locator("#functions")).to_contain_text(fn)
    screenshot(page, "functions")
    page.goto(f"{console.base}/dashboard")
    expect(page.locator("#per-minute rect").first).to_be_attached()
    expect(page.locator("#durations")).to_contain_text(fn)
    screenshot(page, "dashboard")
    page.goto(f"{console.base}/dead-letters?function={fn}")
    expect(page.locator("#dead-letters")).to_contain_text("RetriesExhausted")
    screenshot(page, "dead-letters")
    page.click("text=edit and replay")
    page.fill("#payload", '{"succeed_on": 1}')  # a corrected payload: the replay succeeds
    screenshot(page, "dead-letter")
    page.click("button:text-is('Replay')")
    page.locator("#confirm-dialog #confirm-ok").click()
    expect(page.locator(".flash-ok")).to_contain_text("with the edited payload")
    expect(page).to_have_url(re.compile(rf"/invocations/{fn}/replay_"))
    expect(page.locator("#status-badge")).to_have_text("Succeeded", timeout=20_000)
    expect(page.locator(".json").first).to_contain_text('"succeed_on": 1')
    screenshot(page, "invocation-succeeded")
