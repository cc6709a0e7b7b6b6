"""Skills (issue 13): a tenant's tier and the skills installed in its jail.

``tenants.tier`` is ``paid`` (first-party skills only) or ``community`` (also the skills the
operator allowed); every existing tenant becomes ``paid``, the fail-safe default: nothing is
widened by an upgrade.  ``tenant_skills`` holds one row per skill installed in a tenant's jail
(name, version, the bundle's and its manifest's digests, its source: first-party, community, or builtin for
colibri's shipped mother; the capabilities its handlers provide; when it was installed), written
by spawn in the transaction of the step that installed it; the daemon refuses an agent's
capability or loaded skill that is not there.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("tier", sa.String(16), nullable=False, server_default="paid"))
    op.create_table(
        "tenant_skills",
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.tenant_id"), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("manifest_digest", sa.String(80), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("capabilities", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_skills")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("tier")
