"""The audit trail (issue 12): a hash-chained, Merkle-checkpointed log of every state change.

``audit_entries`` holds one row per state change, per host: ``seq`` counts from 1 on each host,
``body`` is the entry itself in canonical JSON (RFC 8785), exactly the bytes that are hashed, and
``leaf`` is its RFC 6962 leaf hash, SHA-256(0x00 || body), hex.  Each body names the leaf of its
predecessor on the same host (``prev``), so the entries of a host form a chain, and the leaves a
Merkle tree.  ``tenant`` repeats the body's tenant (if any) so ``audit log --tenant`` needs no scan.
``audit_heads`` is each host's newest (seq, leaf): the row an append locks, so appends of one host
are serialised and the chain never forks.  ``audit_checkpoints`` are the signed tree heads (size,
root, the signed note), ``audit_cosignatures`` other hosts' signatures over them (with the root
they saw), ``mac`` an HMAC of the body under a key only its host holds (state_dir/audit/entry.key:
its signer signs no entry it did not write), ``audit_keys``
each host's public keys (a rotated-to key carries the old key's endorsement).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("host", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("leaf", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=True),
    )
    op.create_index("ix_audit_entries_tenant", "audit_entries", ["tenant", "seq"])
    op.create_index("ix_audit_entries_ts", "audit_entries", ["ts"])
    op.create_table(
        "audit_heads",
        sa.Column("host", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("leaf", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("host", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "audit_cosignatures",
        sa.Column("host", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(64), primary_key=True),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "audit_keys",
        sa.Column("host", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("retired_at", sa.String(32), nullable=True),
        sa.Column("endorsement", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_keys")
    op.drop_table("audit_cosignatures")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_heads")
    op.drop_index("ix_audit_entries_ts", table_name="audit_entries")
    op.drop_index("ix_audit_entries_tenant", table_name="audit_entries")
    op.drop_table("audit_entries")
