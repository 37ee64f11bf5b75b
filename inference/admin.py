from django.contrib import admin

from inference.records import AIService, Analysis


@admin.register(AIService)
class AIServiceAdmin(admin.ModelAdmin):
    list_display = ["code", "vendor", "name", "version", "study_kind", "stage", "status"]
    list_filter = ["study_kind", "stage", "status"]
    filter_horizontal = ["enabled_regions", "enabled_organizations", "autonomous_organizations"]


@admin.register(Analysis)
class AnalysisAdmin(admin.ModelAdmin):
    """Read-only: analyses change only through the pipeline."""

    list_display = ["id", "organization", "service", "status", "probability", "category", "late", "created_at"]
    list_filter = ["status", "service", "late"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
