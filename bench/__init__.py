"""Side-by-side benchmark of Postgres-backed job systems (``python -m bench``).

This package imports nothing on purpose: its client and worker modules also run under other
interpreters that have only one system's packages installed.
"""

from __future__ import annotations
