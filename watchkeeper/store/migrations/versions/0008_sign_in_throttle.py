"""Sign-in throttling per name and address instead of a lockout per account

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 13:30:00

The per-account lockout (app_user.failed_logins, locked_until) let anyone who could
reach the sign-in page lock any account out. Failures are now counted per name and
address, per address and across the organisation in sign_in_throttle; a lockout in
force when upgrading ends with it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_throttle",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("organisation_id", sa.Uuid(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("organisation_id", "key"),
    )
    with op.batch_alter_table("app_user") as table:
        table.drop_column("locked_until")
        table.drop_column("failed_logins")


def downgrade() -> None:
    with op.batch_alter_table("app_user") as table:
        table.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        table.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_table("sign_in_throttle")
