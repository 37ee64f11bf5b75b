"""API shapes of AI analysis: the registry, results and the worklist."""

from rest_framework import serializers

from inference.quality.records import Defect
from inference.records import AIService, Analysis, WorklistEntry
from inference.result_uids import result_uid
from medai.accounts.principal import Scope
from tenants.models import MedicalOrganization, Region
from tenants.selectors import organizations_visible, regions_visible


class AIServiceSerializer(serializers.ModelSerializer):
    enabled_regions = serializers.SlugRelatedField(
        slug_field="code", many=True, required=False, queryset=Region.objects.all()
    )
    enabled_organizations = serializers.SlugRelatedField(
        slug_field="oms_code", many=True, required=False, queryset=MedicalOrganization.objects.all()
    )
    autonomous_organizations = serializers.SlugRelatedField(
        slug_field="oms_code", many=True, required=False, queryset=MedicalOrganization.objects.all()
    )
    shadow_of = serializers.SlugRelatedField(
        slug_field="code", required=False, allow_null=True, queryset=AIService.objects.all(),
        help_text="Run in shadow beside this service (results kept, never delivered) until promoted",
    )

    class Meta:
        model = AIService
        exclude = ["id"]
        read_only_fields = ["created_at", "updated_at"]

    def to_representation(self, service: AIService) -> dict:
        """Which other tenants use a service is theirs to know: below the nation, only the caller's own
        region and organizations are listed."""
        data = super().to_representation(service)
        request = self.context.get("request")
        principal = getattr(request, "auth", None)
        if principal is not None and principal.scope is not Scope.NATIONAL:
            mine = set(organizations_visible(principal=principal).values_list("oms_code", flat=True))
            region_codes = set(regions_visible(principal=principal).values_list("code", flat=True))
            data["enabled_regions"] = [code for code in data["enabled_regions"] if code in region_codes]
            for field in ("enabled_organizations", "autonomous_organizations"):
                data[field] = [code for code in data[field] if code in mine]
        return data

    def validate(self, attrs: dict) -> dict:
        from inference.profiles import PROFILES

        profile = attrs.get("profile", getattr(self.instance, "profile", None))
        if profile not in PROFILES:
            raise serializers.ValidationError({"profile": f"Unknown profile; one of {sorted(PROFILES)}."})
        pathology = attrs.get("pathology_threshold", getattr(self.instance, "pathology_threshold", None))
        autonomous = attrs.get("autonomous_threshold", getattr(self.instance, "autonomous_threshold", None))
        if autonomous is not None and pathology is not None and autonomous > pathology:
            raise serializers.ValidationError({"autonomous_threshold": "Must not exceed the pathology threshold."})
        return attrs


class ServiceBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = AIService
        fields = ["code", "vendor", "name", "version", "stage", "study_kind"]


class DefectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Defect
        fields = ["requirement", "severity", "detail", "found_at"]


class AnalysisSerializer(serializers.ModelSerializer):
    service = ServiceBriefSerializer(read_only=True)
    defects = DefectSerializer(many=True, read_only=True, help_text="Found by technological monitoring")
    sr = serializers.SerializerMethodField()
    sc = serializers.SerializerMethodField()
    urgent_finding = serializers.BooleanField(source="ai_urgent")

    class Meta:
        model = Analysis
        fields = [
            "id", "service", "status", "reason_code", "reason", "probability", "pathology", "category",
            "urgent_finding", "autonomous", "outcome", "model_version", "sr", "sc", "created_at", "finished_at",
            "deadline_at", "late", "originals_verified", "defects", "superseded_at", "superseded_reason",
        ]

    def _study_url(self, analysis: Analysis) -> str:
        request = self.context.get("request")
        path = f"/dicomweb/studies/{analysis.study.study_instance_uid}"
        return request.build_absolute_uri(path) if request else path

    def get_sr(self, analysis: Analysis) -> dict | None:
        if not analysis.sr_sop_instance_uid:
            return None
        series = result_uid(analysis.id, "sr-series")
        return {"sop_instance_uid": analysis.sr_sop_instance_uid, "series_instance_uid": series,
                "url": f"{self._study_url(analysis)}/series/{series}/instances/{analysis.sr_sop_instance_uid}"}

    def get_sc(self, analysis: Analysis) -> dict | None:
        if not analysis.sc_series_instance_uid:
            return None
        return {"series_instance_uid": analysis.sc_series_instance_uid,
                "url": f"{self._study_url(analysis)}/series/{analysis.sc_series_instance_uid}"}


class WorklistEntrySerializer(serializers.ModelSerializer):
    study_instance_uid = serializers.CharField(source="study.study_instance_uid")
    accession_number = serializers.CharField(source="study.accession_number")
    patient_id = serializers.CharField(source="study.patient_id")
    patient_name = serializers.CharField(source="study.patient_name")
    study_date = serializers.DateField(source="study.study_date")
    modalities = serializers.ListField(source="study.modalities", child=serializers.CharField())

    class Meta:
        model = WorklistEntry
        fields = [
            "study_instance_uid", "accession_number", "patient_id", "patient_name", "study_date", "modalities",
            "status", "urgent", "ai_flagged", "ai_probability", "claimed_by", "claimed_at", "reported_at",
            "created_at",
        ]
