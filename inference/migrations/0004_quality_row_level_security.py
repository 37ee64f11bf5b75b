from django.db import migrations

from tenants.rls import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [("inference", "0003_quality_monitoring")]
    operations = [
        enable_row_level_security(table)
        for table in ("inference_defect", "inference_review", "inference_reviewsample")
    ]
