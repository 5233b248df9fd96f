"""Where the ``jobqueue`` command finds its database.

``--dsn`` wins, then ``JOBQUEUE_DSN``, then ``DATABASE_URL``. Failing those, a ``jobqueue up``
running on this machine with an embedded database leaves a small state file in its data
directory (``up.json``: the DSN, its pid and the dashboard's URL), written when the database is
ready and removed when ``up`` stops, so the next commands of the README work in another
terminal without ``--dsn``. The data directory is ``--data-dir`` of ``up``, else
``JOBQUEUE_DATA_DIR``, else the user's data directory; a state file whose process is gone
(``up`` was killed) is ignored.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from jobqueue import db

STATE_FILE = "up.json"


def default_data_dir() -> Path:
    """``JOBQUEUE_DATA_DIR``, else the user's data directory for jobqueue."""
    configured = os.environ.get("JOBQUEUE_DATA_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("jobqueue"))


@dataclass(frozen=True)
class UpState:
    """What a running ``jobqueue up`` tells the other commands."""

    dsn: str
    pid: int
    url: str
    token_id: int | None = None

    def alive(self) -> bool:
        """Whether the ``up`` that wrote this is still running."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # running, as another user
        return True


def state_path(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / STATE_FILE


def read_state(data_dir: Path | None = None) -> UpState | None:
    """The state file of ``up`` in the data directory, alive or not; None if absent or
    unreadable."""
    try:
        raw = json.loads(state_path(data_dir).read_text())
        return UpState(
            dsn=str(raw["dsn"]),
            pid=int(raw["pid"]),
            url=str(raw["url"]),
            token_id=None if raw.get("token_id") is None else int(raw["token_id"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(data_dir: Path, state: UpState) -> None:
    """Write the state file, readable by its owner only (it names a trusted connection)."""
    path = state_path(data_dir)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(state), out)
    temporary.replace(path)


def remove_state(data_dir: Path) -> None:
    state_path(data_dir).unlink(missing_ok=True)


def running_up_dsn() -> str | None:
    """The DSN of a ``jobqueue up`` running on the default data directory, if any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when there is no XDG session
        state = read_state()
    return state.dsn if state is not None and state.alive() else None


def resolve_dsn(explicit: str | None = None) -> str | None:
    """The database the command should use: ``--dsn``, the environment, a running ``up``."""
    return explicit or db.dsn_from_env() or running_up_dsn()
