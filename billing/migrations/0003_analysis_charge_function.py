"""Charging an analysed study in one call: `billing_analysis_charge`, used by `billing.services.analysis_bill`.

It runs in every analysis's final transaction (<= 2 ms at p95, bench/billing.py). As plain SQL its few
lookups and writes cost more to parse and plan (row-level security included) than to run, about 0.5 ms a
statement; PL/pgSQL keeps their plans for the session, without the prepared statements that Django leaves
off for connection poolers. For the same reason it also adds the billed amount to the daily statistics,
which the `stats` receiver of `service_billed` would otherwise do in a statement of its own.
"""

from django.db import migrations

FUNCTIONS_SQL = r"""
-- The OMS policy number (ENP) as `medai.archive.patient.oms_policy_number` reads it from
-- OtherPatientIDsSequence (DICOM JSON): the first item with issuer OMS or ENP and a 16-digit number; ''
-- if none. NULL where SQL could answer otherwise than Python or where Python raises (non-ASCII text,
-- values that are not strings, a malformed sequence): the caller reads those in Python.
CREATE FUNCTION billing_oms_policy_number(other_ids jsonb) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    items jsonb := other_ids -> 'Value';
    blank CONSTANT text := E' \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f';  -- str.strip() of ASCII
BEGIN
    IF other_ids IS NULL OR jsonb_typeof(other_ids) = 'object' AND items IS NULL THEN
        RETURN '';
    END IF;
    -- jsonb prints control characters escaped, so this lets printable and control ASCII through.
    IF jsonb_typeof(other_ids) <> 'object' OR jsonb_typeof(items) <> 'array' OR other_ids::text ~ '[^ -~]' THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM jsonb_array_elements(items) AS e(item), unnest(ARRAY['00100020', '00100021']) AS tag
               WHERE jsonb_typeof(item) <> 'object'
                  OR item -> tag IS NOT NULL AND (
                         jsonb_typeof(item -> tag) <> 'object'
                      OR coalesce(jsonb_typeof(item -> tag -> 'Value'), 'null') NOT IN ('array', 'null')
                      OR coalesce(jsonb_typeof(item -> tag -> 'Value' -> 0), 'null') NOT IN ('string', 'null'))) THEN
        RETURN NULL;
    END IF;
    RETURN coalesce((
        SELECT x.number FROM jsonb_array_elements(items) WITH ORDINALITY AS e(item, k),
            LATERAL (SELECT btrim(coalesce(item -> '00100020' -> 'Value' ->> 0, ''), blank) AS number,
                            upper(btrim(coalesce(item -> '00100021' -> 'Value' ->> 0, ''), blank)) AS issuer) AS x
        WHERE x.issuer IN ('OMS', 'ENP') AND x.number ~ '^[0-9]{16}$'
        ORDER BY e.k LIMIT 1
    ), '');
END $$;

-- Charge a study for a delivered analysis, once per study and kind (INSERT ... ON CONFLICT DO NOTHING):
-- the day of service in the region's time zone, no critical defect, the policy number, the tariff in force
-- and the day's open period (share-locked until commit); a billed charge is also counted into the daily
-- statistics. `outcome`: charged (the new line's columns follow), charged_before, defective, or what the
-- caller must settle in Python before calling again with it: policy_unread (`other_ids` given; pass
-- p_policy_number), no_period (pass p_period_id).
CREATE FUNCTION billing_analysis_charge(
    p_analysis_id bigint, p_organization_id bigint, p_region_id bigint, p_study_id bigint, p_study_kind text,
    p_finished_at timestamptz, p_now timestamptz, p_policy_number text DEFAULT NULL, p_period_id bigint DEFAULT NULL,
    OUT outcome text, OUT other_ids text, OUT service_id bigint, OUT status text, OUT hold text,
    OUT service_date date, OUT policy_number text, OUT tariff_id bigint, OUT amount numeric,
    OUT period_id bigint, OUT released_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    time_zone text;
    ids jsonb;
    billable boolean;
    count_id bigint;
    count_value bigint;
BEGIN
    SELECT r.time_zone, (p_finished_at AT TIME ZONE r.time_zone)::date INTO time_zone, service_date
    FROM tenants_region r WHERE r.id = p_region_id;
    IF EXISTS (SELECT FROM inference_defect d WHERE d.analysis_id = p_analysis_id AND d.severity = 'critical') THEN
        outcome := 'defective';
        RETURN;
    END IF;
    policy_number := p_policy_number;
    IF policy_number IS NULL THEN
        SELECT i.metadata -> '00101002' INTO ids FROM archive_instance i
        WHERE i.study_id = p_study_id ORDER BY i.id LIMIT 1;
        policy_number := billing_oms_policy_number(ids);
        IF policy_number IS NULL THEN
            outcome := 'policy_unread';
            other_ids := ids::text;
            RETURN;
        END IF;
    END IF;
    SELECT t.id, t.price INTO tariff_id, amount FROM billing_tariff t
    WHERE t.region_id = p_region_id AND t.study_kind = p_study_kind AND t.valid_from <= service_date
      AND (t.valid_to IS NULL OR t.valid_to >= service_date)
    LIMIT 1;
    billable := policy_number <> '' AND tariff_id IS NOT NULL;
    IF billable THEN
        period_id := p_period_id;
        IF period_id IS NULL THEN
            SELECT p.id INTO period_id FROM billing_billingperiod p
            WHERE p.region_id = p_region_id AND p.month = date_trunc('month', service_date)::date
              AND p.status = 'open'
            FOR SHARE;
        END IF;
        IF period_id IS NULL THEN
            outcome := 'no_period';
            RETURN;
        END IF;
        status := 'billable';
        hold := '';
        released_at := p_now;
    ELSE
        tariff_id := NULL;
        amount := NULL;
        status := 'needs_data';
        hold := CASE WHEN policy_number = '' THEN 'no_policy' ELSE 'no_tariff' END;
    END IF;
    INSERT INTO billing_billableservice AS b (
        organization_id, region_id, kind, status, hold, analysis_id, study_id, study_kind, service_date,
        policy_number, tariff_id, amount, period_id, reverses_id, reason, created_at, released_at)
    VALUES (p_organization_id, p_region_id, 'charge', status, hold, p_analysis_id, p_study_id, p_study_kind,
            service_date, policy_number, tariff_id, amount, period_id, NULL, '', p_now, released_at)
    ON CONFLICT DO NOTHING
    RETURNING b.id INTO service_id;
    outcome := CASE WHEN service_id IS NULL THEN 'charged_before' ELSE 'charged' END;
    IF service_id IS NOT NULL AND billable THEN
        -- The daily count of money billed, as medai.stats.counts.BILLING_STATS counts this line (one row of
        -- its GROUP BY, no zero rows); the caller tells the stats receiver so (service_billed, counted).
        INSERT INTO stats_dailycount AS c (organization_id, region_id, day, modality, service_id, stat, value)
        SELECT p_organization_id, p_region_id, (p_now AT TIME ZONE time_zone)::date, coalesce(s.modalities[1], ''),
               a.service_id, 'billed_kopecks', (amount * 100)::bigint
        FROM inference_analysis a, archive_study s WHERE a.id = p_analysis_id AND s.id = p_study_id
        ON CONFLICT ON CONSTRAINT one_count_per_cell DO UPDATE SET value = c.value + EXCLUDED.value
        RETURNING c.id, c.value INTO count_id, count_value;
        IF count_value = 0 THEN
            DELETE FROM stats_dailycount WHERE id = count_id AND value = 0;
        END IF;
    END IF;
END $$;
"""

DROP_SQL = """
DROP FUNCTION IF EXISTS billing_analysis_charge(bigint, bigint, bigint, bigint, text, timestamptz, timestamptz,
                                                text, bigint);
DROP FUNCTION IF EXISTS billing_oms_policy_number(jsonb);
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_ledger_rules"), ("inference", "0003_quality_monitoring"),
                    ("stats", "0001_initial")]
    operations = [migrations.RunSQL(FUNCTIONS_SQL, DROP_SQL)]
