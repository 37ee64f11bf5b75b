"""The study access log is append-only: the database refuses to change or delete its rows."""

from django.db import migrations

FORBID_SQL = """
CREATE OR REPLACE FUNCTION medai_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER study_access_append_only BEFORE UPDATE OR DELETE ON archive_studyaccess
    FOR EACH ROW EXECUTE FUNCTION medai_forbid_change();
"""

ALLOW_SQL = """
DROP TRIGGER IF EXISTS study_access_append_only ON archive_studyaccess;
DROP FUNCTION IF EXISTS medai_forbid_change();
"""


class Migration(migrations.Migration):
    dependencies = [("archive", "0002_row_level_security")]
    operations = [migrations.RunSQL(FORBID_SQL, ALLOW_SQL)]
