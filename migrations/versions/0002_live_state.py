"""Live editing: the Yjs state of a note, its revision and its recent revisions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notes", sa.Column("yjs_state", sa.LargeBinary(), nullable=True))
    op.add_column("notes", sa.Column("history", postgresql.JSONB(), nullable=True))
    op.add_column("notes", sa.Column("rev", sa.BigInteger(), server_default=sa.text("0"),
                                     nullable=False))


def downgrade() -> None:
    op.drop_column("notes", "rev")
    op.drop_column("notes", "history")
    op.drop_column("notes", "yjs_state")
