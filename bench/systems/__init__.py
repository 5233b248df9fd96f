"""The systems the benchmark knows, in the order they are reported.

Each entry names the module and class of an adapter (see :mod:`bench.systems.base`). Modules
are imported on demand, so listing the systems imports none of their packages.
"""

from __future__ import annotations

import importlib

from bench.systems.base import Adapter

REGISTRY: dict[str, str] = {
    "jobqueue": "bench.systems.jobqueue:JobqueueAdapter",
    "jobqueue-baseline": "bench.systems.jobqueue:JobqueueBaselineAdapter",
    "procrastinate": "bench.systems.procrastinate:ProcrastinateAdapter",
    "pgqueuer": "bench.systems.pgqueuer:PgQueuerAdapter",
    "oban": "bench.systems.oban:ObanAdapter",
    "celery": "bench.systems.celery:CeleryAdapter",
}


def load(name: str) -> Adapter:
    """An instance of the adapter registered under ``name``."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(REGISTRY)}") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    adapter = getattr(module, class_name)()
    if not isinstance(adapter, Adapter):
        raise TypeError(f"{target} is not a bench.systems.base.Adapter")
    return adapter
