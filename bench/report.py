"""The printed table, the ratios jobqueue / peer, and the drain plot."""

from __future__ import annotations

from pathlib import Path

COLUMNS = (
    ("enqueue_single_per_s", "enqueue 1/tx /s", "{:,.0f}"),
    ("enqueue_batch_per_s", "enqueue batch /s", "{:,.0f}"),
    ("drain_1p_per_s", "drain 1p /s", "{:,.0f}"),
    ("drain_2p_per_s", "drain 2p /s", "{:,.0f}"),
    ("drain_4p_per_s", "drain 4p /s", "{:,.0f}"),
    ("latency_p50_ms", "p50 ms", "{:.1f}"),
    ("latency_p95_ms", "p95 ms", "{:.1f}"),
    ("latency_p99_ms", "p99 ms", "{:.1f}"),
    ("wal_bytes_per_job", "WAL B/job", "{:,.0f}"),
    ("rows_written_per_job", "rows/job", "{:.1f}"),
    ("commits_per_job", "commits/job", "{:.2f}"),
    ("pressure_drain_per_s", "pressure drain /s", "{:,.0f}"),
    ("pressure_dead_tuples", "pressure dead tup", "{:,.0f}"),
    ("history_drain_per_s", "history drain /s", "{:,.0f}"),
    ("history_enqueue_batch_per_s", "history enq batch /s", "{:,.0f}"),
    ("history_list_jobs_ms", "history list_jobs ms", "{:.1f}"),
    ("history_metrics_ms", "history metrics ms", "{:.1f}"),
)


def print_table(results: dict[str, dict[str, float]], processes: tuple[int, ...]) -> None:
    systems = list(results)
    rows = [
        (label, key, fmt) for key, label, fmt in COLUMNS if any(key in results[s] for s in systems)
    ]
    width = max(len(label) for label, _, _ in rows) + 2
    print("\n" + "".ljust(width) + "".join(s.rjust(16) for s in systems))
    for label, key, fmt in rows:
        cells = [fmt.format(results[s][key]) if key in results[s] else "-" for s in systems]
        print(label.ljust(width) + "".join(c.rjust(16) for c in cells))
    if "jobqueue" not in results:
        return
    print("\nratio jobqueue / peer (higher is better for rates, lower for ms, bytes, rows)")
    peers = [s for s in systems if s != "jobqueue"]
    print("".ljust(width) + "".join(p.rjust(16) for p in peers))
    for label, key, _ in rows:
        mine = results["jobqueue"].get(key)
        cells = []
        for peer in peers:
            theirs = results[peer].get(key)
            cells.append(f"{mine / theirs:.2f}x" if mine is not None and theirs else "-")
        print(label.ljust(width) + "".join(c.rjust(16) for c in cells))


def write_plot(
    results: dict[str, dict[str, float]], processes: tuple[int, ...], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(results), 1)
    for index, (system, values) in enumerate(results.items()):
        xs = [p + (index - (len(results) - 1) / 2) * width for p in range(len(processes))]
        ys = [values.get(f"drain_{p}p_per_s", 0.0) for p in processes]
        axes.bar(xs, ys, width, label=system)
    axes.set_xticks(
        range(len(processes)), [f"{p} process{'es' if p > 1 else ''}" for p in processes]
    )
    axes.set_ylabel("no-op jobs drained per second")
    axes.set_title("Drain throughput (concurrency 10 per process)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
