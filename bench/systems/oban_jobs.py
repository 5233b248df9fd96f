"""The Oban worker class (imported only where oban is installed).

Oban stores a job's worker as the class's dotted path and imports it in the worker process,
so the class lives at module level here rather than inside the adapter.
"""

from __future__ import annotations

from typing import Any

from oban import Job, worker

from bench import marks


@worker(queue="default")
class NoopWorker:
    """Records its start and returns."""

    async def process(self, job: Job) -> Any:
        marks.job_started(job.args["k"])
        return None
