"""/api/v1/worklist: an organization's studies in the order a radiologist should read them, with claim and
complete. Listing a study is reading it: every row shown is recorded in the study access log."""

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from inference import services
from inference.records import WorklistEntry
from inference.selectors import worklist_visible
from inference.serializers import WorklistEntrySerializer
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from medai.accounts.principal import NOBODY
from medai.dicomweb.base import record_study_access

READERS = (Role.RADIOLOGIST, Role.ORG_ADMIN, Role.REGIONAL_ADMIN, Role.PLATFORM_ADMIN)


class WorklistFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=WorklistEntry.Status.choices)
    modality = django_filters.CharFilter(method="by_modality")
    urgent = django_filters.BooleanFilter()
    ai_flagged = django_filters.BooleanFilter()

    class Meta:
        model = WorklistEntry
        fields = ["status", "urgent", "ai_flagged"]

    def by_modality(self, queryset, name, value):
        return queryset.filter(study__modalities__contains=[value.upper()])


class WorklistView(generics.ListAPIView):
    """Open studies by default (awaiting AI, ready, claimed); `?status=` shows others."""

    serializer_class = WorklistEntrySerializer
    filterset_class = WorklistFilter
    permission_classes = [HasRole(*READERS)]

    def get_queryset(self):
        queryset = worklist_visible(principal=self.request.auth or NOBODY)
        if "status" not in self.request.query_params:
            queryset = queryset.filter(status__in=WorklistEntry.OPEN)
        return queryset

    def list(self, request, *args, **kwargs) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        record_study_access(request=request, principal=request.auth, studies=[e.study for e in page],
                            endpoint="worklist")
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class _WorklistAction(APIView):
    permission_classes = [HasRole(Role.RADIOLOGIST)]

    def entry(self, study_uid: str) -> WorklistEntry:
        entry = worklist_visible(principal=self.request.auth).filter(study__study_instance_uid=study_uid).first()
        if entry is None:
            raise NotFound("No such study on the worklist.")
        return entry

    def act(self, request, study_uid: str, action) -> Response:
        try:
            entry = action(entry=self.entry(study_uid), principal=request.auth)
        except services.WorklistConflict as conflict:
            return Response({"detail": str(conflict)}, status=409)
        return Response(WorklistEntrySerializer(entry).data)


class WorklistClaimView(_WorklistAction):
    @extend_schema(request=None, responses=WorklistEntrySerializer)
    def post(self, request, study_uid: str) -> Response:
        return self.act(request, study_uid, services.worklist_claim)


class WorklistCompleteView(_WorklistAction):
    @extend_schema(request=None, responses=WorklistEntrySerializer)
    def post(self, request, study_uid: str) -> Response:
        return self.act(request, study_uid, services.worklist_complete)
