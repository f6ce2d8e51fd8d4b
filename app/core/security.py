"""API keys: generation, storage as a salted HMAC-SHA256, constant-time verification.

A key as handed to the user is ``st_<key_id>_<secret>``: ``key_id`` (16 hex characters) is
public and finds the row; ``secret`` (43 url-safe characters, 256 random bits) is shown once
and only ``HMAC-SHA256(salt, secret)`` is stored, with a random per-key salt.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.core.tables import ApiKeyRow
from gpu.errors import InvalidInput

TOKEN_PREFIX = "st_"
_TOKEN = re.compile(r"st_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_DUMMY_SALT = "0" * 32


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: ``token`` is the only copy of the secret."""

    key_id: str
    tenant_id: str
    token: str


def hash_secret(salt: str, secret: str) -> str:
    """Hex HMAC-SHA256 of ``secret`` keyed with ``salt`` (64 hex characters)."""
    return hmac.new(salt.encode("ascii"), secret.encode("ascii"), hashlib.sha256).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def check_tenant_id(tenant_id: str) -> str:
    if not _TENANT.fullmatch(tenant_id or ""):
        raise InvalidInput(f"tenant {tenant_id!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return tenant_id


def create_api_key(session: Session, tenant_id: str) -> NewKey:
    """Add a key row for ``tenant_id`` to ``session`` (the caller commits); return the token."""
    check_tenant_id(tenant_id)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    session.add(ApiKeyRow(id=key_id, tenant_id=tenant_id, salt=salt, secret_hash=hash_secret(salt, secret),
                          created_at=utcnow(), revoked_at=None))
    return NewKey(key_id=key_id, tenant_id=tenant_id, token=f"{TOKEN_PREFIX}{key_id}_{secret}")


def verify_token(session: Session, token: str) -> str | None:
    """The tenant of a valid, unrevoked key, else None. The hash comparison is constant-time,
    and a hash is computed even for unknown ids so timing does not tell ids apart."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = session.get(ApiKeyRow, key_id)
    expected = row.secret_hash if row is not None else "0" * 64
    actual = hash_secret(row.salt if row is not None else _DUMMY_SALT, secret)
    matches = hmac.compare_digest(expected.encode("ascii"), actual.encode("ascii"))
    if row is None or not matches or row.revoked_at is not None:
        return None
    return row.tenant_id


def list_api_keys(session: Session, tenant_id: str | None = None) -> list[ApiKeyRow]:
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if tenant_id is not None:
        query = query.where(ApiKeyRow.tenant_id == tenant_id)
    return list(session.scalars(query))


def revoke_api_key(session: Session, key_id: str) -> ApiKeyRow:
    """Mark key ``key_id`` revoked (idempotent); ValueError if there is no such key."""
    row = session.get(ApiKeyRow, key_id)
    if row is None:
        raise InvalidInput(f"API key {key_id!r} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts local connections ('localhost', 127.x, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, require_api_keys: bool) -> str | None:
    """Refuse (ValueError) an open API on a non-loopback host; a warning line when open."""
    if require_api_keys:
        return None
    if not is_loopback(host):
        raise InvalidInput(f"refusing to bind {host!r} without API keys: set REQUIRE_API_KEYS=true and create keys "
                         "with 'spectral-topics keys create --tenant T', or bind 127.0.0.1")
    return (f"API running OPEN on {host} (REQUIRE_API_KEYS=false): requests without a key act as the "
            "default tenant; only this machine can connect")
