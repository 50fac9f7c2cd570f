"""The update log: every stored Yjs update of a live note until a save compacts it.

The notes row becomes the snapshot (``yjs_state``, ``content``, ``title``); ``note_updates`` holds
what was stored since, one row per update, in commit order per note. ``refs`` keeps the client
refs of compacted updates (so a resent edit is still recognised). Revision histories are per
process now, so the stored ``history`` goes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "note_updates",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("update", sa.LargeBinary(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"], ondelete="CASCADE",
                                name="fk_note_updates_note_id_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_note_updates"),
    )
    op.create_index("ix_note_updates_note_id_id", "note_updates", ["note_id", "id"])
    op.add_column("notes", sa.Column("refs", postgresql.JSONB(), nullable=True))
    op.drop_column("notes", "history")


def downgrade() -> None:
    op.add_column("notes", sa.Column("history", postgresql.JSONB(), nullable=True))
    op.drop_column("notes", "refs")
    op.drop_index("ix_note_updates_note_id_id", table_name="note_updates")
    op.drop_table("note_updates")
