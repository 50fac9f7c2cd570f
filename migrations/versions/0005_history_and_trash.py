"""Version history and the trash.

``note_versions`` holds a note's text as saved: one row per save that changed the title or the
content (thinned as they age, see ``notes.collab.versions.THINNING``), with the revision, who
contributed since the version before, and an optional label (labelled versions are kept forever).
Every existing note gets its current text as its first version.

``notes.deleted_at`` set means the note is in its owner's trash: hidden from every note route and
purged after ``NOTES_TRASH_DAYS``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "note_versions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("rev", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("authors", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"], ondelete="CASCADE",
                                name="fk_note_versions_note_id_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_note_versions"),
    )
    op.create_index("ix_note_versions_note_id_id", "note_versions", ["note_id", "id"])
    op.add_column("notes", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_notes_deleted_at", "notes", ["deleted_at"],
                    postgresql_where=sa.text("deleted_at IS NOT NULL"))
    op.execute("INSERT INTO note_versions (note_id, created_at, rev, title, content)"
               " SELECT id, updated_at, rev, title, content FROM notes ORDER BY updated_at, id")


def downgrade() -> None:
    op.drop_index("ix_notes_deleted_at", table_name="notes")
    op.drop_column("notes", "deleted_at")
    op.drop_index("ix_note_versions_note_id_id", table_name="note_versions")
    op.drop_table("note_versions")
