from django.db import migrations

from tenants.rls import create_visibility_function


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [create_visibility_function()]
