"""The machine a run happened on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    memory = _proc_field("/proc/meminfo", "MemTotal")
    memory_gib = round(int(memory.split()[0]) / 1024**2, 1) if memory else None
    return {
        "cores": os.cpu_count(),
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
