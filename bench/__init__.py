"""Side-by-side benchmark of jobqueue and peer PostgreSQL job queues (``python -m bench``)."""
