"""The README's first command, as a new user runs it: ``pip install .`` (no extras) into a
fresh virtualenv, then ``jobqueue --help``, ``jobqueue worker --help`` and ``jobqueue up --demo``.

Regression test for issue 14: ``pip install . && jobqueue up --demo`` failed with
``ModuleNotFoundError: No module named 'httpx'`` (and so did every verb, ``--help``
included), while the rest of the suite, which installs ``.[dev]``, passed. Nothing of the
test environment leaks in: the virtualenv has no access to this interpreter's packages,
and neither PYTHONPATH nor a DSN is passed down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.up_process import Up, completed_jobs, healthy, up_data_dir
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("PYTHONPATH", "JOBQUEUE_DSN", "DATABASE_URL", "JOBQUEUE_DATA_DIR", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


@pytest.fixture(scope="module")
def venv_bin() -> Iterator[Path]:
    """A fresh virtualenv with ``pip install .`` of this checkout, no extras."""
    root = Path(tempfile.mkdtemp(prefix="jobqueue-venv-"))
    os.chmod(root, 0o755)  # noqa: S103 - the embedded server's user reads the wheel's binaries
    try:
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
        # A copy of the sources: building in place would leave build/ in the checkout.
        source = root / "src"
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(".git", "test-artifacts", "build", "*.egg-info"),
        )
        done = subprocess.run(
            [str(root / "bin" / "pip"), "install", "--quiet", str(source)],
            env=_clean_env(), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        yield root / "bin"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(1200)
def test_help_works_after_a_plain_install(venv_bin: Path) -> None:
    for args in (["--help"], ["worker", "--help"], ["up", "--help"]):
        done = subprocess.run(
            [str(venv_bin / "jobqueue"), *args],
            env=_clean_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: jobqueue"), done.stdout
        assert done.stderr == ""


@pytest.mark.timeout(1200)
def test_up_demo_after_a_plain_install_runs_jobs_and_ctrl_c_leaves_nothing(
    venv_bin: Path,
) -> None:
    with up_data_dir() as data_dir:
        up = Up(
            [str(venv_bin / "jobqueue"), "up", "--demo", "--demo-interval", "0.2", "--port", "0"],
            _clean_env(JOBQUEUE_DATA_DIR=str(data_dir)),
        )
        try:
            url = up.wait_line(r"^Dashboard: (\S+)$", timeout=300).group(1)
            token = up.wait_line(r"^Admin token: (jq_\w+)").group(1)
            assert healthy(url)
            wait_for(lambda: completed_jobs(url, token) >= 1, timeout=180, what="a demo job")
            up.stop_and_check_nothing_left(up.tree(data_dir))
        finally:
            up.close()
