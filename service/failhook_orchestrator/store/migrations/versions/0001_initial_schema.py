"""Initial schema: runs, their completed steps, and the dead-letter queue.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("workflow", sa.String(length=128), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("failure_hook", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "retry_policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "pending_attempts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("output", sa.LargeBinary(), nullable=False),
        sa.Column(
            "failure",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.Column("finish_time", sa.BigInteger(), nullable=True),
        sa.Column("due_time", sa.BigInteger(), nullable=True),
        sa.Column("wake_time", sa.BigInteger(), nullable=True),
        sa.Column("trace_context", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.SmallInteger(), nullable=False),
        sa.Column("parent_run_id", sa.String(length=128), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("dead_letter_id", sa.String(length=64), nullable=False),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_runs_create_time_run_id"), ["create_time", "run_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_runs_lease_owner"), ["lease_owner"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_runs_state_lease_expires"), ["state", "lease_expires"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_runs_workflow_create_time_run_id"),
            ["workflow", "create_time", "run_id"],
            unique=False,
        )

    op.create_table(
        "dead_letters",
        sa.Column("dead_letter_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("workflow", sa.String(length=128), nullable=False),
        sa.Column("failed_step", sa.String(length=256), nullable=False),
        sa.Column("fail_status", sa.Integer(), nullable=False),
        sa.Column(
            "failure",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("dead_letter_time", sa.BigInteger(), nullable=False),
        sa.Column("hook_state", sa.SmallInteger(), nullable=False),
        sa.Column("hook_attempts", sa.Integer(), nullable=False),
        sa.Column("hook_last_error", sa.Text(), nullable=False),
        sa.Column("hook_result", sa.Text(), nullable=False),
        sa.Column("hook_target", sa.Text(), nullable=False),
        sa.Column("hook_last_status", sa.Integer(), nullable=False),
        sa.Column("hook_last_attempt_time", sa.BigInteger(), nullable=True),
        sa.Column("hook_lease_owner", sa.String(length=128), nullable=True),
        sa.Column("hook_lease_expires", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_dead_letters_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dead_letter_id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("run_id", name=op.f("uq_dead_letters_run_id")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letters_dead_letter_time_dead_letter_id"),
            ["dead_letter_time", "dead_letter_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_dead_letters_fail_status_dead_letter_time_dead_letter_id"),
            ["fail_status", "dead_letter_time", "dead_letter_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_dead_letters_failed_step_dead_letter_time_dead_letter_id"),
            ["failed_step", "dead_letter_time", "dead_letter_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_dead_letters_hook_state_dead_letter_time_dead_letter_id"),
            ["hook_state", "dead_letter_time", "dead_letter_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_dead_letters_workflow_dead_letter_time_dead_letter_id"),
            ["workflow", "dead_letter_time", "dead_letter_id"],
            unique=False,
        )

    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("output", sa.LargeBinary(), nullable=False),
        sa.Column(
            "attempts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("complete_time", sa.BigInteger(), nullable=False),
        sa.Column("wake_time", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_steps_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "idx", name=op.f("pk_steps")),
    )


def downgrade() -> None:

    op.drop_table("steps")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_workflow_dead_letter_time_dead_letter_id"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_hook_state_dead_letter_time_dead_letter_id"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_failed_step_dead_letter_time_dead_letter_id"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_fail_status_dead_letter_time_dead_letter_id"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_dead_letter_time_dead_letter_id"))

    op.drop_table("dead_letters")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_workflow_create_time_run_id"))
        batch_op.drop_index(batch_op.f("ix_runs_state_lease_expires"))
        batch_op.drop_index(batch_op.f("ix_runs_lease_owner"))
        batch_op.drop_index(batch_op.f("ix_runs_create_time_run_id"))

    op.drop_table("runs")
