"""Edges of a chain: the watchlist change journal and the edge register

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 16:40:00

watchlist_change journals every change to what may be searched, so that each store's
edge receives only the changes since the revision it holds; edge holds each edge's
enrolment, credential (hashes only), audit chain head and last reported status.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watchlist_change",
        sa.Column("revision", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("organisation_id", sa.Uuid(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_watchlist_change_organisation_id", "watchlist_change", ["organisation_id"])
    op.create_table(
        "edge",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("organisation_id", sa.Uuid(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("site_id", sa.Uuid(), sa.ForeignKey("site.id"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True, unique=True),
        sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credential_hash", sa.String(length=64), nullable=True, unique=True),
        sa.Column("audit_key_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("audit_count", sa.Integer(), nullable=False),
        sa.Column("audit_head", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=True),
        sa.UniqueConstraint("organisation_id", "name"),
    )
    op.create_index("ix_edge_site_id", "edge", ["site_id"])


def downgrade() -> None:
    op.drop_index("ix_edge_site_id", "edge")
    op.drop_table("edge")
    op.drop_index("ix_watchlist_change_organisation_id", "watchlist_change")
    op.drop_table("watchlist_change")
