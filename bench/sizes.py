"""How much work each scenario does: the default run and the ``--quick`` smoke run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    """Counts and bounds of one run. Every loop of the benchmark is bounded by these."""

    #: Rounds of the enqueue, drain and latency scenarios; their results are medians.
    repetitions: int
    #: Rounds of the history, pressure and cost scenarios.
    repetitions_slow: int
    enqueue_single: int
    enqueue_batches: int
    batch_size: int
    drain_jobs: int
    processes: tuple[int, ...]
    #: Jobs of the drain by one worker process at concurrency 1 (scenario ``serial``).
    serial_jobs: int
    latency_jobs: int
    history_jobs: int
    history_single: int
    history_batch: int
    cost_jobs: int
    pressure_jobs: int
    #: The noisy neighbour: organization A's backlog, then B's jobs, one every noisy_gap s.
    noisy_backlog: int
    noisy_jobs: int
    noisy_gap: float
    #: Seconds a drain may take before it is cut short (its rate is then from the jobs
    #: finished so far, and marked as partial).
    drain_timeout: float
    #: The same for the drain of the history scenario.
    history_drain_timeout: float
    #: Seconds a client process may take.
    client_timeout: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_repetitions(self, repetitions: int) -> Sizes:
        return replace(self, repetitions=repetitions)


DEFAULT = Sizes(
    repetitions=3,
    repetitions_slow=1,
    enqueue_single=1000,
    enqueue_batches=5,
    batch_size=1000,
    drain_jobs=2000,
    processes=(1, 2, 4),
    serial_jobs=2000,
    latency_jobs=100,
    history_jobs=1_000_000,
    history_single=500,
    history_batch=2000,
    cost_jobs=1000,
    pressure_jobs=2000,
    noisy_backlog=20000,
    noisy_jobs=100,
    noisy_gap=0.02,
    drain_timeout=180.0,
    history_drain_timeout=60.0,
    client_timeout=600.0,
)

QUICK = Sizes(
    repetitions=1,
    repetitions_slow=1,
    enqueue_single=100,
    enqueue_batches=2,
    batch_size=1000,
    drain_jobs=300,
    processes=(1, 2, 4),
    serial_jobs=300,
    latency_jobs=20,
    history_jobs=5000,
    history_single=50,
    history_batch=300,
    cost_jobs=200,
    pressure_jobs=300,
    noisy_backlog=2000,
    noisy_jobs=20,
    noisy_gap=0.02,
    drain_timeout=60.0,
    history_drain_timeout=30.0,
    client_timeout=120.0,
)
