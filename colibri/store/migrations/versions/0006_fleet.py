"""Many hosts (issue 11): the hosts of a hive, where each agent lives and where each task ran.

``hosts`` holds one row per host of the hive: how the orchestrator reaches it over SSH (user,
address, port, the pinned host key lines, the remote colibri command; all empty for a host that is
never driven over SSH, such as the orchestrator itself), what ``hosts check`` found there (backend,
version), and its lease, renewed by the host's own daemon (``lease_expires_at`` in seconds since
the epoch, ``lease_term`` counting the daemon starts that took it).  ``agents.host`` is the host
whose daemon the agent registered with; ``tasks.host`` the host whose daemon leased the task, and
``tasks.fence`` the fencing token: it grows by one on every claim, and a completion or a re-queue
is accepted only with the token of the claim it answers.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("ssh_user", sa.String(64), nullable=True),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("host_keys", sa.Text(), nullable=True),
        sa.Column("command", sa.String(1024), nullable=True),
        sa.Column("backend", sa.String(16), nullable=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="unknown"),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("lease_term", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(2000), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("host", sa.String(64), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("host", sa.String(64), nullable=True))
        batch.add_column(sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index("ix_agents_host", "agents", ["host"])
    op.create_index("ix_tenants_host", "tenants", ["host"])


def downgrade() -> None:
    op.drop_index("ix_tenants_host", table_name="tenants")
    op.drop_index("ix_agents_host", table_name="agents")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("fence")
        batch.drop_column("host")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("host")
    op.drop_table("hosts")
