"""Turning the rounds of a run into per-system figures and the result files.

A system's figures are one flat mapping (``drain_1p_per_s``, ``latency_p50_ms``,
``wal_bytes_per_job``, ...): medians over rounds, latency percentiles over the samples of all
rounds. ``<figure>_partial`` is true when a drain behind the figure was cut short at its time
limit (its rate then counts the jobs finished by then). The result file holds them under
``results``, beside every round's raw numbers.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.context import System
from bench.stats import median, percentile

LATEST = "latest.json"


def _median_of(rows: Iterable[dict[str, Any]], key: str) -> float | None:
    return median([row.get(key) for row in rows])


def figures(system: System, processes: Iterable[int]) -> dict[str, float | bool | None]:
    """The system's figures; a figure whose scenario did not run is absent."""
    r = system.results
    out: dict[str, float | bool | None] = {}
    if enqueue := r.get("enqueue"):
        for mode in ("single", "batch"):
            out[f"enqueue_{mode}_per_s"] = _median_of(
                [x for x in enqueue if x["mode"] == mode], "per_second"
            )
    if drains := r.get("drain"):
        for p in processes:
            these = [x for x in drains if x["processes"] == p]
            out[f"drain_{p}p_per_s"] = _median_of(these, "per_second")
            if any(x["timed_out"] for x in these):
                out[f"drain_{p}p_per_s_partial"] = True
        out["dead_tuples"] = _median_of([x for x in drains if x["processes"] == 1], "dead_tuples")
    if serial := r.get("serial"):
        out["serial_per_s"] = _median_of(serial, "per_second")
        if any(x["timed_out"] for x in serial):
            out["serial_per_s_partial"] = True
    if latency := r.get("latency"):
        samples = [s for x in latency for s in x["samples_ms"]]
        for pct in (50, 95, 99):
            out[f"latency_p{pct}_ms"] = percentile(samples, pct)
    if noisy := r.get("noisy"):
        b = [s for x in noisy for s in x["samples_ms"]]
        idle = [s for x in noisy for s in x["idle_samples_ms"]]
        for pct in (50, 99):
            out[f"noisy_b_p{pct}_ms"] = percentile(b, pct)
            out[f"noisy_idle_p{pct}_ms"] = percentile(idle, pct)
        out["noisy_a_drain_per_s"] = _median_of(noisy, "a_per_second")
        out["noisy_a_left_at_b_end"] = _median_of(noisy, "a_left_at_b_end")
        if any(x["timed_out"] for x in noisy):
            out["noisy_a_drain_per_s_partial"] = True
    if history := r.get("history"):
        out["history_enqueue_single_per_s"] = _median_of(history, "enqueue_single_per_second")
        out["history_enqueue_batch_per_s"] = _median_of(history, "enqueue_batch_per_second")
        out["history_drain_per_s"] = median([x["drain"]["per_second"] for x in history])
        if any(x["drain"]["timed_out"] for x in history):
            out["history_drain_per_s_partial"] = True
        for key in ("list_jobs_ms", "metrics_ms"):
            timed = [x["reads_ms"][key] for x in history if (x.get("reads_ms") or {}).get(key)]
            if timed:
                out[f"history_{key}"] = median(timed)
    if cost := r.get("cost"):
        for window in ("enqueue_single", "enqueue_batch", "processing"):
            for key in ("rows", "wal_bytes", "round_trips"):
                out[f"{window}_{key}_per_job"] = median([x[window][key] for x in cost])
        for key in ("rows", "wal_bytes", "round_trips"):
            single, run = out[f"enqueue_single_{key}_per_job"], out[f"processing_{key}_per_job"]
            out[f"{'rows_written' if key == 'rows' else key}_per_job"] = (
                single + run if single is not None and run is not None else None
            )
    if pressure := r.get("pressure"):
        for name, side in (("pressure", "pressured"), ("pressure_plain", "plain")):
            drains = [x[side] for x in pressure]
            out[f"{name}_drain_per_s"] = _median_of(drains, "per_second")
            out[f"{name}_dead_tuples"] = _median_of(drains, "dead_tuples")
            if any(x["timed_out"] for x in drains):
                out[f"{name}_drain_per_s_partial"] = True
        out["pressure_vs_plain"] = _median_of(pressure, "ratio")
    return out


def write(payload: dict[str, Any], directory: Path) -> Path:
    """Write the run's file, and the same as ``latest.json``; return the run's file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    shutil.copyfile(path, directory / LATEST)
    return path
