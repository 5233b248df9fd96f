"""The Queues page and the priority control in a real browser: caps and pauses shown live,
set by an admin, and a member seeing only her organization."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import SCREENSHOTS, Site, sign_in

pytestmark = pytest.mark.browser


def test_an_admin_sees_caps_fill_and_pauses_a_queue(site: Site, page: Any) -> None:
    token = site.token("root", [], admin=True)
    for organization in ("acme", "globex"):
        site.client.create_organization(organization)
    site.client.set_queue_limits("default", organization_concurrency=1)
    for organization in ("acme", "globex"):
        for n in range(3):
            site.client.submit_job(
                "demo.sleep", {"seconds": 30 + n, "steps": 30}, organization=organization
            )
    sign_in(page, site.url, token)
    page.goto(f"{site.url}/queues")
    # One of each organization's jobs runs (the cap), two wait.
    for organization in ("acme", "globex"):
        row = f"#usage-table tr[data-organization='{organization}']"
        page.wait_for_function(
            f"() => document.querySelector(\"{row} td.usage\")?.textContent === '1 / 1'"
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "queues.png"), full_page=True)

    page.click("#queues-table tr[data-queue='default'] button.pause-queue")
    page.wait_for_function(
        "() => document.querySelector(\"#queues-table tr[data-queue='default'] .badge\")"
        ".textContent === 'paused'"
    )
    assert next(q for q in site.client.list_queues() if q.queue == "default").paused
    # Raise acme's cap from the page; the queue stays paused, so nothing more starts.
    row = "#usage-table tr[data-organization='acme']"
    page.fill(f"{row} input.org-limit", "3")
    page.click(f"{row} button.save-org")
    page.wait_for_function(
        f"() => document.querySelector(\"{row} td.usage\").textContent === '1 / 3'"
    )
    assert [u.concurrency for u in site.client.list_queue_usage(organization="acme")] == [3]


def test_a_member_sees_her_organization_and_reprioritizes_a_waiting_job(
    site: Site, page: Any
) -> None:
    alice = site.token("alice", ["org-a"])
    site.token("bob", ["org-b"])
    site.client.pause_queue("default")
    mine = site.client.submit_job("demo.echo", {"n": 1}, organization="org-a")
    site.client.submit_job("demo.echo", {"n": 2}, organization="org-b")
    sign_in(page, site.url, alice)
    page.goto(f"{site.url}/queues")
    page.wait_for_selector("#usage-table tr[data-organization='org-a']")
    assert "org-b" not in page.content()
    # Pausing org A's share is for its admins; the engine says no, and the page shows it.
    page.click("#usage-table tr[data-organization='org-a'] button.pause-org")
    page.wait_for_function(
        "() => document.querySelector('#queues-result').textContent.includes('admin')"
    )

    page.goto(f"{site.url}/jobs/{mine.id}")
    page.fill("#job-priority", "42")
    page.click("#set-priority")
    page.wait_for_function(
        "() => document.querySelector('#job-queue').textContent === 'default / 42'"
    )
    assert site.client.get_job(mine.id).priority == 42
