from django.contrib import admin

from billing.models import BillingPeriod, Tariff


class _ReadOnly(admin.ModelAdmin):
    """Billing changes through its API (history, overlap and period rules live in billing.services)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Tariff)
class TariffAdmin(_ReadOnly):
    list_display = ["region", "study_kind", "service_code", "price", "valid_from", "valid_to"]
    list_filter = ["region", "study_kind"]


@admin.register(BillingPeriod)
class BillingPeriodAdmin(_ReadOnly):
    list_display = ["region", "month", "status", "closed_by", "closed_at", "exported_at"]
    list_filter = ["region", "status"]
