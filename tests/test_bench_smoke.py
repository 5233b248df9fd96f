"""The benchmark runs end to end at its smallest size (a smoke test; it times nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_quick_benchmark_runs_and_reports_every_system(server_dsn: str, tmp_path: Path) -> None:
    # Its own output folder: the repository's results folder holds the last real run's.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--systems",
            "jobqueue,procrastinate",
            "--dsn",
            server_dsn,
            "--output",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ratio jobqueue / peer" in run.stdout
    results = json.loads((tmp_path / "latest.json").read_text())["results"]
    for system in ("jobqueue", "procrastinate"):
        assert results[system]["drain_1p_per_s"] > 0
        assert results[system]["latency_p50_ms"] > 0
