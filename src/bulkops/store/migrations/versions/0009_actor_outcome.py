"""who started an operation, and whether it was a dry run, as columns

``operations.actor`` names the person who started the operation: the user's e-mail for the
API and the dashboard, ``cli:<os-user>@<host>`` (or the e-mail given with ``--as``) for the
command line. Operations created before this revision have none.

``operations.validate_only`` copies the option out of ``config`` so that lists can filter by
outcome (``checked`` is a completed dry run) in SQL; it is filled from ``config`` here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=320), nullable=True))
        batch.add_column(
            sa.Column(
                "validate_only", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE operations SET validate_only = true "
            "WHERE (config::jsonb ->> 'validate_only')::boolean"
        )
    else:
        op.execute(
            "UPDATE operations SET validate_only = 1 "
            "WHERE json_extract(config, '$.validate_only') = 1"
        )


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("validate_only")
        batch.drop_column("actor")
