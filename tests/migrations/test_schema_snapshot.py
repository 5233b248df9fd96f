"""The migrated schema of ``jobqueue`` against a committed snapshot taken from the catalog.

An intended schema change regenerates it: ``JOBQUEUE_UPDATE_SNAPSHOT=1 pytest tests/migrations``;
the diff of ``schema_snapshot.txt`` then shows reviewers exactly what changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

SNAPSHOT = Path(__file__).with_name("schema_snapshot.txt")

# One line per object of schema jobqueue, sorted, so a diff names exactly what changed.
SCHEMA_QUERY = """
SELECT 'table ' || c.relname || ' (' || c.relkind::text || ')'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'jobqueue' AND c.relkind IN ('r', 'v', 'm', 'p', 'S')
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' '
       || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'jobqueue' AND c.relkind IN ('r', 'v', 'p') AND a.attnum > 0
  AND NOT a.attisdropped
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'jobqueue'
UNION ALL
SELECT 'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
-- PostgreSQL 18 also records NOT NULL as constraints; the columns above already say it,
-- and leaving them out keeps the snapshot the same on every supported version.
WHERE n.nspname = 'jobqueue' AND k.contype <> 'n'
UNION ALL
SELECT 'type ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'jobqueue'
GROUP BY t.typname
UNION ALL
SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') -> '
       || pg_get_function_result(p.oid)
       || CASE WHEN p.prosecdef THEN ' security definer' ELSE '' END
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'jobqueue'
UNION ALL
SELECT 'trigger ' || c.relname || '.' || t.tgname
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'jobqueue' AND NOT t.tgisinternal
ORDER BY 1
"""


def schema_lines(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [line for (line,) in conn.execute(SCHEMA_QUERY)]


def test_schema_matches_the_committed_snapshot(dsn: str) -> None:
    """Regenerate with JOBQUEUE_UPDATE_SNAPSHOT=1 after an intended schema change."""
    current = "\n".join(schema_lines(dsn)) + "\n"
    if os.environ.get("JOBQUEUE_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), "no snapshot: run with JOBQUEUE_UPDATE_SNAPSHOT=1"
    assert current.splitlines() == SNAPSHOT.read_text().splitlines(), (
        "schema differs from tests/migrations/schema_snapshot.txt; if intended, regenerate it "
        "with JOBQUEUE_UPDATE_SNAPSHOT=1"
    )
