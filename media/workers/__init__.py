"""Media worker processes: the node's ingest feeds them frames, they serve the viewers."""

from media.workers.pool import RemoteViewer, WorkerPool

__all__ = ["RemoteViewer", "WorkerPool"]
