from django.contrib import admin

from tenants.models import MedicalOrganization, Region

admin.site.register(Region)
admin.site.register(MedicalOrganization)
