"""Create the notes table, its listing index and its full-text search index.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
    )
    op.create_index("ix_notes_updated_at_id", "notes", ["updated_at", "id"])
    op.execute(
        "CREATE INDEX ix_notes_search ON notes USING gin "
        "(to_tsvector('english'::regconfig, left(title || ' ' || content, 100000)))"
    )


def downgrade() -> None:
    op.drop_index("ix_notes_search", table_name="notes")
    op.drop_index("ix_notes_updated_at_id", table_name="notes")
    op.drop_table("notes")
