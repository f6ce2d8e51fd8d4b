"""Topic labels: a person's name for each topic, stored with the model ({"topic": label}).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("topic_labels", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("topic_labels")
