from rest_framework import serializers

from medai.accounts.models import Role
from tenants.models import MedicalOrganization, Region, SenderCheck


class RegionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Region
        fields = ["id", "code", "okato_code", "name", "time_zone", "status"]
        read_only_fields = ["status"]


class OrganizationSerializer(serializers.ModelSerializer):
    region = serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.none())

    class Meta:
        model = MedicalOrganization
        fields = ["id", "region", "name", "short_name", "oms_code", "ogrn", "address", "status", "status_reason",
                  "pacs_client_id", "activated_at"]
        read_only_fields = ["status", "status_reason", "pacs_client_id", "activated_at"]

    def __init__(self, *args, regions=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if regions is not None:
            self.fields["region"].queryset = regions  # only regions the caller may onboard into


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class SenderCheckRequestSerializer(serializers.Serializer):
    study_instance_uid = serializers.CharField(max_length=64)


class SenderCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = SenderCheck
        fields = ["id", "study_instance_uid", "passed", "report", "checked_by", "checked_at"]


class InvitationRequestSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[a-zA-Z0-9._-]{3,100}$")
    email = serializers.EmailField()
    first_name = serializers.CharField(max_length=100)
    last_name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=[Role.ORG_ADMIN, Role.RADIOLOGIST, Role.UPLOADER, Role.FINANCE])


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.CharField()
