"""operation attempts

``operations.attempts`` counts how many times in a row a process took the operation up
without committing a chunk (a chunk commit sets it back to 0): an operation whose process
dies every time is given up as failed instead of being resumed forever.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("attempts")
