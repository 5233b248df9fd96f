"""The dashboard in a real browser: sign-in, live progress, cancel, organization isolation."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.browser.conftest import SCREENSHOTS, Site, sign_in

pytestmark = pytest.mark.browser


def _row_ids(page: Any) -> list[int]:
    """The job ids of the table's rows, read at one instant (the table updates live)."""
    ids: list[int] = page.eval_on_selector_all(
        "#jobs-table tbody tr[data-job-id]", "rows => rows.map((r) => +r.dataset.jobId)"
    )
    return ids


def test_jobs_table_shows_new_jobs_and_their_progress_live(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    sign_in(page, site.url, token)
    page.goto(f"{site.url}/jobs?organization=acme")
    page.evaluate("window.__sameDocument = true")
    job = site.client.submit_job("demo.sleep", {"seconds": 2, "steps": 2}, organization="acme")
    row = f"#jobs-table tr[data-job-id='{job.id}']"
    page.wait_for_selector(row)
    page.wait_for_selector(f"{row} .badge.completed")
    assert page.locator(f"{row} .progress").inner_text() == "100%"
    assert page.evaluate("window.__sameDocument") is True


def test_progress_bar_moves_to_100_without_a_reload(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    sign_in(page, site.url, token)
    page.wait_for_selector("#counts .count")
    job = site.client.submit_job(
        "demo.sleep", {"seconds": 6, "steps": 6}, organization="acme", actor="ada"
    )
    page.goto(f"{site.url}/jobs/{job.id}")
    page.evaluate("window.__sameDocument = true")
    bar = page.locator("#progress")
    # Progress is reported between 0 and 100 while the job runs...
    page.wait_for_function(
        "() => { const v = +document.querySelector('#progress').getAttribute('aria-valuenow');"
        " return v > 0 && v < 100; }"
    )
    # ...and reaches 100 with the job completed, all in the same document.
    page.wait_for_function(
        "() => document.querySelector('#job-status').textContent === 'completed'"
    )
    assert bar.get_attribute("aria-valuenow") == "100"
    assert page.evaluate("window.__sameDocument") is True
    assert "completed" in page.locator("#attempts").inner_text()
    # The bar animates to its width; the screenshot waits for the end of the animation.
    page.wait_for_function(
        "() => { const f = document.querySelector('#progress .fill');"
        " return f.offsetWidth === f.parentElement.clientWidth; }"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "job.png"), full_page=True)


def test_cancel_a_running_job_from_its_page(site: Site, page: Any) -> None:
    token = site.token("ada", ["acme"])
    sign_in(page, site.url, token)
    job = site.client.submit_job(
        "demo.sleep", {"seconds": 120, "steps": 120}, organization="acme", actor="ada"
    )
    page.goto(f"{site.url}/jobs/{job.id}")
    page.wait_for_function("() => document.querySelector('#job-status').textContent === 'running'")
    page.click("#cancel-job")
    page.wait_for_function("() => document.querySelector('#job-status').textContent === 'canceled'")
    assert site.client.get_job(job.id).status == "canceled"
    assert page.locator("#retry-job").is_enabled()


def test_a_user_of_org_a_sees_none_of_org_b(site: Site, page: Any) -> None:
    alice = site.token("alice", ["org-a"])
    site.token("bob", ["org-b"])
    mine = [site.client.submit_job("demo.echo", {"n": n}, organization="org-a") for n in range(3)]
    theirs = [site.client.submit_job("demo.echo", {"n": n}, organization="org-b") for n in range(4)]
    sign_in(page, site.url, alice)
    page.goto(f"{site.url}/jobs")
    ids = set(_row_ids(page))
    assert ids == {j.id for j in mine}
    assert "org-b" not in page.content()
    options = page.locator("#filter-org option").all_inner_texts()
    assert "org-b" not in options and "org-a" in options
    response = page.goto(f"{site.url}/jobs/{theirs[0].id}")
    assert response is not None and response.status == 404
    # The overview counts only org A's jobs.
    page.goto(f"{site.url}/")
    page.wait_for_selector("#counts .count")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#counts .count b')]"
        ".reduce((s, b) => s + +b.textContent, 0) === 3"
    )
    # A bulk cancel of "everything" as alice leaves org B alone.
    page.goto(f"{site.url}/jobs")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-cancel")
    page.wait_for_selector("#bulk-result:not([hidden])")
    for job in theirs:
        assert site.client.get_job(job.id).status != "canceled"


def test_overview_screenshot_with_live_traffic(site: Site, page: Any) -> None:
    token = site.token("root", [], admin=True)
    site.client.create_organization("demo")
    for n in range(12):
        site.client.submit_job("demo.echo", {"n": n}, organization="demo")
    site.client.submit_job("demo.fail", {"retry": False}, organization="demo")
    # More long jobs than the worker's 4 slots: some run, the rest wait, at two priorities.
    for n in range(7):
        site.client.submit_job(
            "demo.sleep", {"seconds": 30 + n}, organization="demo", priority=5 if n % 2 else 0
        )
    sign_in(page, site.url, token)
    page.wait_for_selector("#depth-chart .hbar")
    page.wait_for_function(
        "() => +document.querySelector('#counts [data-status=completed] b')?.textContent >= 12",
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('#throughput-chart rect')]"
        ".some((r) => +r.getAttribute('height') > 0)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
    page.goto(f"{site.url}/workers")
    page.wait_for_selector("#workers-table a.badge.running")


def test_jobs_table_pages_through_100000_jobs(site: Site, page: Any, dsn: str) -> None:
    token = site.token("ada", ["big"])
    site.token("eve", ["small"])
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO jobqueue.job (job_type, organization_id, queue, status, priority,"
            " max_retries, timeout, finished_at, params)"
            " SELECT 'demo.echo', o.id, 'default',"
            "        (CASE WHEN n % 10 = 0 THEN 'dead' ELSE 'completed' END)::jobqueue.job_status,"
            "        0, 3, interval '1 minute', now(), jsonb_build_object('n', n)"
            " FROM generate_series(1, 100000) AS n, jobqueue.organization AS o"
            " WHERE o.name = 'big'"
        )
    sign_in(page, site.url, token)
    page.goto(f"{site.url}/jobs?status=dead&organization=big")
    first_page = _row_ids(page)
    assert len(first_page) == 50 and first_page == sorted(first_page, reverse=True)
    page.click("#next-page")
    page.wait_for_url("**before_id=*")
    second = _row_ids(page)
    assert len(second) == 50 and max(second) < min(first_page)
    assert all(s == "dead" for s in page.locator("#jobs-table .status").all_inner_texts())
    # The overview counts the 100,000 jobs.
    page.goto(f"{site.url}/")
    page.wait_for_function(
        "() => +document.querySelector('#counts [data-status=completed] b')?.textContent === 90000"
    )
