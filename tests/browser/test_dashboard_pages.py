"""What a newcomer sees on the dashboard (issue 14): the job types page, bulk actions that
confirm and report in words, one time format, no empty boxes, readable charts, the workers
page's details, a favicon."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.browser.conftest import SCREENSHOTS, Site, sign_in
from tests.waiting import wait_for

pytestmark = pytest.mark.browser

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def test_job_types_page_lists_every_type(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    sign_in(page, site.url, token)
    page.click("nav >> text=Job types")
    page.wait_for_url(f"{site.url}/types")
    rows = page.locator("#job-types-table tr[data-job-type]")
    names = rows.evaluate_all("rows => rows.map((r) => r.dataset.jobType)")
    assert names == ["demo.echo", "demo.fail", "demo.flaky", "demo.sleep"]
    assert "demo.echo" in page.locator("#job-types-table").inner_text()
    page.wait_for_function(
        "() => document.querySelector('tr[data-job-type=\"demo.echo\"] .attempts')"
        ".textContent === '0'"
    )
    # A job that runs while the page is open shows up without a reload.
    site.client.submit_job("demo.echo", {}, organization="acme")
    page.wait_for_function(
        "() => document.querySelector('tr[data-job-type=\"demo.echo\"] .attempts')"
        ".textContent === '1'"
    )
    page.click("text=demo.sleep")
    page.wait_for_url(f"{site.url}/types/demo.sleep")
    assert "600 s" in page.locator("dl.fields").inner_text()  # a timeout, not 0:10:00
    page.goto(f"{site.url}/types/demo.echo")
    attempts_are = "(n) => document.querySelector('#type-metrics tbody td')?.textContent === n"
    page.wait_for_function(attempts_are, arg="1")
    site.client.submit_job("demo.echo", {"n": 2}, organization="acme")
    page.wait_for_function(attempts_are, arg="2")


def test_bulk_actions_need_an_organization_confirm_and_report_in_words(
    site: Site, page: Any
) -> None:
    token = site.token("root", ["acme", "globex"], admin=True)
    future = datetime.now(UTC) + timedelta(hours=1)
    for n in range(3):
        site.client.submit_job("demo.echo", {"n": n}, organization="acme", run_at=future)
    other = site.client.submit_job("demo.echo", {}, organization="globex", run_at=future)
    sign_in(page, site.url, token)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

    # No organization chosen, two visible: nothing happens without the explicit choice.
    page.goto(f"{site.url}/jobs?status=queued")
    page.click("#bulk-cancel")
    notice = page.locator("#bulk-result")
    assert "Choose an organization" in notice.inner_text()
    assert dialogs == []
    assert site.client.get_job(other.id).status == "queued"

    # One organization: the question and the answer are sentences.
    page.goto(f"{site.url}/jobs?status=queued&organization=acme")
    page.click("#bulk-cancel")
    page.wait_for_function(
        "() => /Canceled/.test(document.querySelector('#bulk-result').textContent)"
    )
    assert dialogs[-1].startswith("Cancel every queued job in acme?")
    assert notice.inner_text() == "Canceled 3 jobs."
    assert site.client.get_job(other.id).status == "queued"
    page.click("#bulk-cancel")
    page.wait_for_function(
        "() => /Nothing to cancel/.test(document.querySelector('#bulk-result').textContent)"
    )
    page.goto(f"{site.url}/jobs?organization=acme&status=canceled")
    page.click("#bulk-retry")
    page.wait_for_function(
        "() => /Queued 3 jobs again/.test(document.querySelector('#bulk-result').textContent)"
    )
    assert "Retry every canceled job in acme?" in dialogs[-1]

    # Every organization, ticked on purpose.
    page.goto(f"{site.url}/jobs")
    page.check("#bulk-every-org")
    page.click("#bulk-cancel")
    page.wait_for_function(
        "() => /Canceled|asked/.test(document.querySelector('#bulk-result').textContent)"
    )
    assert site.client.get_job(other.id).status == "canceled"
    assert "in every organization you can see" in dialogs[-1]


def test_one_local_time_format_also_after_a_live_refresh(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    first = site.client.submit_job("demo.echo", {"n": 1}, organization="acme")
    sign_in(page, site.url, token)
    page.goto(f"{site.url}/jobs")
    cell = page.locator(f"tr[data-job-id='{first.id}'] time")
    assert LOCAL_TIME.match(cell.inner_text()), cell.inner_text()
    assert "Z" in (cell.get_attribute("title") or "")
    live = site.client.submit_job("demo.echo", {"n": 2}, organization="acme")
    page.wait_for_selector(f"tr[data-job-id='{live.id}'] time")
    for time_text in page.locator("#jobs-table time").all_inner_texts():
        assert LOCAL_TIME.match(time_text), time_text
    page.goto(f"{site.url}/jobs/{first.id}")
    page.wait_for_selector("#attempts li.completed")
    for time_text in page.locator("#job-page time").all_inner_texts():
        assert LOCAL_TIME.match(time_text), time_text


def test_job_page_shows_no_empty_error_box_nor_a_meaningless_bar(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    later = site.client.submit_job(
        "demo.echo", {}, organization="acme", run_at=datetime.now(UTC) + timedelta(hours=1)
    )
    dead = site.client.submit_job(
        "demo.fail", {"retry": False, "message": "out of paper"}, organization="acme"
    )
    sign_in(page, site.url, token)
    page.goto(f"{site.url}/jobs/{later.id}")
    assert page.locator("#progress").is_hidden()
    assert page.locator("#error-section").is_hidden()
    assert page.locator("#attempts").inner_text() == "No attempt yet."
    page.goto(f"{site.url}/jobs/{dead.id}")
    page.wait_for_function("() => document.querySelector('#job-status').textContent === 'dead'")
    assert page.locator("#error-section").is_visible()
    assert "out of paper" in page.locator("#job-error").inner_text()
    assert page.locator("#progress").is_hidden()


def test_overview_charts_say_no_data_and_read_with_one_priority(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    sign_in(page, site.url, token)
    page.wait_for_selector("#throughput-chart .no-data")
    assert page.locator("#throughput-chart").inner_text() == "No job finished in the last hour."
    assert page.locator("#failure-chart").inner_text() == "No attempt finished in the last hour."
    assert page.locator("#depth-chart").inner_text() == "No job is waiting to run."
    future = datetime.now(UTC) + timedelta(minutes=30)
    for n in range(4):
        site.client.submit_job("demo.echo", {"n": n}, organization="acme", run_at=future)
    now = site.client.submit_job("demo.echo", {"n": "now"}, organization="acme")
    # The chart counts the jobs waiting when the page loads: only the four future ones, once
    # the worker has run this one (its attempt is the failure chart's one point).
    wait_for(lambda: site.client.get_job(now.id).status == "completed", what="the job to run")
    page.reload()
    page.wait_for_selector("#depth-chart .hbar")
    assert page.locator("#depth-chart .hbar-label").all_inner_texts() == ["priority 0"]
    assert page.locator("#depth-chart .hbar-value").all_inner_texts() == ["4 waiting"]
    page.wait_for_selector("#failure-chart circle")
    # A minute without attempts is a gap, not a 0% point: one point for one busy minute.
    assert page.locator("#failure-chart circle").count() == 1


def test_workers_page_shows_host_pid_queues_and_concurrency(site: Site, page: Any) -> None:
    token = site.token("root", [], admin=True)
    site.client.create_organization("demo")
    job = site.client.submit_job("demo.sleep", {"seconds": 30, "steps": 30}, organization="demo")
    sign_in(page, site.url, token)
    page.goto(f"{site.url}/workers")
    page.wait_for_selector(f"#workers-table a[href='/jobs/{job.id}']")
    row = page.locator("#workers-table tbody tr").first
    assert row.locator(".host").inner_text() not in ("", "—")
    assert row.locator(".pid").inner_text().isdigit()
    assert row.locator(".queues").inner_text() == "every queue"
    assert row.locator(".concurrency").inner_text() == "1 of 4 busy"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "workers.png"), full_page=True)


def test_a_favicon_is_served(site: Site, page: Any) -> None:
    response = httpx.get(f"{site.url}/favicon.ico", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    page.goto(f"{site.url}/login")
    assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
    assert httpx.get(f"{site.url}/static/favicon.svg", timeout=10).status_code == 200
