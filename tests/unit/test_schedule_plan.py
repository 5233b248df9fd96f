"""The ticker's arithmetic, without a database: ticks in a time zone across DST changes, the
missed-tick policies, and the bounds of one pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSimError

from jobqueue.tasks.schedules import MAX_TICKS, next_tick, plan, ticks_between

NEW_YORK = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def hours(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[str]:
    return [t.strftime("%d %H:%MZ") for t in ticks_between(expression, zone, start, end, 100)]


def test_spring_forward_runs_a_fixed_time_in_the_gap_once_right_after_it() -> None:
    # 2025-03-09 02:00 EST -> 03:00 EDT: 02:30 does not exist that night.
    ticks = hours("30 2 * * *", NEW_YORK, utc(2025, 3, 7, 12), utc(2025, 3, 11, 12))
    # 02:30 EST = 07:30Z, then 03:00 EDT (the first moment after the gap) = 07:00Z,
    # then 02:30 EDT = 06:30Z.
    assert ticks == ["08 07:30Z", "09 07:00Z", "10 06:30Z", "11 06:30Z"]


def test_fall_back_runs_a_fixed_time_in_the_repeated_hour_once() -> None:
    # 2025-11-02 02:00 EDT -> 01:00 EST: 01:30 happens twice, the job runs at the first.
    ticks = hours("30 1 * * *", NEW_YORK, utc(2025, 10, 31, 12), utc(2025, 11, 4, 12))
    assert ticks == ["01 05:30Z", "02 05:30Z", "03 06:30Z", "04 06:30Z"]


def test_hourly_ticks_follow_real_hours_across_both_changes() -> None:
    spring = hours("0 * * * *", NEW_YORK, utc(2025, 3, 9, 5, 30), utc(2025, 3, 9, 8, 30))
    assert spring == ["09 06:00Z", "09 07:00Z", "09 08:00Z"]  # 01:00 EST, 03:00 and 04:00 EDT
    fall = hours("0 * * * *", NEW_YORK, utc(2025, 11, 2, 4, 30), utc(2025, 11, 2, 7, 30))
    assert fall == ["02 05:00Z", "02 06:00Z", "02 07:00Z"]  # 01:00 EDT, 01:00 EST, 02:00 EST


def test_a_zoned_schedule_keeps_its_local_time_through_the_change() -> None:
    # Paris: UTC+1 in winter, UTC+2 from 2025-03-30.
    ticks = hours("0 9 * * *", PARIS, utc(2025, 3, 28, 12), utc(2025, 4, 1, 12))
    assert ticks == ["29 08:00Z", "30 07:00Z", "31 07:00Z", "01 07:00Z"]


def test_starting_inside_the_repeated_hour_never_answers_a_tick_before_the_start() -> None:
    # 06:10Z is 01:10 EST, after 01:30 EDT (05:30Z) has already passed.
    start = utc(2025, 11, 2, 6, 10)
    found = next_tick("30 1 * * *", NEW_YORK, start)
    assert found == utc(2025, 11, 3, 6, 30)


def test_a_seconds_field_ticks_every_second() -> None:
    ticks = ticks_between(
        "* * * * * *", ZoneInfo("UTC"), utc(2025, 1, 1), utc(2025, 1, 1, 0, 0, 3), 10
    )
    assert [t.second for t in ticks] == [1, 2, 3]


def test_on_time_ticks_fire_and_the_next_run_follows() -> None:
    now = utc(2025, 1, 1, 12, 0, 30)
    result = plan("* * * * *", "UTC", utc(2025, 1, 1, 11, 59, 50), now)
    assert result.ticks == [utc(2025, 1, 1, 12)]
    assert result.until == now and result.skipped == 0
    assert result.next_run_at == utc(2025, 1, 1, 12, 1)


def test_skip_drops_the_missed_ticks() -> None:
    # Workers were down for an hour; a tick is missed once a minute late.
    now = utc(2025, 1, 1, 12, 0, 30)
    result = plan("* * * * *", "UTC", utc(2025, 1, 1, 11), now, missed="skip")
    assert result.ticks == [utc(2025, 1, 1, 12)]  # the one within the grace
    assert result.skipped == 59  # 11:01 .. 11:59


def test_catch_up_runs_the_latest_missed_ticks_once_each() -> None:
    now = utc(2025, 1, 1, 12, 0, 30)
    result = plan("* * * * *", "UTC", utc(2025, 1, 1, 11), now, missed="catch_up")
    assert result.ticks == [utc(2025, 1, 1, 11, 59), utc(2025, 1, 1, 12)]
    assert result.skipped == 58
    result = plan("* * * * *", "UTC", utc(2025, 1, 1, 11), now, missed="catch_up", catch_up_limit=3)
    assert result.ticks == [utc(2025, 1, 1, 11, m) for m in (57, 58, 59)] + [utc(2025, 1, 1, 12)]
    assert result.skipped == 56


def test_a_longer_grace_makes_late_ticks_on_time() -> None:
    now = utc(2025, 1, 1, 12, 0, 30)
    result = plan("*/10 * * * *", "UTC", utc(2025, 1, 1, 11), now, grace=timedelta(hours=1))
    assert len(result.ticks) == 6 and result.skipped == 0


def test_one_pass_fires_a_bounded_number_of_ticks_and_the_next_goes_on() -> None:
    now = utc(2025, 1, 1, 12)
    start = now - timedelta(seconds=MAX_TICKS + 500)
    first = plan("* * * * * *", "UTC", start, now, grace=timedelta(hours=1))
    assert len(first.ticks) == MAX_TICKS and first.until == first.ticks[-1]
    assert first.next_run_at is not None and first.next_run_at <= now
    second = plan("* * * * * *", "UTC", first.until, now, grace=timedelta(hours=1))
    assert second.ticks[0] == first.until + timedelta(seconds=1)
    assert second.ticks[-1] == now and second.until == now


def test_a_rare_day_still_has_a_next_run_and_an_impossible_one_is_refused() -> None:
    # 29 February on a Monday, as a day-of-month AND weekday: rare, but it exists.
    assert next_tick("0 0 29 2 *", ZoneInfo("UTC"), utc(2025, 1, 1)) == utc(2028, 2, 29)
    with pytest.raises(CronSimError):
        plan("0 0 30 2 *", "UTC", utc(2025, 1, 1), utc(2025, 1, 2))
