"""The one error type for input the caller can fix.

``InvalidInput`` (a ``ValueError``) is raised by the engine (gpu/) and by ingestion (app/ingest)
for anything the caller can correct: a bad parameter, a malformed count matrix, a corpus
too small for the requested fit, an upload that breaks a limit. The API maps it once to 422
with its message; a worker fails the job with it and never retries. Every other exception
is a server fault: the API answers 500 without its message, and a worker retries the job.
"""
from __future__ import annotations


class InvalidInput(ValueError):
    """Input the caller can fix; the message says what was wrong and where."""


__all__ = ["InvalidInput"]
