"""Celery workers: thin tasks over plain job logic (workers.jobs, workers.fit)."""
