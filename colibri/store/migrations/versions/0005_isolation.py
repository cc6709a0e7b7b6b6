"""Isolation (issue 8): each tenant's block of host ids, and idempotent task submission.

``tenants.uid_base`` is the first host uid/gid of the tenant's block (unique: no two tenants share
ids); ``tasks.idempotency_key`` makes a retried submit-task return the task it created the first
time (unique per submitter); ``ix_tasks_tenant_state`` and ``ix_tasks_finished_at`` let the daemon
find a tenant's finished tasks, and those past their retention, without reading every row.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("uid_base", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_tenants_uid_base", ["uid_base"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
    op.create_index("ux_tasks_submitter_key", "tasks", ["submitted_by", "idempotency_key"], unique=True)
    op.create_index("ix_tasks_tenant_state", "tasks", ["tenant_id", "state"])
    op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_finished_at", table_name="tasks")
    op.drop_index("ix_tasks_tenant_state", table_name="tasks")
    op.drop_index("ux_tasks_submitter_key", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_constraint("uq_tenants_uid_base", type_="unique")
        batch.drop_column("uid_base")
