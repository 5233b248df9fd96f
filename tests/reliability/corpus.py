"""The hostile values both hostile-input suites send: through Python and SQL, and over HTTP."""

from __future__ import annotations

INJECTIONS = [
    "'; DROP TABLE jobqueue.job; --",
    "x' OR '1'='1",
    '"; DELETE FROM jobqueue.event; --',
    "$$; TRUNCATE jobqueue.job; $$",
    "acme\\'; SELECT pg_sleep(30); --",
    "acme); DROP SCHEMA jobqueue CASCADE; --",
    "%(actor)s",
    "{}",
]

# Bytes that are not UTF-8 (a lone continuation byte, then a byte that never occurs).
INVALID_UTF8 = b"ec\xff\xfeho"
NUL_TEXT = "a\x00b"
LONE_SURROGATE = "\udcff"
# Just over the 256 KiB cap of one job's params.
OVERSIZED_TEXT = "a" * 300_000
# Far longer than any name the engine keeps.
LONG_NAME = "o" * 100_000
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
# More digits than Python's int() converts from text by default.
DIGITS_BEYOND_INT_PARSING = "9" * 5000
# Characters str.isdigit() accepts that are not ASCII digits: superscript two, Arabic-Indic
# one, fullwidth one.
UNICODE_DIGITS = ["\u00b2", "\u0661", "\uff11"]


def deep_json(depth: int) -> str:
    """JSON text of an object holding arrays nested ``depth`` deep: deeper than any parser's
    recursion limit when ``depth`` is large."""
    return '{"x": ' + "[" * depth + "]" * depth + "}"
