"""The printed table of a run, and the jobqueue/peer ratios."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Figures = dict[str, Any]
SUBJECT = "jobqueue"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    digits: int
    higher_is_better: bool

    def get(self, figures: Figures) -> float | None:
        value = figures.get(self.key)
        return float(value) if isinstance(value, int | float) else None


def metrics(processes: tuple[int, ...], batch_size: int) -> list[Metric]:
    rows = [
        Metric("enqueue_single_per_s", "enqueue, 1 per transaction (jobs/s)", 0, True),
        Metric("enqueue_batch_per_s", f"enqueue, batches of {batch_size:,} (jobs/s)", 0, True),
    ]
    rows += [
        Metric(f"drain_{p}p_per_s", f"drain, {p} process{'es' if p > 1 else ''} (jobs/s)", 0, True)
        for p in processes
    ]
    return rows + [
        Metric("serial_per_s", "drain, 1 process at concurrency 1 (jobs/s)", 0, True),
        Metric("latency_p50_ms", "pick-up latency p50 (ms)", 2, False),
        Metric("latency_p95_ms", "pick-up latency p95 (ms)", 2, False),
        Metric("latency_p99_ms", "pick-up latency p99 (ms)", 2, False),
        Metric("noisy_idle_p50_ms", "noisy: B alone, pick-up p50 (ms)", 2, False),
        Metric("noisy_idle_p99_ms", "noisy: B alone, pick-up p99 (ms)", 2, False),
        Metric("noisy_b_p50_ms", "noisy: B behind A's backlog, pick-up p50 (ms)", 2, False),
        Metric("noisy_b_p99_ms", "noisy: B behind A's backlog, pick-up p99 (ms)", 2, False),
        Metric("noisy_a_drain_per_s", "noisy: A's drain, 1 process (jobs/s)", 0, True),
        Metric("noisy_a_left_at_b_end", "noisy: A's jobs left when B's last started", 0, False),
        Metric("history_enqueue_single_per_s", "history: enqueue, 1 per txn (jobs/s)", 0, True),
        Metric("history_enqueue_batch_per_s", "history: enqueue, batches (jobs/s)", 0, True),
        Metric("history_drain_per_s", "history: drain, 1 process (jobs/s)", 0, True),
        Metric("history_list_jobs_ms", "history: list_jobs first page (ms)", 1, False),
        Metric("history_metrics_ms", "history: metrics, one organization (ms)", 1, False),
        Metric("rows_written_per_job", "rows written / job (enqueue + run)", 1, False),
        Metric("wal_bytes_per_job", "WAL bytes / job (enqueue + run)", 0, False),
        Metric("round_trips_per_job", "round trips / job (enqueue + run)", 2, False),
        Metric("enqueue_batch_wal_bytes_per_job", "WAL bytes / job, batch enqueue", 0, False),
        Metric("processing_wal_bytes_per_job", "WAL bytes / job, run only", 0, False),
        Metric("processing_round_trips_per_job", "round trips / job, run only", 2, False),
        Metric("pressure_drain_per_s", "pressure: drain, 1 process (jobs/s)", 0, True),
        Metric("pressure_plain_drain_per_s", "pressure: same drain without (jobs/s)", 0, True),
        Metric("pressure_vs_plain", "pressure: throughput / without", 2, True),
        Metric("pressure_dead_tuples", "pressure: dead tuples after", 0, False),
        Metric("pressure_plain_dead_tuples", "pressure: dead tuples after, without", 0, False),
    ]


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


PARTIAL_NOTE = "* a drain was cut short at its time limit: the rate of the jobs finished by then"


def _cell(m: Metric, figures: Figures) -> str:
    return _fmt(m.get(figures), m.digits) + ("*" if figures.get(f"{m.key}_partial") else "")


def table(
    figures: dict[str, Figures], labels: dict[str, str], rows: list[Metric]
) -> tuple[list[str], list[list[str]]]:
    header = ["metric"] + [labels[name] for name in figures]
    body = [
        [m.label] + [_cell(m, f) for f in figures.values()]
        for m in rows
        if any(m.get(f) is not None for f in figures.values())
    ]
    return header, body


def any_partial(figures: dict[str, Figures]) -> bool:
    return any(k.endswith("_partial") and v for f in figures.values() for k, v in f.items())


def ratios(figures: dict[str, Figures], rows: list[Metric]) -> dict[str, dict[str, float]]:
    """jobqueue / peer for every metric both have; empty when jobqueue has no figures."""
    if SUBJECT not in figures:
        return {}
    out: dict[str, dict[str, float]] = {}
    for peer, theirs in figures.items():
        if peer == SUBJECT:
            continue
        for m in rows:
            a, b = m.get(figures[SUBJECT]), m.get(theirs)
            if a is not None and b:
                out.setdefault(peer, {})[m.key] = round(a / b, 3)
    return out


def ratio_table(
    found: dict[str, dict[str, float]], labels: dict[str, str], rows: list[Metric]
) -> tuple[list[str], list[list[str]]]:
    peers = list(found)
    header = ["metric (↑ more is better, ↓ less)"] + [labels[p] for p in peers]
    body = []
    for m in rows:
        cells = [f"{found[p][m.key]:.2f}" if m.key in found[p] else "-" for p in peers]
        if any(c != "-" for c in cells):
            body.append([f"{m.label} {'↑' if m.higher_is_better else '↓'}"] + cells)
    return header, body


def print_table(title: str, header: list[str], body: list[list[str]]) -> None:
    if not body:
        return
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        print(f"\n{title}")
        for row in [header, *body]:
            print(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        return
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in body:
        table.add_row(*row)
    Console(width=max(100, 44 + 15 * len(header))).print(table)
