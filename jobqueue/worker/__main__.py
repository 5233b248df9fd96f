"""``python -m jobqueue.worker --queues q --concurrency N``: run a worker."""

from __future__ import annotations

from jobqueue.worker import main

raise SystemExit(main())
