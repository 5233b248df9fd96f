"""Where handlers run: ``inline`` in the worker process, or ``process`` in a killable child.

A job type may name its mode (``register_job_type(..., execution="process")``); a type that
names none runs in the worker's default, ``--execution`` (``inline`` unless told). Process
mode stops a handler for real at its deadline or on cancel (SIGTERM, then SIGKILL after
``--kill-grace``); inline mode can only ask it to stop (``ctx.is_canceled()``; an async
handler is also cancelled at its ``await``), and keeps its slot and its attempt until it
does. See docs/workers.md for what each costs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

INLINE = "inline"
PROCESS = "process"
MODES = (INLINE, PROCESS)

# Where a JobqueueWorker puts its settings, and its ProcessPool, in the job context's
# additional_context.
SETTINGS_KEY = "jobqueue.execution"
PROCESSES_KEY = "jobqueue.processes"

DEFAULT_KILL_GRACE = 5.0
MAX_KILL_GRACE = 300.0


@dataclass(frozen=True)
class ExecutionSettings:
    """The mode of job types that name none, and how long a handler in a child process
    gets between SIGTERM and SIGKILL."""

    default: str = INLINE
    kill_grace: float = DEFAULT_KILL_GRACE

    def __post_init__(self) -> None:
        if self.default not in MODES:
            raise ValueError(f"execution must be one of {', '.join(MODES)}, got {self.default!r}")
        if not 0 < self.kill_grace <= MAX_KILL_GRACE:
            raise ValueError(
                f"the kill grace must be more than 0 and at most {MAX_KILL_GRACE:g} seconds,"
                f" got {self.kill_grace!r}"
            )

    @classmethod
    def from_env(cls) -> ExecutionSettings:
        """Settings from JOBQUEUE_EXECUTION and JOBQUEUE_KILL_GRACE (seconds), for workers
        started by the procrastinate CLI."""
        mode = os.environ.get("JOBQUEUE_EXECUTION") or INLINE
        raw = os.environ.get("JOBQUEUE_KILL_GRACE")
        try:
            grace = float(raw) if raw else DEFAULT_KILL_GRACE
        except ValueError as exc:
            raise ValueError(
                f"JOBQUEUE_KILL_GRACE must be a number of seconds, got {raw!r}"
            ) from exc
        return cls(default=mode, kill_grace=grace)


def settings_from(additional_context: dict[str, Any] | None) -> ExecutionSettings:
    """The settings a worker was started with, else those of the environment."""
    settings = (additional_context or {}).get(SETTINGS_KEY)
    return settings if isinstance(settings, ExecutionSettings) else ExecutionSettings.from_env()
