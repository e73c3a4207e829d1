"""Run labels (``StartRunRequest.labels``): a JSON object on each run, ``{}`` for older runs.

Revision ID: 0006_run_labels
Revises: 0005_bulk_operations
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_run_labels"
down_revision = "0005_bulk_operations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("labels", json_type, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("labels")
