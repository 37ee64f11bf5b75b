"""/api/v1/studies/{uid}/results: what AI made of a study, as JSON (the same as its SR and SC)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.selectors import analyses_of_study
from inference.serializers import AnalysisSerializer
from medai.archive.selectors import studies_visible
from medai.dicomweb.base import record_study_access


class StudyResultsView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "StudyResults",
            {
                "study_instance_uid": serializers.CharField(),
                "worklist_status": serializers.CharField(allow_null=True),
                "analyses": AnalysisSerializer(many=True),
            },
        )
    )
    def get(self, request, study_uid: str) -> Response:
        study = studies_visible(principal=request.auth).filter(study_instance_uid=study_uid).first()
        if study is None:
            raise NotFound("No such study.")
        record_study_access(request=request, principal=request.auth, studies=[study], endpoint="results")
        analyses = analyses_of_study(principal=request.auth, study_uid=study_uid)
        entry = getattr(study, "worklist_entry", None)
        return Response({
            "study_instance_uid": study.study_instance_uid,
            "worklist_status": entry.status if entry else None,
            "analyses": AnalysisSerializer(analyses, many=True, context={"request": request}).data,
        })
