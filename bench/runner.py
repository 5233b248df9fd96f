"""One benchmark run: start the server, prepare the systems, run the scenarios, report."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report, results, systems
from bench.context import Bench, System
from bench.machine import machine_info
from bench.plot import drain_plot, noisy_plot
from bench.procs import ProcessError
from bench.scenarios import SCENARIOS
from bench.server import Server, existing_server, throwaway_server
from bench.sizes import Sizes


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    quick: bool
    systems: tuple[str, ...]
    scenarios: tuple[str, ...]
    dsn: str | None
    concurrency: int
    output: Path


@contextlib.asynccontextmanager
async def _server(dsn: str | None) -> AsyncIterator[Server]:
    if dsn:
        yield existing_server(dsn)
        return
    with throwaway_server() as server:
        yield server


def _load(names: tuple[str, ...]) -> tuple[list[System], dict[str, str]]:
    chosen, skipped = [], {}
    for name in names:
        adapter = systems.load(name)
        reason = adapter.unavailable()
        if reason:
            skipped[name] = reason
            print(f"skipping {name}: {reason}", flush=True)
        else:
            chosen.append(System(adapter))
    return chosen, skipped


async def run(options: Options) -> dict[str, Any]:
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    chosen, skipped = _load(options.systems)
    workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    run_id = f"{time.strftime('%H%M%S')}{os.getpid() % 1000:03d}"
    async with _server(options.dsn) as server:
        await server.describe()
        bench = Bench(server, options.sizes, options.concurrency, workdir, run_id)
        await bench.setup_observer()
        print(
            f"PostgreSQL {server.settings.get('server_version')}"
            f" ({'throwaway' if server.throwaway else 'existing'} server);"
            f" round trips from {bench.round_trips_source}",
            flush=True,
        )
        ready: list[System] = []
        durations: dict[str, float] = {}
        try:
            for system in chosen:
                try:
                    await bench.prepare(system)
                    ready.append(system)
                except ProcessError as exc:
                    skipped[system.name] = f"set-up failed: {str(exc).splitlines()[0]}"
                    print(f"skipping {system.name}: {exc}", flush=True)
            for name in options.scenarios:
                print(f"\n[{name}]", flush=True)
                began = time.monotonic()
                await SCENARIOS[name](bench, ready)
                durations[name] = round(time.monotonic() - began, 1)
                print(f"  ({durations[name]:.0f}s)", flush=True)
        finally:
            for system in ready:
                await server.drop_database(system.template)
            await bench.drop_observer()
        settings = dict(server.settings)
        source = bench.round_trips_source
    failures = [e for s in ready for e in s.errors]
    if failures:
        print(f"\nlogs of the worker and client processes kept in {workdir}", flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {s.name: results.figures(s, options.sizes.processes) for s in ready}
    machine = machine_info()
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["load_average_at_start"] = load_at_start
    return {
        "run": {
            "started": started_at,
            "seconds": round(time.monotonic() - started, 1),
            "quick": options.quick,
            "concurrency": options.concurrency,
            "systems": [s.name for s in ready],
            "scenarios": list(options.scenarios),
            "scenario_seconds": durations,
            "sizes": options.sizes.as_dict(),
        },
        "machine": machine,
        "server": {
            "throwaway": options.dsn is None,
            "settings": settings,
            "round_trips_source": source,
        },
        "skipped": skipped,
        "results": figures,
        "systems": {
            s.name: {
                "label": s.adapter.label,
                "versions": s.versions,
                "rounds": s.results,
                "errors": s.errors,
            }
            for s in ready
        },
    }


def present(payload: dict[str, Any], options: Options) -> None:
    """Print the table and ratios; write the JSON file and the drain plot."""
    sizes = options.sizes
    figures = payload["results"]
    labels = {name: s["label"] for name, s in payload["systems"].items()}
    rows = report.metrics(sizes.processes, sizes.batch_size)
    machine = payload["machine"]
    pg = payload["server"]["settings"].get("server_version", "?")
    title = (
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, PostgreSQL {pg}, "
        f"concurrency {options.concurrency} per process"
    )
    header, body = report.table(figures, labels, rows)
    report.print_table(f"\nResults ({title})", header, body)
    if report.any_partial(figures):
        print(report.PARTIAL_NOTE)
    payload["ratios"] = report.ratios(figures, rows)
    if payload["ratios"]:
        header, body = report.ratio_table(payload["ratios"], labels, rows)
        report.print_table("\nratio jobqueue / peer", header, body)
    for name, reason in payload["skipped"].items():
        print(f"not measured: {name}: {reason}")
    path = results.write(payload, options.output)
    print(f"\nresults: {os.path.relpath(path)}")
    plot = drain_plot(
        {name: s["rounds"].get("drain", []) for name, s in payload["systems"].items()},
        labels,
        sizes.processes,
        f"Drain throughput, no-op jobs\n({title})",
        # The plot of a full run is kept in the repository; a quick run's is not.
        options.output / ("drain-quick.png" if options.quick else "drain.png"),
    )
    if plot:
        print(f"plot: {os.path.relpath(plot)}")
    elif payload["systems"]:
        print("no plot (nothing drained, or matplotlib is not installed)")
    sizes_text = f"{sizes.noisy_backlog:,} of A's jobs, then {sizes.noisy_jobs} of B's"
    noisy = noisy_plot(
        {name: s["rounds"].get("noisy", []) for name, s in payload["systems"].items()},
        labels,
        f"Noisy neighbour: {sizes_text} every {sizes.noisy_gap * 1000:.0f} ms\n({title})",
        options.output / ("noisy-quick.png" if options.quick else "noisy.png"),
    )
    if noisy:
        print(f"plot: {os.path.relpath(noisy)}")
    print(f"total time: {payload['run']['seconds']:.0f}s")
