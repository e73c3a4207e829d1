"""Bulk operations on the DLQ as durable jobs (engine/bulk_jobs.py, store/bulk_operations.py).

A job row, leased like a run, and its snapshot of entry ids in order.

Revision ID: 0005_bulk_operations
Revises: 0004_parked_runs
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_bulk_operations"
down_revision = "0004_parked_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.create_table(
        "bulk_operations",
        sa.Column("operation_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("filter", json_type, nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("changes", json_type, nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("errors", json_type, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.Column("finish_time", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("operation_id", name=op.f("pk_bulk_operations")),
    )
    op.create_index(
        "ix_bulk_operations_create_time_operation_id", "bulk_operations", ["create_time", "operation_id"]
    )
    op.create_index("ix_bulk_operations_state_lease_expires", "bulk_operations", ["state", "lease_expires"])
    op.create_table(
        "bulk_operation_entries",
        sa.Column("operation_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("dead_letter_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["bulk_operations.operation_id"],
            name=op.f("fk_bulk_operation_entries_operation_id_bulk_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_id", "idx", name=op.f("pk_bulk_operation_entries")),
    )


def downgrade() -> None:
    op.drop_table("bulk_operation_entries")
    op.drop_index("ix_bulk_operations_state_lease_expires", table_name="bulk_operations")
    op.drop_index("ix_bulk_operations_create_time_operation_id", table_name="bulk_operations")
    op.drop_table("bulk_operations")
