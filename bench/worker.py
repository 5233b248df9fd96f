"""Worker process: ``python -m bench.worker SYSTEM --dsn DSN --concurrency N``.

Prints ``ready`` once the adapter has built its worker, waits for a ``go`` line on stdin, then
runs the worker until SIGTERM. The gate lets the harness start all workers of a measurement at
the same moment, after their imports and set-up.
"""

from __future__ import annotations

import argparse
import sys

from bench import systems


def _ready() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("system")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args(argv)
    systems.load(args.system).run_worker(args.dsn, args.concurrency, _ready)


if __name__ == "__main__":
    main()
