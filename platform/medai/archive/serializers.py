from rest_framework import serializers

from medai.archive.models import StudyAccess


class StudyAccessSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="organization.oms_code")
    region = serializers.CharField(source="region.code")

    class Meta:
        model = StudyAccess
        fields = ["id", "at", "subject", "role", "endpoint", "path", "client_address", "study_instance_uid",
                  "organization", "region"]
