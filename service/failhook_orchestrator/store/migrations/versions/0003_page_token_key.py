"""Secrets shared by the replicas (the HMAC key of page tokens), see ``store/secrets.py``.

Revision ID: 0003_page_token_key
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_page_token_key"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orchestrator_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_orchestrator_secrets")),
    )


def downgrade() -> None:
    op.drop_table("orchestrator_secrets")
