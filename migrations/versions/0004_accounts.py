"""Accounts: users, their sessions and API tokens, note owners, shares and share links.

A note's ``owner_id`` is None when it was created with ``NOTES_AUTH=off`` (or before accounts
existed); the next account created claims such notes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                   name=f"fk_{table}_user_id_users")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    for table, extra in (
        ("sessions", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False)),
        ("api_tokens", sa.Column("name", sa.Text(), nullable=False)),
    ):
        op.create_table(
            table,
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
            _created_at(),
            sa.Column("user_id", sa.Uuid(), nullable=False),
            extra,
            _user_fk(table),
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        )
        op.create_index(f"ix_{table}_user_id", table, ["user_id"])
    op.create_table(
        "shares",
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        _created_at(),
        sa.CheckConstraint("role IN ('viewer', 'editor')", name="ck_shares_role"),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"], ondelete="CASCADE",
                                name="fk_shares_note_id_notes"),
        _user_fk("shares"),
        sa.PrimaryKeyConstraint("note_id", "user_id", name="pk_shares"),
    )
    op.create_index("ix_shares_user_id", "shares", ["user_id"])
    op.create_table(
        "share_links",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        _created_at(),
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.CheckConstraint("role IN ('viewer', 'editor')", name="ck_share_links_role"),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"], ondelete="CASCADE",
                                name="fk_share_links_note_id_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_share_links"),
    )
    op.create_index("ix_share_links_note_id", "share_links", ["note_id"])
    op.add_column("notes", sa.Column("owner_id", sa.Uuid(), nullable=True))
    op.create_foreign_key("fk_notes_owner_id_users", "notes", "users", ["owner_id"], ["id"],
                          ondelete="CASCADE")
    op.create_index("ix_notes_owner_id_updated_at_id", "notes",
                    ["owner_id", "updated_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_notes_owner_id_updated_at_id", table_name="notes")
    op.drop_constraint("fk_notes_owner_id_users", "notes", type_="foreignkey")
    op.drop_column("notes", "owner_id")
    for table in ("share_links", "shares", "api_tokens", "sessions", "users"):
        op.drop_table(table)
