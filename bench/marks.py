"""Handler start marks: written by handlers in worker processes, read by the harness.

A handler calls :func:`job_started` with its job's key. When ``BENCH_MARKS`` names a file,
the call appends ``"<key> <monotonic ns> <pid>"`` to it with one ``write`` on an ``O_APPEND``
descriptor, so lines from several threads and processes never interleave. The clock is
``CLOCK_MONOTONIC``, which every process on the machine shares.

``BENCH_MARKS_MODE=first`` records only the first job of each process (the start of a drain,
at no cost per job); ``all`` records every job (pick-up latency).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PATH_VARIABLE = "BENCH_MARKS"
MODE_VARIABLE = "BENCH_MARKS_MODE"

_state: dict[str, object] = {}


def job_started(key: int | str) -> None:
    """Record that the handler for job ``key`` started now."""
    now = time.monotonic_ns()
    if "fd" not in _state:
        path = os.environ.get(PATH_VARIABLE)
        _state["fd"] = (
            os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None
        )
        _state["first_only"] = os.environ.get(MODE_VARIABLE, "all") == "first"
    fd = _state["fd"]
    if not isinstance(fd, int):
        return
    if _state["first_only"]:
        if _state.get("written"):
            return
        _state["written"] = True
    os.write(fd, f"{key} {now} {os.getpid()}\n".encode())


@dataclass(frozen=True)
class Mark:
    """One handler start."""

    key: int
    ns: int
    pid: int


class MarkReader:
    """Reads a marks file incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.marks: list[Mark] = []

    def poll(self) -> list[Mark]:
        """Read what was appended since the last call; return the new marks."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        new = []
        for line in lines:
            key, ns, pid = line.split()
            new.append(Mark(int(key), int(ns), int(pid)))
        self.marks.extend(new)
        return new


def read_marks(path: Path) -> list[Mark]:
    """All marks in a file."""
    reader = MarkReader(path)
    reader.poll()
    return reader.marks
