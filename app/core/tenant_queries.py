"""Tenant-scoped reads shared by corpora, models and jobs: one place decides what a tenant
may see (another tenant's row is reported exactly like a missing one)."""
from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.api_errors import not_found

Row = TypeVar("Row")


def get_owned(session: Session, table: type[Row], tenant_id: str, row_id: str, kind: str) -> Row:
    """The row ``row_id`` of ``table`` if it belongs to ``tenant_id``, else a 404 naming ``kind``."""
    row = session.get(table, row_id)
    if row is None or row.tenant_id != tenant_id:
        raise not_found(kind, row_id)
    return row


def list_owned(session: Session, table: type[Row], tenant_id: str, *, offset: int, limit: int,
               **equal: Any) -> list[Row]:
    """A tenant's rows, newest first; keyword filters whose value is None are ignored."""
    query = select(table).where(table.tenant_id == tenant_id)
    for column, value in equal.items():
        if value is not None:
            query = query.where(getattr(table, column) == value)
    query = query.order_by(table.created_at.desc(), table.id).offset(offset).limit(limit)
    return list(session.scalars(query))
