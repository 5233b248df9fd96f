"""The live feed's resume cursor: written and read back, what it says the client has, and the
cursors a client could forge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobqueue import errors
from jobqueue.feed_cursor import MAX_TRANSACTIONS, Cursor

IDS = st.integers(min_value=1, max_value=2**63 - 1)


@st.composite
def cursors(draw: st.DrawFn) -> Cursor:
    last = draw(IDS)
    pending = draw(
        st.dictionaries(
            IDS, st.integers(min_value=0, max_value=last - 1), max_size=MAX_TRANSACTIONS + 5
        )
    )
    return Cursor.at(last, pending)


@given(cursors())
def test_a_cursor_reads_back_as_written(cursor: Cursor) -> None:
    assert Cursor.parse(str(cursor), "Last-Event-ID") == cursor


def test_a_plain_event_id_is_a_cursor_with_nothing_pending() -> None:
    cursor = Cursor.parse("1024", "Last-Event-ID")
    assert cursor == Cursor(1024) and str(cursor) == "1024"
    assert cursor.has(1024, 7) and not cursor.has(2048, 7)


def test_named_transactions_are_missing_only_above_their_low() -> None:
    cursor = Cursor.at(10_240, {7: 2048, 8: 2048, 9: 5120, 10: 10_240})
    assert str(cursor) == "10240.2048:7:8.5120:9"  # 10's events all lie above 10240
    assert not cursor.has(3072, 7) and cursor.has(2048, 7)
    assert not cursor.has(6144, 9) and cursor.has(4096, 9)
    assert cursor.has(3072, 11)  # a transaction it does not name: had
    assert not cursor.has(11_264, 11)  # above its id: not had


def test_past_the_limit_every_transaction_is_pending_above_the_lowest() -> None:
    many = {xact: 100 + xact for xact in range(1, MAX_TRANSACTIONS + 2)}
    cursor = Cursor.at(10_000, many)
    assert str(cursor) == "10000.101"
    assert not cursor.has(102, 999) and cursor.has(101, 999)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "-1",
        "1.",
        "1..2",
        "10.20:5",  # a low at or above the id
        "10.10",
        "10.2:0",  # no transaction 0
        "10.2:5:",
        ":5",
        "١٢",  # digits that are not ASCII
        str(2**63),
        "10." + ".".join(f"2:{x}" for x in range(1, MAX_TRANSACTIONS + 2)),
    ],
)
def test_a_cursor_this_feed_did_not_write_is_refused(raw: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="Last-Event-ID"):
        Cursor.parse(raw, "Last-Event-ID")
