"""Table definitions (SQLAlchemy Core). Migrations under ``migrations/`` must match them.

Times are epoch microseconds (BIGINT). JSON columns become JSONB on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["bulk_operation_entries", "bulk_operations", "dead_letters", "metadata", "runs", "steps"]

JsonColumn = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("workflow", String(128), nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("failure_hook", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JsonColumn, nullable=False),
    Column("retry_policy", JsonColumn, nullable=False),
    Column("pending_attempts", JsonColumn, nullable=False),
    Column("output", LargeBinary, nullable=False),
    Column("failure", JsonColumn, nullable=True),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("finish_time", BigInteger, nullable=True),
    Column("due_time", BigInteger, nullable=True),
    Column("wake_time", BigInteger, nullable=True),
    Column("trace_context", String(64), nullable=False),
    Column("origin", SmallInteger, nullable=False),
    Column("parent_run_id", String(128), nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("dead_letter_id", String(64), nullable=False),
    Column("step_count", Integer, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires", BigInteger, nullable=True),
    Column("lease_epoch", BigInteger, nullable=False, server_default="0"),
    Column("attempt_offset", Integer, nullable=False, server_default="0"),
    Column("park_reason", SmallInteger, nullable=False, server_default="0"),
    Column("park_detail", Text, nullable=False, server_default=""),
    Column("park_time", BigInteger, nullable=True),
    Column("park_target", Text, nullable=False, server_default=""),
    Column("labels", JsonColumn, nullable=False, server_default="{}"),
    Column("execution_timeout_us", BigInteger, nullable=True),
    Column("deadline_time", BigInteger, nullable=True),
    Column("flow_control_key", String(128), nullable=False, server_default=""),
    Index(None, "create_time", "run_id"),
    Index(None, "workflow", "create_time", "run_id"),
    Index(None, "state", "lease_expires"),
    Index(None, "lease_owner"),
)

steps = Table(
    "steps",
    metadata,
    Column("run_id", String(128), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("name", String(256), nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("output", LargeBinary, nullable=False),
    Column("attempts", JsonColumn, nullable=False),
    Column("complete_time", BigInteger, nullable=False),
    Column("wake_time", BigInteger, nullable=True),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("dead_letter_id", String(64), primary_key=True),
    Column("run_id", String(128), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("workflow", String(128), nullable=False),
    Column("failed_step", String(256), nullable=False),
    Column("fail_status", Integer, nullable=False),
    Column("failure", JsonColumn, nullable=False),
    Column("idempotency_key", String(300), nullable=False),
    Column("dead_letter_time", BigInteger, nullable=False),
    Column("hook_state", SmallInteger, nullable=False),
    Column("hook_attempts", Integer, nullable=False),
    Column("hook_last_error", Text, nullable=False),
    Column("hook_result", Text, nullable=False),
    Column("hook_target", Text, nullable=False),
    Column("hook_last_status", Integer, nullable=False),
    Column("hook_last_attempt_time", BigInteger, nullable=True),
    Column("hook_lease_owner", String(128), nullable=True),
    Column("hook_lease_expires", BigInteger, nullable=True),
    Column("hook_next_attempt_time", BigInteger, nullable=True),
    Column("hook_round_start", Integer, nullable=False, server_default="1"),
    Column("hook_history", JsonColumn, nullable=False, server_default="[]"),
    Column("hook_park_detail", Text, nullable=False, server_default=""),
    Column("hook_park_time", BigInteger, nullable=True),
    Index(None, "dead_letter_time", "dead_letter_id"),
    Index(None, "workflow", "dead_letter_time", "dead_letter_id"),
    Index(None, "failed_step", "dead_letter_time", "dead_letter_id"),
    Index(None, "fail_status", "dead_letter_time", "dead_letter_id"),
    Index(None, "hook_state", "dead_letter_time", "dead_letter_id"),
    Index(None, "hook_state", "hook_lease_expires"),
)

# Bulk jobs on the DLQ (engine/bulk_jobs.py): one row per job, leased like a run, and the
# snapshot of the entry ids it acts on, in order. ``position`` counts the entries worked through.
bulk_operations = Table(
    "bulk_operations",
    metadata,
    Column("operation_id", String(64), primary_key=True),
    Column("action", SmallInteger, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("filter", JsonColumn, nullable=False),
    Column("rate", Float, nullable=False),
    Column("changes", JsonColumn, nullable=True),
    Column("total", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("done", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("errors", JsonColumn, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    Column("finish_time", BigInteger, nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires", BigInteger, nullable=True),
    Index(None, "create_time", "operation_id"),
    Index(None, "state", "lease_expires"),
)

bulk_operation_entries = Table(
    "bulk_operation_entries",
    metadata,
    Column(
        "operation_id",
        String(64),
        ForeignKey("bulk_operations.operation_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("idx", Integer, primary_key=True),
    Column("dead_letter_id", String(64), nullable=False),
)
