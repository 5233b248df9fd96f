"""``drain.png``: drain throughput per system and number of worker processes; ``noisy.png``:
the noisy neighbour's pick-up latency of each of B's jobs, per system."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def drain_plot(
    results: dict[str, list[dict[str, Any]]],
    labels: dict[str, str],
    processes: tuple[int, ...],
    title: str,
    path: Path,
) -> Path | None:
    """Grouped bars (median, whiskers from slowest to fastest round).

    None when there is nothing to plot or matplotlib is not installed.
    """
    if not any(results.values()):
        return None
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.stats import median

    systems = [name for name, rows in results.items() if rows]
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for i, name in enumerate(systems):
        mids, lows, highs = [], [], []
        for p in processes:
            rates = [
                r["per_second"] for r in results[name] if r["processes"] == p and r["per_second"]
            ]
            mid = median(rates) or 0.0
            mids.append(mid)
            lows.append(mid - min(rates, default=mid))
            highs.append(max(rates, default=mid) - mid)
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(processes))]
        bars = ax.bar(xs, mids, width, yerr=[lows, highs], capsize=3, label=labels[name])
        ax.bar_label(bars, labels=[f"{m:,.0f}" for m in mids], fontsize=7, padding=2)
    ax.set_xticks(range(len(processes)), [f"{p} process{'es' if p > 1 else ''}" for p in processes])
    ax.set_ylabel("no-op jobs finished per second")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def noisy_plot(
    results: dict[str, list[dict[str, Any]]], labels: dict[str, str], title: str, path: Path
) -> Path | None:
    """B's pick-up latency, job by job in submit order, behind A's backlog (solid) and alone
    (dotted), log scale. None when there is nothing to plot or matplotlib is not installed."""
    rounds = {name: rows[0] for name, rows in results.items() if rows}
    if not rounds:
        return None
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for i, (name, row) in enumerate(rounds.items()):
        color = f"C{i}"
        ax.plot(row["samples_ms"], color=color, label=labels[name])
        ax.plot(row["idle_samples_ms"], color=color, linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("B's jobs, in the order submitted (dotted: B alone on an idle queue)")
    ax.set_ylabel("pick-up latency (ms)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
