from django.db import migrations

from tenants.rls import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [("archive", "0001_initial"), ("tenants", "0002_tenant_visibility_function")]
    operations = [
        enable_row_level_security(table)
        for table in ("archive_study", "archive_series", "archive_instance", "archive_studyaccess")
    ]
