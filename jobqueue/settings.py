"""Typed settings of the web process, from the environment or command-line arguments."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields

from jobqueue import db


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return default if raw in (None, "") else int(raw)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return default if raw in (None, "") else float(raw)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the web app needs; every limit has a safe default."""

    dsn: str
    # Largest request body accepted (413 above). A batch of many jobs is the big case.
    max_body_bytes: int = 8 * 1024 * 1024
    # Largest `params` object of one job, checked before the database sees it (the SQL
    # enforces its own 256 KiB limit too).
    max_params_bytes: int = 256 * 1024
    default_page_size: int = 50
    max_page_size: int = 500
    # Origins allowed by CORS; empty means no CORS headers at all.
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # Connections of the request pool; fixed, so load never opens more.
    pool_size: int = 4
    # Events buffered per SSE subscriber before it is disconnected as too slow.
    sse_buffer: int = 1000
    sse_ping_seconds: float = 15.0
    # How often a subscriber's organizations are read again (a removed member stops
    # receiving within this delay).
    sse_refresh_seconds: float = 10.0
    # Longest wait between two attempts to reopen the LISTEN connection.
    listen_backoff_max_seconds: float = 5.0
    # Sets the Secure flag of the session cookie; turn off only for plain-HTTP development.
    secure_cookies: bool = True
    # Serve /metrics without a token (for a scraper on a private network).
    metrics_public: bool = False
    # Open event feeds per process and per user (429 over either), and events one request
    # replays from Last-Event-ID before it ends (the client resumes from the last one).
    sse_max_streams: int = 1000
    sse_max_per_user: int = 20
    sse_replay_max: int = 10_000
    # Failed authentications per client address and minute before it gets 429; 0: no limit.
    auth_failures: int = 30
    # Seconds a connection may take to send a request's head; seconds an idle kept-alive
    # connection stays open; connections at once (503 beyond).
    header_timeout: float = 10.0
    keep_alive_seconds: int = 5
    max_connections: int = 2000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from JOBQUEUE_* variables; keyword arguments win over the environment."""
        env = os.environ if env is None else env
        default = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        dsn = env.get("JOBQUEUE_DSN") or env.get("DATABASE_URL") or db.dsn_from_env()
        origins = tuple(
            o.strip() for o in env.get("JOBQUEUE_CORS_ORIGINS", "").split(",") if o.strip()
        )
        values: dict[str, object] = {
            "dsn": dsn,
            "max_body_bytes": _int(env, "JOBQUEUE_MAX_BODY_BYTES", default["max_body_bytes"]),
            "max_params_bytes": _int(env, "JOBQUEUE_MAX_PARAMS_BYTES", default["max_params_bytes"]),
            "max_page_size": _int(env, "JOBQUEUE_MAX_PAGE_SIZE", default["max_page_size"]),
            "cors_origins": origins,
            "pool_size": _int(env, "JOBQUEUE_WEB_POOL_SIZE", default["pool_size"]),
            "sse_buffer": _int(env, "JOBQUEUE_SSE_BUFFER", default["sse_buffer"]),
            "sse_ping_seconds": _float(
                env, "JOBQUEUE_SSE_PING_SECONDS", default["sse_ping_seconds"]
            ),
            "sse_refresh_seconds": _float(
                env, "JOBQUEUE_SSE_REFRESH_SECONDS", default["sse_refresh_seconds"]
            ),
            "secure_cookies": env.get("JOBQUEUE_INSECURE_COOKIES", "") not in ("1", "true"),
            "metrics_public": env.get("JOBQUEUE_METRICS_PUBLIC", "") in ("1", "true"),
            "sse_max_streams": _int(env, "JOBQUEUE_SSE_MAX_STREAMS", default["sse_max_streams"]),
            "sse_max_per_user": _int(env, "JOBQUEUE_SSE_MAX_PER_USER", default["sse_max_per_user"]),
            "sse_replay_max": _int(env, "JOBQUEUE_SSE_REPLAY_MAX", default["sse_replay_max"]),
            "auth_failures": _int(env, "JOBQUEUE_AUTH_FAILURES", default["auth_failures"]),
            "header_timeout": _float(env, "JOBQUEUE_HEADER_TIMEOUT", default["header_timeout"]),
            "keep_alive_seconds": _int(
                env, "JOBQUEUE_KEEP_ALIVE_SECONDS", default["keep_alive_seconds"]
            ),
            "max_connections": _int(env, "JOBQUEUE_MAX_CONNECTIONS", default["max_connections"]),
        }
        values.update(overrides)
        if not values["dsn"]:
            raise ValueError("set JOBQUEUE_DSN (or DATABASE_URL) to the jobqueue database")
        return cls(**values)  # type: ignore[arg-type]
