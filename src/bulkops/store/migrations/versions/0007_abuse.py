"""log-in failures and idempotency fingerprints

``login_failures`` holds the failed password log-ins of the last minutes, shared by every
server process, for the log-in rate limit (per account and per client address). It belongs to
no organization (the organization is not known before the log-in), so it has no row-level
security; the application role may read, add and delete its rows.

``operations.idempotency_fingerprint`` is the SHA-256 of the request an Idempotency-Key was
first used with: the same key with another request is refused instead of answered with the
first operation. Operations created before this revision have none (and match any request).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APP_ROLE = "bulkops_app"
TABLE = "login_failures"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_" + TABLE)),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_login_failures_email", TABLE, ["email", "at"])
    op.create_index("ix_login_failures_client", TABLE, ["client_address", "at"])
    op.create_index("ix_login_failures_at", TABLE, ["at"])
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("idempotency_fingerprint", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # No UPDATE: a failure is written once and deleted when it leaves the window.
    op.execute(f"GRANT SELECT, INSERT, DELETE ON {TABLE} TO {APP_ROLE}")
    sequence = bind.execute(
        sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": TABLE}
    ).scalar_one()
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {APP_ROLE}")


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("idempotency_fingerprint")
    op.drop_index("ix_login_failures_at", table_name=TABLE)
    op.drop_index("ix_login_failures_client", table_name=TABLE)
    op.drop_index("ix_login_failures_email", table_name=TABLE)
    op.drop_table(TABLE)
