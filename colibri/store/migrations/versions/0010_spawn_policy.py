"""The spawn policy (issue 14): per-tenant policies, the quota's reservations, the global switch,
and ``tenants.parent``.

``spawn_policies``: one row per tenant that has a policy (no row: self-spawn off); the row is
what a decision locks, so the count of its reservations and its rate window are read and written
under it.  ``spawn_reservations``: one per child granted (reserved -> used | released), the times
on the database's clock (store/clock.py).  ``spawn_switch``: the global switch (row ``global``).
``tenants.parent``: the tenant whose agent asked for this one (None: an operator's tenant).

Revision ID: 0010 (pre-assigned; 0009 is another part's: the coordinator re-chains on merge)
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "spawn_policies",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("max_children", sa.Integer(), nullable=False),
        sa.Column("max_depth", sa.Integer(), nullable=False),
        sa.Column("rate", sa.Integer(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("templates", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("capabilities", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("skills", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("hosts", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("window_start", sa.Float(), nullable=False, server_default="0"),
        sa.Column("window_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(140), nullable=True),
    )
    op.create_table(
        "spawn_reservations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("parent", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("child", sa.String(64), nullable=True, unique=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("why", sa.String(200), nullable=True),
    )
    op.create_index("ix_spawn_reservations_parent", "spawn_reservations", ["parent", "state"])
    op.create_index("ix_spawn_reservations_expiry", "spawn_reservations", ["state", "expires_at"])
    op.create_table(
        "spawn_switch",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("forbid", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("changed_by", sa.String(140), nullable=True),
    )
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("parent", sa.String(64), nullable=True))
    op.create_index("ix_tenants_parent", "tenants", ["parent"])


def downgrade() -> None:
    op.drop_index("ix_tenants_parent", table_name="tenants")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("parent")
    op.drop_table("spawn_switch")
    op.drop_index("ix_spawn_reservations_expiry", table_name="spawn_reservations")
    op.drop_index("ix_spawn_reservations_parent", table_name="spawn_reservations")
    op.drop_table("spawn_reservations")
    op.drop_table("spawn_policies")
