"""gunicorn settings for the production-like stack (docker-compose) and the benchmarks."""
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "sync"
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG") else None


def child_exit(server, worker):
    # Metrics of a dead worker are kept as totals, its live gauges dropped (prometheus_client multiprocess mode).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
