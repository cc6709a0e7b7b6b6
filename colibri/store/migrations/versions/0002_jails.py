"""Jails and spawning: backend, jail root, allocated IP, pipeline step, template, capabilities.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("backend", sa.String(16), nullable=True))
        batch.add_column(sa.Column("jail_root", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("ip_address", sa.String(64), nullable=True))
        batch.add_column(sa.Column("template", sa.String(255), nullable=True))
        batch.add_column(sa.Column("capabilities", sa.Text(), nullable=True))
        batch.add_column(sa.Column("spawn_step", sa.String(32), nullable=True))
        batch.add_column(sa.Column("adopted", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_unique_constraint("uq_tenants_ip_address", ["ip_address"])


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_constraint("uq_tenants_ip_address", type_="unique")
        for name in (
            "adopted",
            "spawn_step",
            "capabilities",
            "template",
            "ip_address",
            "jail_root",
            "backend",
        ):
            batch.drop_column(name)
