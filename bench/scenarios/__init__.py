"""The scenarios, in the order a run performs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.context import Bench, System
from bench.scenarios import cost, drain, enqueue, history, latency, noisy, pressure, serial

Scenario = Callable[[Bench, list[System]], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    enqueue.NAME: enqueue.run,
    drain.NAME: drain.run,
    serial.NAME: serial.run,
    latency.NAME: latency.run,
    noisy.NAME: noisy.run,
    history.NAME: history.run,
    cost.NAME: cost.run,
    pressure.NAME: pressure.run,
}
