"""The rules of the ledger, kept by the database as well as by billing.services:

- a tariff's validity never overlaps another's of the same region and kind (a trigger, as the embedded
  PostgreSQL has no btree_gist for an exclusion constraint; an advisory lock per region makes it safe
  under concurrent writers);
- periods only move forward (open, closed, exported), and a closed one is never deleted;
- billable services are append-only: the one update allowed is the release (or voiding) of a service
  held for missing data, nothing is deleted, and nothing is written into a period that is not open;
- billable services and register exports are tenant-owned, under row-level security.
"""

from django.db import migrations

from tenants.rls import enable_row_level_security

TRIGGERS = """
CREATE FUNCTION billing_tariff_no_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('billing_tariff'), NEW.region_id::integer);
    IF EXISTS (
        SELECT 1 FROM billing_tariff t
        WHERE t.region_id = NEW.region_id AND t.study_kind = NEW.study_kind AND t.id <> NEW.id
          AND daterange(t.valid_from, t.valid_to, '[]') && daterange(NEW.valid_from, NEW.valid_to, '[]')
    ) THEN
        RAISE EXCEPTION USING ERRCODE = 'exclusion_violation',
            MESSAGE = 'tariff validity overlaps another tariff of the region and study kind';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER billing_tariff_no_overlap BEFORE INSERT OR UPDATE ON billing_tariff
    FOR EACH ROW EXECUTE FUNCTION billing_tariff_no_overlap();

CREATE FUNCTION billing_period_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rank CONSTANT jsonb := '{"open": 0, "closed": 1, "exported": 2}';
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'open' THEN
            RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
                MESSAGE = 'a closed billing period is never deleted';
        END IF;
        RETURN OLD;
    END IF;
    IF (NEW.region_id, NEW.month) IS DISTINCT FROM (OLD.region_id, OLD.month)
       OR (rank ->> NEW.status)::int < (rank ->> OLD.status)::int
       OR (OLD.status <> 'open' AND (NEW.closed_by, NEW.closed_at) IS DISTINCT FROM (OLD.closed_by, OLD.closed_at))
    THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
            MESSAGE = 'a closed billing period cannot be reopened or changed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER billing_period_forward_only BEFORE UPDATE OR DELETE ON billing_billingperiod
    FOR EACH ROW EXECUTE FUNCTION billing_period_forward_only();

CREATE FUNCTION billing_service_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
            MESSAGE = 'the billing ledger is append-only: reverse a service instead of deleting it';
    END IF;
    IF TG_OP = 'UPDATE' AND (
        OLD.status <> 'needs_data'
        OR (NEW.kind, NEW.analysis_id, NEW.study_id, NEW.study_kind, NEW.service_date, NEW.organization_id,
            NEW.region_id, NEW.reverses_id)
           IS DISTINCT FROM (OLD.kind, OLD.analysis_id, OLD.study_id, OLD.study_kind, OLD.service_date,
                             OLD.organization_id, OLD.region_id, OLD.reverses_id)
    ) THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
            MESSAGE = 'a billed service is never edited: reverse it instead';
    END IF;
    IF NEW.period_id IS NOT NULL
       AND (SELECT status FROM billing_billingperiod WHERE id = NEW.period_id FOR SHARE) <> 'open' THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
            MESSAGE = 'the billing period is closed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER billing_service_append_only BEFORE INSERT OR UPDATE OR DELETE ON billing_billableservice
    FOR EACH ROW EXECUTE FUNCTION billing_service_append_only();
"""

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS billing_service_append_only ON billing_billableservice;
DROP FUNCTION IF EXISTS billing_service_append_only();
DROP TRIGGER IF EXISTS billing_period_forward_only ON billing_billingperiod;
DROP FUNCTION IF EXISTS billing_period_forward_only();
DROP TRIGGER IF EXISTS billing_tariff_no_overlap ON billing_tariff;
DROP FUNCTION IF EXISTS billing_tariff_no_overlap();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial"), ("tenants", "0002_tenant_visibility_function")]
    operations = [
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
        enable_row_level_security("billing_billableservice"),
        enable_row_level_security("billing_registerexport"),
    ]
