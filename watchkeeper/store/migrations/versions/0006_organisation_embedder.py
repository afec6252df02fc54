"""The model in use belongs to the organisation: organisation.embedder

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 10:00:00

Before, the stored watchlist was searched with whatever model the configuration
named. An organisation that already holds templates is pinned to the model of
its templates (the one with most, should it hold several), so that upgrading
(whose default model may be another one) never switches a shop to a model it
has no templates for; `watchkeeper models use` moves it. An organisation with
no templates keeps None: it follows the configuration until its first enrolment.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("organisation", sa.Column("embedder", sa.String(length=100), nullable=True))
    template = sa.table(
        "template", sa.column("face_image_id", sa.Uuid()), sa.column("model_id", sa.String())
    )
    face_image = sa.table("face_image", sa.column("id", sa.Uuid()), sa.column("subject_id"))
    subject = sa.table(
        "subject", sa.column("id", sa.Uuid()), sa.column("organisation_id", sa.Uuid())
    )
    organisation = sa.table("organisation", sa.column("id", sa.Uuid()), sa.column("embedder"))
    connection = op.get_bind()
    held = connection.execute(
        sa.select(subject.c.organisation_id, template.c.model_id, sa.func.count())
        .select_from(template)
        .join(face_image, template.c.face_image_id == face_image.c.id)
        .join(subject, face_image.c.subject_id == subject.c.id)
        .group_by(subject.c.organisation_id, template.c.model_id)
    ).all()
    chosen: dict[object, tuple[int, str]] = {}
    for organisation_id, model_id, templates in held:
        # A model id is "<registry name>@<version>" (ModelSpec.model_id).
        candidate = (int(templates), model_id.rpartition("@")[0] or model_id)
        if organisation_id not in chosen or candidate > chosen[organisation_id]:
            chosen[organisation_id] = candidate
    for organisation_id, (_, name) in chosen.items():
        connection.execute(
            organisation.update().where(organisation.c.id == organisation_id).values(embedder=name)
        )


def downgrade() -> None:
    op.drop_column("organisation", "embedder")
