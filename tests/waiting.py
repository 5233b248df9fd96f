"""Polling with a generous deadline: how tests wait for processes and the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
