"""The Schedules page: a member's recurring jobs with their next and last run in local time,
Run now and Disable answering in words, and nothing of another organization's schedules."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import SCREENSHOTS, Site, sign_in

pytestmark = pytest.mark.browser

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def test_schedules_page_runs_and_disables_a_schedule(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    site.token("gus", ["globex"])
    site.client.create_schedule(
        "nightly", "demo.echo", "30 2 * * *", {"n": 1}, organization="acme",
        timezone="Europe/Paris",
    )  # fmt: skip
    site.client.create_schedule("hidden", "demo.echo", "@hourly", organization="globex")
    sign_in(page, site.url, token)
    page.click("nav >> text=Schedules")
    page.wait_for_url(f"{site.url}/schedules")
    rows = page.locator("#schedules-table tr[data-schedule]")
    assert rows.evaluate_all("rows => rows.map((r) => r.dataset.schedule)") == ["acme/nightly"]
    row = page.locator("tr[data-schedule='acme/nightly']")
    # The worker plans a new schedule's next run within a second or two; the page shows it
    # when the schedule_planned event comes, long before its own 30-s refresh.
    next_run = row.locator(".next-run time")
    assert LOCAL_TIME.match(next_run.inner_text(timeout=10_000)), next_run.inner_text()
    assert "Z" in (next_run.get_attribute("title") or "")
    assert row.locator(".last-run").inner_text() == "—"

    row.locator("button[data-action='run']").click()
    result = page.locator("#schedule-result")
    result.wait_for(state="visible")
    submitted = re.fullmatch(r"nightly: submitted job (\d+)\.", result.inner_text())
    assert submitted, result.inner_text()
    job_id = int(submitted[1])
    assert site.client.get_job(job_id).organization == "acme"
    last_job = page.locator("tr[data-schedule='acme/nightly'] .last-job a")
    assert last_job.inner_text() == str(job_id)
    assert LOCAL_TIME.match(page.locator("tr[data-schedule='acme/nightly'] .last-run").inner_text())

    page.locator("tr[data-schedule='acme/nightly'] button[data-action='disable']").click()
    page.wait_for_function(
        "() => document.querySelector('#schedule-result').textContent === 'nightly is disabled.'"
    )
    disabled = page.locator("tr[data-schedule='acme/nightly']")
    assert "disabled" in disabled.locator("td").first.inner_text()
    assert disabled.locator(".next-run").inner_text() == "—"
    assert [s.enabled for s in site.client.list_schedules(organization="acme")] == [False]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "schedules.png"), full_page=True)

    # A session that ended while the page was open: the next refresh shows the sign-in page.
    page.context.clear_cookies()
    site.client.create_schedule("later", "demo.echo", "@daily", organization="acme")
    page.wait_for_url(f"{site.url}/login", timeout=10_000)
