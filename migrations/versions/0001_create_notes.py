"""Create the notes table, its listing index and its full-text search column and index.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

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
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('english'::regconfig, left(title || ' ' || content, 100000))",
                persisted=True,
            ),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
    )
    op.create_index("ix_notes_updated_at_id", "notes", ["updated_at", "id"])
    op.create_index("ix_notes_search_vector", "notes", ["search_vector"],
                    postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_notes_search_vector", table_name="notes")
    op.drop_index("ix_notes_updated_at_id", table_name="notes")
    op.drop_table("notes")
