"""API shapes of billing: tariffs, the ledger, periods and register exports."""

from rest_framework import serializers

from billing.models import BillableService, BillingPeriod, RegisterExport, Tariff
from billing.selectors import TOTAL_GROUPS


class TariffSerializer(serializers.ModelSerializer):
    region = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Tariff
        fields = ["id", "region", "study_kind", "service_code", "name", "price", "valid_from", "valid_to",
                  "diagnosis_code", "care_profile", "created_by", "created_at"]
        read_only_fields = ["created_by", "created_at"]

    def validate(self, attrs: dict) -> dict:
        start = attrs.get("valid_from", getattr(self.instance, "valid_from", None))
        end = attrs.get("valid_to", getattr(self.instance, "valid_to", None))
        if end is not None and start is not None and end < start:
            raise serializers.ValidationError({"valid_to": "Срок действия заканчивается раньше, чем начинается."})
        return attrs


class TariffCreateSerializer(TariffSerializer):
    region = serializers.CharField(help_text="Region code, e.g. RU-MOW")


class BillableServiceSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="organization.oms_code")
    region = serializers.CharField(source="region.code")
    study_instance_uid = serializers.CharField(source="study.study_instance_uid")
    service_code = serializers.CharField(source="tariff.service_code", default=None)
    period = serializers.DateField(source="period.month", format="%Y-%m", default=None)
    reverses = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = BillableService
        fields = ["id", "kind", "status", "hold", "organization", "region", "study_instance_uid", "analysis",
                  "study_kind", "service_date", "policy_number", "service_code", "amount", "period", "reverses",
                  "reason", "created_at", "released_at"]


class PolicySerializer(serializers.Serializer):
    policy_number = serializers.RegexField(r"^\d{16}$", help_text="The single OMS policy number (ENP), 16 digits")


class ReversalSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class TotalsQuerySerializer(serializers.Serializer):
    group_by = serializers.MultipleChoiceField(choices=sorted(TOTAL_GROUPS), required=False)
    month_from = serializers.DateField(required=False, input_formats=["%Y-%m"])
    month_to = serializers.DateField(required=False, input_formats=["%Y-%m"])


class PeriodSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.code")
    month = serializers.DateField(format="%Y-%m")

    class Meta:
        model = BillingPeriod
        fields = ["id", "region", "month", "status", "closed_by", "closed_at", "exported_at"]


class ExportRequestSerializer(serializers.Serializer):
    organization = serializers.CharField(help_text="OMS code of the organization")
    format = serializers.ChoiceField(choices=RegisterExport.Format.choices, default=RegisterExport.Format.XML)


class RegisterExportSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="organization.oms_code")
    region = serializers.CharField(source="period.region.code")
    period = serializers.DateField(source="period.month", format="%Y-%m")
    download = serializers.SerializerMethodField()

    class Meta:
        model = RegisterExport
        fields = ["id", "organization", "region", "period", "format", "number", "status", "error", "file_name",
                  "size_bytes", "sha256", "services_count", "total", "requested_by", "requested_at", "finished_at",
                  "download"]

    def get_download(self, export: RegisterExport) -> str | None:
        if export.status != RegisterExport.Status.READY:
            return None
        return f"/api/v1/billing/exports/{export.id}/download"
