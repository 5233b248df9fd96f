"""Client process: ``python -m bench.client SYSTEM ACTION --dsn DSN [options]``.

Actions, each printing one JSON object on its last stdout line:

* ``install``: install the system's schema;
* ``enqueue``: enqueue ``--count`` jobs one per call (``--mode single``) or in calls of
  ``--batch`` jobs (``--mode batch``), keys from ``--first-key``; reports the seconds taken;
* ``latency``: with a worker running, submit ``--count`` jobs one at a time, each after the
  previous one's handler started (read from ``--marks``), and report when each submit returned;
* ``fill``: enqueue ``--count`` jobs of ``--tenant`` in batches (the noisy neighbour's backlog);
* ``trickle``: submit ``--count`` jobs of ``--tenant`` every ``--gap`` seconds without waiting,
  then wait for their handlers, and report when each submit returned;
* ``versions``: the Python and package versions this interpreter has for the system.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import systems
from bench.marks import MarkReader
from bench.systems.base import Adapter

WARMUP_JOBS = 3


async def _enqueue(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    await adapter.open_client(args.dsn)
    try:
        keys = list(range(args.first_key, args.first_key + args.count))
        start = time.perf_counter()
        if args.mode == "single":
            for key in keys:
                await adapter.enqueue_one(key)
        else:
            for i in range(0, len(keys), args.batch):
                await adapter.enqueue_batch(keys[i : i + args.batch])
        seconds = time.perf_counter() - start
    finally:
        await adapter.close_client()
    return {"count": len(keys), "seconds": seconds}


async def _wait_for(reader: MarkReader, key: int, timeout: float) -> bool:
    """Wait until the handler for ``key`` has started; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = {m.key for m in reader.marks}
    while key not in seen:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.0005)
        seen.update(m.key for m in reader.poll())
    return True


async def _trickle(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """Submit ``--count`` jobs of tenant ``--tenant``, one every ``--gap`` seconds on a fixed
    cadence (not waiting for any to start), keys from ``--first-key``; then wait up to
    ``--timeout`` seconds for their handlers to start. Reports when each submit returned."""
    reader = MarkReader(Path(args.marks))
    submitted: list[tuple[int, int, int]] = []
    await adapter.open_client(args.dsn)
    try:
        start = time.monotonic()
        for i in range(args.count):
            key = args.first_key + i
            before = time.monotonic_ns()
            await adapter.enqueue_one_as(key, args.tenant)
            submitted.append((key, before, time.monotonic_ns()))
            await asyncio.sleep(max(0.0, start + (i + 1) * args.gap - time.monotonic()))
        deadline = time.monotonic() + args.timeout
        pending = {key for key, _, _ in submitted}
        while pending and time.monotonic() < deadline:
            pending -= {m.key for m in reader.poll()}
            await asyncio.sleep(0.01)
    finally:
        await adapter.close_client()
    return {"submitted": submitted}


async def _fill(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue ``--count`` jobs of tenant ``--tenant`` in batches of ``--batch``."""
    await adapter.open_client(args.dsn)
    try:
        keys = list(range(args.first_key, args.first_key + args.count))
        start = time.perf_counter()
        for i in range(0, len(keys), args.batch):
            await adapter.enqueue_batch_as(keys[i : i + args.batch], args.tenant)
        seconds = time.perf_counter() - start
    finally:
        await adapter.close_client()
    return {"count": len(keys), "seconds": seconds}


async def _latency(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    reader = MarkReader(Path(args.marks))
    submitted: list[tuple[int, int, int]] = []
    missed = 0
    await adapter.open_client(args.dsn)
    try:
        for key in range(-WARMUP_JOBS, 0):
            await adapter.enqueue_one(key)
            await _wait_for(reader, key, args.timeout)
        for key in range(args.count):
            before = time.monotonic_ns()
            await adapter.enqueue_one(key)
            after = time.monotonic_ns()
            submitted.append((key, before, after))
            if not await _wait_for(reader, key, args.timeout):
                missed += 1
            await asyncio.sleep(args.gap)
    finally:
        await adapter.close_client()
    return {"submitted": submitted, "missed": missed}


def _versions(adapter: Adapter) -> dict[str, Any]:
    found: dict[str, str] = {}
    for package in adapter.packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return {"python": platform.python_version(), "packages": found}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    adapter = systems.load(args.system)
    if args.action == "install":
        await adapter.install(args.dsn)
        return {}
    if args.action == "enqueue":
        return await _enqueue(adapter, args)
    if args.action == "latency":
        return await _latency(adapter, args)
    if args.action == "trickle":
        return await _trickle(adapter, args)
    if args.action == "fill":
        return await _fill(adapter, args)
    return _versions(adapter)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("system")
    parser.add_argument(
        "action", choices=["install", "enqueue", "latency", "trickle", "fill", "versions"]
    )
    parser.add_argument("--dsn", default="")
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--first-key", type=int, default=0)
    parser.add_argument("--marks", default="")
    parser.add_argument("--gap", type=float, default=0.005, help="seconds between submits")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per job")
    parser.add_argument("--tenant", default="a", help="whose jobs (trickle, fill)")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_run(args))), flush=True)


if __name__ == "__main__":
    main()
