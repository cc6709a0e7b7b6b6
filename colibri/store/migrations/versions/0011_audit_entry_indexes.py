"""The audit entries lose their time and tenant indexes (issue 12): each append paid for both on the
daemon's hot paths (bench/audit_variants.py: ``noidx``), and only ``audit log`` read them; it now
reads each host's chain newest first along the primary key (store/audit_trail.py ``TrailRepo.log``).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.drop_index("ix_audit_entries_ts", table_name="audit_entries")
    op.drop_index("ix_audit_entries_tenant", table_name="audit_entries")


def downgrade() -> None:
    op.create_index("ix_audit_entries_tenant", "audit_entries", ["tenant", "seq"])
    op.create_index("ix_audit_entries_ts", "audit_entries", ["ts"])
