"""Run deadlines (``StartRunRequest.execution_timeout``): the timeout and the deadline it gives.

Revision ID: 0007_run_deadline
Revises: 0006_run_labels
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_run_deadline"
down_revision = "0006_run_labels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("execution_timeout_us", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("deadline_time", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("deadline_time")
        batch.drop_column("execution_timeout_us")
