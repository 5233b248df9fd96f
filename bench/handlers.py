"""The no-op handlers every system runs; optionally they log when they start."""

from __future__ import annotations

import os
import time

# Set by bench.worker when pick-up latency is being measured.
LOG_PATH = os.environ.get("BENCH_PICKUP_LOG")


def record_start(key: object) -> None:
    if LOG_PATH and key is not None:
        with open(LOG_PATH, "a") as log:
            log.write(f"{key} {time.time()}\n")


async def jobqueue_noop(ctx: object, key: int | None = None) -> None:
    record_start(key)
