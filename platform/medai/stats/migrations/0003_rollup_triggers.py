"""Row-level security of the region and national sums, and the trigger that keeps them equal to the
organization counts on the days already rolled up (see medai.stats.models)."""

from django.db import migrations

SECURITY_SQL = """
ALTER TABLE stats_regiondailycount ENABLE ROW LEVEL SECURITY;
ALTER TABLE stats_regiondailycount FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stats_regiondailycount
    USING (medai_tenant_visible(NULL, region_id)) WITH CHECK (medai_tenant_visible(NULL, region_id));
ALTER TABLE stats_nationaldailycount ENABLE ROW LEVEL SECURITY;
ALTER TABLE stats_nationaldailycount FORCE ROW LEVEL SECURITY;
CREATE POLICY national_only ON stats_nationaldailycount
    USING (current_setting('medai.scope', true) = 'national')
    WITH CHECK (current_setting('medai.scope', true) = 'national');
INSERT INTO stats_rollupstate (id, rolled_up_through) VALUES (1, NULL);
"""

# Changes to organization rows arrive as transition tables, one statement at a time (a live event: a row
# or a few; a rebuild: thousands). Those of rolled-up days are summed and added to both levels. The
# writer's scope is an organization's, which may not see region or national rows: the trigger widens it
# to national for its own statements and puts it back.
TRIGGER_SQL = """
CREATE FUNCTION stats_rollup_add(delta_rows jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    scope text := coalesce(current_setting('medai.scope', true), '');
    region text := coalesce(current_setting('medai.region_id', true), '');
    organization text := coalesce(current_setting('medai.organization_id', true), '');
BEGIN
    PERFORM set_config('medai.scope', 'national', true);
    WITH delta AS (SELECT * FROM jsonb_to_recordset(delta_rows)
                   AS d(region_id bigint, day date, modality text, service_id bigint, stat text, value bigint))
    INSERT INTO stats_regiondailycount (region_id, day, modality, service_id, stat, value)
        SELECT region_id, day, modality, service_id, stat, sum(value) FROM delta
        GROUP BY 1, 2, 3, 4, 5 HAVING sum(value) <> 0 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (region_id, day, stat, modality, service_id)
            DO UPDATE SET value = stats_regiondailycount.value + EXCLUDED.value;
    WITH delta AS (SELECT * FROM jsonb_to_recordset(delta_rows)
                   AS d(day date, modality text, service_id bigint, stat text, value bigint))
    INSERT INTO stats_nationaldailycount (day, modality, service_id, stat, value)
        SELECT day, modality, service_id, stat, sum(value) FROM delta
        GROUP BY 1, 2, 3, 4 HAVING sum(value) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (day, stat, modality, service_id)
            DO UPDATE SET value = stats_nationaldailycount.value + EXCLUDED.value;
    DELETE FROM stats_regiondailycount WHERE value = 0
        AND day IN (SELECT (e ->> 'day')::date FROM jsonb_array_elements(delta_rows) e);
    DELETE FROM stats_nationaldailycount WHERE value = 0
        AND day IN (SELECT (e ->> 'day')::date FROM jsonb_array_elements(delta_rows) e);
    PERFORM set_config('medai.scope', scope, true), set_config('medai.region_id', region, true),
        set_config('medai.organization_id', organization, true);
END $$;

CREATE FUNCTION stats_rollup_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    through date := (SELECT rolled_up_through FROM stats_rollupstate WHERE id = 1);
    delta jsonb;
BEGIN
    IF through IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(to_jsonb(n)) INTO delta FROM new_rows n WHERE n.day <= through;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(to_jsonb(o) || jsonb_build_object('value', -o.value)) INTO delta
            FROM old_rows o WHERE o.day <= through;
    ELSE
        SELECT jsonb_agg(to_jsonb(n) || jsonb_build_object('value', n.value - o.value)) INTO delta
            FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.day <= through AND n.value <> o.value;
    END IF;
    IF delta IS NOT NULL THEN
        PERFORM stats_rollup_add(delta);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER stats_rollup_follow_insert AFTER INSERT ON stats_dailycount
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_rollup_follow();
CREATE TRIGGER stats_rollup_follow_update AFTER UPDATE ON stats_dailycount
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_rollup_follow();
CREATE TRIGGER stats_rollup_follow_delete AFTER DELETE ON stats_dailycount
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_rollup_follow();
"""

UNDO_SQL = """
DROP TRIGGER IF EXISTS stats_rollup_follow_insert ON stats_dailycount;
DROP TRIGGER IF EXISTS stats_rollup_follow_update ON stats_dailycount;
DROP TRIGGER IF EXISTS stats_rollup_follow_delete ON stats_dailycount;
DROP FUNCTION IF EXISTS stats_rollup_follow();
DROP FUNCTION IF EXISTS stats_rollup_add(jsonb);
DROP POLICY IF EXISTS tenant_isolation ON stats_regiondailycount;
DROP POLICY IF EXISTS national_only ON stats_nationaldailycount;
ALTER TABLE stats_regiondailycount DISABLE ROW LEVEL SECURITY;
ALTER TABLE stats_nationaldailycount DISABLE ROW LEVEL SECURITY;
DELETE FROM stats_rollupstate;
"""


class Migration(migrations.Migration):
    dependencies = [("stats", "0002_rollups")]

    operations = [migrations.RunSQL(SECURITY_SQL + TRIGGER_SQL, UNDO_SQL)]
