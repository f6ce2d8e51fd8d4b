"""Initial schema: corpora, models, jobs, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

from app.core.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "corpora",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(255)),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("n_documents", sa.Integer, nullable=False),
        sa.Column("vocabulary_size", sa.Integer, nullable=False),
        sa.Column("stats", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("corpus_id", sa.String(64), sa.ForeignKey("corpora.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("n_topics", sa.Integer),
        sa.Column("alpha0", sa.Float),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("checksum", sa.String(64)),
        sa.Column("alpha", sa.JSON),
        sa.Column("n_dropped_docs", sa.Integer),
        sa.Column("m2_eigenvalues", sa.JSON),
        sa.Column("tensor_eigenvalues", sa.JSON),
        sa.Column("timings", sa.JSON),
        sa.Column("diagnostics", sa.JSON),
        sa.Column("quality", sa.JSON),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("corpus_id", sa.String(64), index=True),
        sa.Column("model_id", sa.String(64), index=True),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("stage", sa.String(64)),
        sa.Column("stage_done", sa.Integer, nullable=False),
        sa.Column("stage_total", sa.Integer, nullable=False),
        sa.Column("stage_started_at", UTCDateTime()),
        sa.Column("stage_timings", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("soft_time_limit_s", sa.Integer, nullable=False),
        sa.Column("hard_time_limit_s", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("queues", sa.JSON, nullable=False),
        sa.Column("gpu", sa.Boolean, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("jobs")
    op.drop_table("models")
    op.drop_table("corpora")
