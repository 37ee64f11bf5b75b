"""Tenant isolation in the database: PostgreSQL row-level security on every tenant-owned table.

Each transaction of the application carries its caller's scope in three settings, set with
`set_config(..., is_local => true)` (the function form of SET LOCAL): `medai.scope` (national,
region or organization), and the id of that level only, `medai.region_id` or
`medai.organization_id`. A policy on each tenant-owned table lets a row through only if it lies
inside that scope; a transaction that set no scope sees no rows and can write none. The test is
written as a plain OR of equalities, which PostgreSQL inlines and checks per row for next to
nothing (bench/auth.py measures it). The tables are FORCEd, so their owner (the
application's role) is bound too. Code scopes its queries as well (selectors): the database is
the second line, for the day a view forgets.
"""

from django.db import migrations

FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION medai_tenant_visible(org bigint, region bigint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT org = nullif(current_setting('medai.organization_id', true), '')::bigint
        OR region = nullif(current_setting('medai.region_id', true), '')::bigint
        OR current_setting('medai.scope', true) = 'national'
$$;
"""


def create_visibility_function() -> migrations.RunSQL:
    return migrations.RunSQL(FUNCTION_SQL, "DROP FUNCTION IF EXISTS medai_tenant_visible(bigint, bigint);")


def enable_row_level_security(table: str) -> migrations.RunSQL:
    """The migration operation that puts a tenant-owned table (organization_id, region_id) under RLS."""
    return migrations.RunSQL(
        f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON {table}
            USING (medai_tenant_visible(organization_id, region_id))
            WITH CHECK (medai_tenant_visible(organization_id, region_id));
        """,
        f"""
        DROP POLICY IF EXISTS tenant_isolation ON {table};
        ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
        """,
    )
