"""REST endpoints of the archive (DICOMweb itself lives in medai.dicomweb)."""

import django_filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from medai.accounts.principal import NOBODY
from medai.archive.models import StudyAccess
from medai.archive.selectors import studies_visible, study_access_visible
from medai.archive.serializers import StudyAccessSerializer
from medai.archive.services import study_complete


class StudyCompleteView(APIView):
    """Declare a study complete now instead of waiting for the quiet time; fires `study_completed` once."""

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "StudyCompleted",
            {
                "study_instance_uid": serializers.CharField(),
                "status": serializers.CharField(),
                "completed_at": serializers.DateTimeField(),
                "newly_completed": serializers.BooleanField(),
            },
        ),
    )
    def post(self, request, study_uid: str) -> Response:
        study = studies_visible(principal=request.auth).filter(study_instance_uid=study_uid).first()
        if study is None:
            raise NotFound("No such study.")
        newly_completed = study_complete(study=study)
        study.refresh_from_db()
        return Response(
            {
                "study_instance_uid": study.study_instance_uid,
                "status": study.status,
                "completed_at": study.completed_at,
                "newly_completed": newly_completed,
            }
        )


class StudyAccessFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = StudyAccess
        fields = ["study_instance_uid", "subject", "endpoint"]


class StudyAccessListView(generics.ListAPIView):
    """Who read which study, when, through which endpoint and from where: the organization's admin sees its
    organization, a regional admin its region, the ministry and the operator everything."""

    serializer_class = StudyAccessSerializer
    filterset_class = StudyAccessFilter
    permission_classes = [HasRole(Role.ORG_ADMIN, Role.REGIONAL_ADMIN, Role.MINISTRY_ANALYST, Role.PLATFORM_ADMIN)]

    def get_queryset(self):
        return study_access_visible(principal=self.request.auth or NOBODY)
