from django.contrib import admin

from medai.accounts.models import ApiToken, Membership

admin.site.register(Membership)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "created_at", "expires_at"]
    exclude = ["key_hash"]
