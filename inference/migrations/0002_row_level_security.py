from django.db import migrations

from tenants.rls import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [("inference", "0001_initial"), ("tenants", "0002_tenant_visibility_function")]
    operations = [
        enable_row_level_security(table)
        for table in (
            "inference_analysis", "inference_worklistentry", "inference_webhookendpoint", "inference_webhookdelivery"
        )
    ]
