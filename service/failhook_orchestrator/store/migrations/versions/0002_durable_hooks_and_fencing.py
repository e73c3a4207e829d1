"""Durable hook delivery and lease fencing.

The DLQ entry exists from the moment a run fails: its hook's next attempt time, the first attempt
of the current delivery round and the history of attempts are stored on it. A run's lease epoch
is bumped at every claim, so that a stale replica's late write is refused.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("hook_next_attempt_time", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("hook_round_start", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("hook_history", json_type, nullable=False, server_default="[]"))
        batch.create_index(
            "ix_dead_letters_hook_state_hook_lease_expires", ["hook_state", "hook_lease_expires"]
        )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lease_epoch", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_epoch")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_index("ix_dead_letters_hook_state_hook_lease_expires")
        batch.drop_column("hook_history")
        batch.drop_column("hook_round_start")
        batch.drop_column("hook_next_attempt_time")
