"""Secrets provisioning state on tenants: status (ok | stale | none), the reason when stale, when
the .env last changed (the daemon tells the agent) and when provisioning last succeeded.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("secrets_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("secrets_error", sa.String(2000), nullable=True))
        batch.add_column(sa.Column("secrets_changed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("secrets_checked_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        for name in ("secrets_checked_at", "secrets_changed_at", "secrets_error", "secrets_status"):
            batch.drop_column(name)
