"""Row-level security of the counts, with the caller's scope read once per query, not once per row.

The shared policy (`medai_tenant_visible`) calls `current_setting` three times for every row; a national
read of 130 k region sums spent most of its time there (bench/stats.py). Here each setting is a scalar
sub-select, which PostgreSQL evaluates once, as an InitPlan. The test is the same.
"""

from django.db import migrations

VISIBLE = """
    organization_id = (SELECT nullif(current_setting('medai.organization_id', true), '')::bigint)
    OR region_id = (SELECT nullif(current_setting('medai.region_id', true), '')::bigint)
    OR (SELECT current_setting('medai.scope', true)) = 'national'
"""
REGION_VISIBLE = """
    region_id = (SELECT nullif(current_setting('medai.region_id', true), '')::bigint)
    OR (SELECT current_setting('medai.scope', true)) = 'national'
"""


def policy(table: str, test: str) -> str:
    return f"""
        DROP POLICY tenant_isolation ON {table};
        CREATE POLICY tenant_isolation ON {table} USING ({test}) WITH CHECK ({test});
    """


class Migration(migrations.Migration):
    dependencies = [("stats", "0003_rollup_triggers")]

    operations = [
        migrations.RunSQL(
            policy("stats_dailycount", VISIBLE) + policy("stats_regiondailycount", REGION_VISIBLE),
            policy("stats_dailycount", "medai_tenant_visible(organization_id, region_id)")
            + policy("stats_regiondailycount", "medai_tenant_visible(NULL, region_id)"),
        ),
    ]
