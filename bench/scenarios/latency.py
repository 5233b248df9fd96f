"""Scenario ``latency``: one idle worker; jobs submitted one at a time; submit to handler start.

Each job is submitted once the previous one's handler started (plus a short gap), so the
worker is idle every time. A few warm-up jobs go first and are not counted. Latency runs from
the moment the submitting call returned (the job was committed) to the handler's first line;
both clocks are the machine's CLOCK_MONOTONIC.
"""

from __future__ import annotations

from bench.context import Bench, System
from bench.marks import read_marks
from bench.procs import Workers, run_client
from bench.scenarios.common import MEASUREMENT_ERRORS, failed, rounds, say
from bench.stats import percentile

NAME = "latency"
GAP_SECONDS = 0.01
WAIT_PER_JOB = 10.0


async def run(bench: Bench, systems: list[System]) -> None:
    sizes = bench.sizes
    for rep, system in rounds(systems, sizes.repetitions):
        try:
            async with bench.database(system, "latency") as db:
                marks = bench.workdir / f"marks-{db.name}.txt"
                async with Workers(
                    system.adapter, db.dsn, 1, bench.concurrency, bench.workdir, marks, "all"
                ) as workers:
                    await workers.go()
                    out = await run_client(
                        system.adapter,
                        "latency",
                        bench.workdir,
                        sizes.client_timeout + sizes.latency_jobs * WAIT_PER_JOB,
                        dsn=db.dsn,
                        count=sizes.latency_jobs,
                        marks=marks,
                        gap=GAP_SECONDS,
                        timeout=WAIT_PER_JOB,
                    )
        except MEASUREMENT_ERRORS as exc:
            failed(system, NAME, exc)
            continue
        started = {m.key: m.ns for m in read_marks(marks) if m.key >= 0}
        samples = [
            (started[key] - after) / 1e6
            for key, _before, after in out["submitted"]
            if key in started
        ]
        result = {
            "round": rep,
            "samples_ms": [round(s, 3) for s in samples],
            "missed": len(out["submitted"]) - len(samples),
            "p50_ms": percentile(samples, 50),
            "p95_ms": percentile(samples, 95),
            "p99_ms": percentile(samples, 99),
        }
        system.record(NAME, result)
        say(
            f"{system.name:<14} latency        p50 {result['p50_ms'] or 0:7.2f} ms"
            f"  p95 {result['p95_ms'] or 0:7.2f} ms  p99 {result['p99_ms'] or 0:7.2f} ms"
        )
