"""Alert sighting: how the matched face was seen, for reviewers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 11:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("alert", sa.Column("sighting", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("alert", "sighting")
