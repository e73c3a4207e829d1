"""Parked runs: why and since when a run (or a hook delivery) waits for its target.

A run parked by its target's circuit breaker (or an operator's pause) keeps the reason, a
sentence, the time it parked and the target it waits for; ``attempt_offset`` counts the failed
attempts made before it parked, which stay in the history but not in the retry budget. A DLQ
entry's hook delivery parks the same way (``hook_park_detail``, ``hook_park_time``).

Revision ID: 0004_parked_runs
Revises: 0003_page_token_key
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_parked_runs"
down_revision = "0003_page_token_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("attempt_offset", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("park_reason", sa.SmallInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("park_detail", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("park_time", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("park_target", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("hook_park_detail", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("hook_park_time", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("hook_park_time")
        batch.drop_column("hook_park_detail")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("park_target")
        batch.drop_column("park_time")
        batch.drop_column("park_detail")
        batch.drop_column("park_reason")
        batch.drop_column("attempt_offset")
