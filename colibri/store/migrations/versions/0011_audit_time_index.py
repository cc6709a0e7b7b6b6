"""The audit entries lose their time index (issue 12): each append paid for it on the daemon's hot
paths (bench/audit_variants.py: ``nots``), and ``audit log`` reads time order from each host's
chain instead (store/audit_trail.py ``TrailRepo.log``: the primary key, newest first).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.drop_index("ix_audit_entries_ts", table_name="audit_entries")


def downgrade() -> None:
    op.create_index("ix_audit_entries_ts", "audit_entries", ["ts"])
