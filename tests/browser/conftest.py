"""A live web app and worker on the test database, and Debian's chromium driven by Playwright.

The tests fail, never skip, when chromium is missing: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobqueue.client import Client
from jobqueue.tasks.demo import register_demo_types
from tests.integration.cli_helpers import cli_env, free_port, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The dashboard's screenshots in docs/ are refreshed on request only
# (JOBQUEUE_UPDATE_SCREENSHOTS=1); otherwise a run leaves them under test-artifacts/, and the
# working tree as it was.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("JOBQUEUE_UPDATE_SCREENSHOTS") == "1"
    else Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
)


@dataclass
class Site:
    url: str
    client: Client

    def token(self, user: str, organizations: list[str], *, admin: bool = False) -> str:
        known = {o.organization for o in self.client.list_organizations()}
        self.client.create_user(user, admin=admin)
        for organization in organizations:
            if organization not in known:
                self.client.create_organization(organization)
            self.client.add_member(user, organization)
        return self.client.create_token(user, "browser").secret


def _stop(proc: subprocess.Popen[bytes], *, abandon_after: float | None = None) -> None:
    """SIGTERM, and SIGKILL if still running after a minute. With ``abandon_after``, a second
    SIGTERM after that many seconds: a worker then abandons its running jobs at once instead
    of waiting out its grace period for them (the test is over; they cannot finish anyway)."""
    proc.send_signal(signal.SIGTERM)
    if abandon_after is not None:
        try:
            proc.wait(abandon_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def site(dsn: str, client: Client) -> Iterator[Site]:
    """The web app and one worker, with the demo job types registered."""
    register_demo_types(client)
    port = free_port()
    env = cli_env(dsn)
    web = subprocess.Popen([sys.executable, "-m", "jobqueue.web", "--port", str(port)], env=env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.worker", "--concurrency", "4", "--shutdown-grace", "2"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, what="the web app")
        yield Site(url, client)
    finally:
        _stop(worker, abandon_after=0.2)
        _stop(web)


# Module scope, not session: playwright's sync API keeps an event loop running in the main
# thread while it is open, which would stop every async test collected after this module.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
