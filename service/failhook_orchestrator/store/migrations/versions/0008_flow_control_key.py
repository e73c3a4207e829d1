"""Flow-control keys of runs (``StartRunRequest.flow_control_key``); empty for older runs.

Revision ID: 0008_flow_control_key
Revises: 0007_run_deadline
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_flow_control_key"
down_revision = "0007_run_deadline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("flow_control_key", sa.String(length=128), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("flow_control_key")
