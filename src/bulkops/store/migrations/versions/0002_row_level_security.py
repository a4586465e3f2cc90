"""PostgreSQL row-level security, the application role's grants, cross-organization look-ups

Every tenant table gets ENABLE and FORCE ROW LEVEL SECURITY and one policy per command that
compares organization_id with current_setting('app.current_org', true). An unset or empty
setting gives NULL, which matches no row: reads are empty and writes fail (fail closed).

The group role bulkops_app (NOLOGIN, NOBYPASSRLS) gets the table privileges; the login role
the application connects as is a member of it and owns nothing. Logging in by email and
using an API token must find a row before the organization is known: two SECURITY DEFINER
functions owned by the migrating role (the owner) do exactly that, helped by owner-only
policies on users and api_tokens. SQLite has no roles: nothing to do there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 13:40:00
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP_ROLE = "bulkops_app"
TENANT_TABLES = (
    "users",
    "api_tokens",
    "warehouses",
    "products",
    "inventory",
    "pricing",
    "customers",
    "operations",
    "operation_records",
    "operation_errors",
    "operation_chunks",
    "operation_events",
)
CURRENT_ORG = "nullif(current_setting('app.current_org', true), '')::bigint"
FUNCTIONS = (
    "bulkops_find_user(text, bigint)",
    "bulkops_lookup_token(text)",
    "bulkops_touch_token(bigint)",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(text("SELECT current_schema()")).scalar_one()
    # Roles belong to the whole server: create the group once (two migrations racing on one
    # server, as parallel test workers do, both end up with it).
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END
        $$
        """
    )
    op.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {APP_ROLE}')
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_select ON {table} FOR SELECT "
            f"USING (organization_id = {CURRENT_ORG})"
        )
        op.execute(
            f"CREATE POLICY {table}_insert ON {table} FOR INSERT "
            f"WITH CHECK (organization_id = {CURRENT_ORG})"
        )
        op.execute(
            f"CREATE POLICY {table}_update ON {table} FOR UPDATE "
            f"USING (organization_id = {CURRENT_ORG}) WITH CHECK (organization_id = {CURRENT_ORG})"
        )
        op.execute(
            f"CREATE POLICY {table}_delete ON {table} FOR DELETE "
            f"USING (organization_id = {CURRENT_ORG})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
    # The list of tenants itself: readable, and new organizations can be created.
    op.execute(f"GRANT SELECT, INSERT ON organizations TO {APP_ROLE}")
    op.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {APP_ROLE}')

    # Cross-organization look-ups. FORCE makes the owner subject to the policies too, so the
    # owner (only) may read users and tokens and mark a token used; nobody logs in as the
    # owner in production, and the application role reaches these rows only through here.
    op.execute("CREATE POLICY users_owner_lookup ON users FOR SELECT TO CURRENT_USER USING (true)")
    op.execute(
        "CREATE POLICY api_tokens_owner_lookup ON api_tokens FOR SELECT TO CURRENT_USER "
        "USING (true)"
    )
    op.execute(
        "CREATE POLICY api_tokens_owner_touch ON api_tokens FOR UPDATE TO CURRENT_USER "
        "USING (true) WITH CHECK (true)"
    )
    op.execute(
        f"""
        CREATE FUNCTION bulkops_find_user(p_email text, p_id bigint)
        RETURNS SETOF users
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = "{schema}", pg_temp
        AS $$
            SELECT * FROM users
            WHERE (p_email IS NOT NULL AND email = p_email)
               OR (p_email IS NULL AND id = p_id)
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION bulkops_lookup_token(p_hash text)
        RETURNS TABLE (id bigint, organization_id bigint, user_id bigint, role text, email text)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = "{schema}", pg_temp
        AS $$
            SELECT t.id::bigint, t.organization_id::bigint, t.user_id::bigint,
                   u.role::text, u.email::text
            FROM api_tokens t JOIN users u ON u.id = t.user_id
            WHERE t.token_hash = p_hash AND t.revoked_at IS NULL AND u.disabled_at IS NULL
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION bulkops_touch_token(p_id bigint)
        RETURNS void
        LANGUAGE sql VOLATILE SECURITY DEFINER
        SET search_path = "{schema}", pg_temp
        AS $$
            UPDATE api_tokens SET last_used_at = now() WHERE id = p_id
        $$
        """
    )
    for function in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {APP_ROLE}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(text("SELECT current_schema()")).scalar_one()
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.execute("DROP POLICY IF EXISTS api_tokens_owner_touch ON api_tokens")
    op.execute("DROP POLICY IF EXISTS api_tokens_owner_lookup ON api_tokens")
    op.execute("DROP POLICY IF EXISTS users_owner_lookup ON users")
    op.execute(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "{schema}" FROM {APP_ROLE}')
    op.execute(f"REVOKE ALL ON organizations FROM {APP_ROLE}")
    for table in TENANT_TABLES:
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
        for command in ("select", "insert", "update", "delete"):
            op.execute(f"DROP POLICY IF EXISTS {table}_{command} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(f'REVOKE USAGE ON SCHEMA "{schema}" FROM {APP_ROLE}')
