"""Random, non-sequential identifiers for corpora, models, jobs and uploads."""
from __future__ import annotations

import secrets


def new_id() -> str:
    """32 lowercase hex characters (128 random bits)."""
    return secrets.token_hex(16)
