"""The systems measured, one adapter module each, behind :class:`bench.systems.base.System`."""

from __future__ import annotations

from bench.systems.base import System
from bench.systems.jobqueue_system import JobqueueSystem
from bench.systems.pgqueuer_system import PgQueuerSystem
from bench.systems.procrastinate_system import ProcrastinateSystem

ALL: dict[str, type[System]] = {
    "jobqueue": JobqueueSystem,
    "procrastinate": ProcrastinateSystem,
    "pgqueuer": PgQueuerSystem,
}
