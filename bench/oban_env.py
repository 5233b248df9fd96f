"""``python -m bench.oban_env``: a Python 3.12+ venv with oban, for when the harness's is older.

Creates ``bench/.venv-oban`` with the first interpreter found among ``--python``,
``python3.13``/``python3.12`` on PATH and pyenv's versions, and installs ``oban`` there.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys

from bench.systems.oban import VENV, venv_python

REQUIREMENT = "oban>=0.7,<0.8"


def _candidates(explicit: str | None) -> list[str]:
    found = [explicit] if explicit else []
    found += [p for name in ("python3.13", "python3.12") if (p := shutil.which(name))]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found += sorted(glob.glob(f"{root}/versions/3.1[2-9]*/bin/python3"), reverse=True)
    return found


def _usable(python: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    return out.stdout.strip() == "True"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oban_env")
    parser.add_argument("--python", help="a Python >= 3.12 to build the venv with")
    args = parser.parse_args(argv)
    python = next((p for p in _candidates(args.python) if _usable(p)), None)
    if python is None:
        sys.exit("no Python >= 3.12 found; pass --python")
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(venv_python()), "-m", "pip", "install", "-q", REQUIREMENT, "psycopg[binary]"],
        check=True,
    )
    print(f"oban installed in {VENV} (Python from {python})")


if __name__ == "__main__":
    main()
