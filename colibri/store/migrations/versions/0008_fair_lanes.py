"""Fair lanes (issue 11, review R14): a shared lane takes the tenants' tasks in turn.

``tasks.turn`` is the task's round in its capability's queue, set when it is queued: one more than
the newest queued task of the same tenant (the operator's tasks counting as one more tenant) and
capability, or, when that tenant has none queued there, the round at the head of that queue (its
lowest ``turn``).  A lane claims by ``(turn, id)``: each tenant's oldest task first, one tenant
after the other, so one tenant's backlog never holds another tenant's task behind all of it.  A
tenant's own agents claim by the same order within the tenant: its oldest first (its rounds
follow its submissions).  ``ix_tasks_lane_order`` serves a lane's claim and the head of a queue,
``ix_tasks_tenant_turn`` a tenant's claim and its newest round: each an index walk to the first
queued row (a claim ordered by id alone walked the primary key over every finished row before it:
17 ms a claim behind 18,000 finished tasks, docs/PERFORMANCE.md).  They replace
``ix_tasks_state_capability`` and ``ix_tasks_tenant_state``, whose columns they begin with, so a
task's row has as many indexes as before.  Rows queued before this migration are round 0: they
go first, oldest first, as before.

Revision ID: 0008 (numbered after 0007, which is reserved; it revises 0006 until 0007 is merged)
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("turn", sa.BigInteger(), nullable=False, server_default="0"))
    op.drop_index("ix_tasks_state_capability", table_name="tasks")
    op.drop_index("ix_tasks_tenant_state", table_name="tasks")
    op.create_index("ix_tasks_lane_order", "tasks", ["state", "capability", "turn", "id"])
    op.create_index("ix_tasks_tenant_turn", "tasks", ["tenant_id", "state", "capability", "turn", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_tenant_turn", table_name="tasks")
    op.drop_index("ix_tasks_lane_order", table_name="tasks")
    op.create_index("ix_tasks_tenant_state", "tasks", ["tenant_id", "state"])
    op.create_index("ix_tasks_state_capability", "tasks", ["state", "capability"])
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("turn")
