"""The API of quality monitoring, each at the caller's scope:

- `/api/v1/results/{id}/review`: a radiologist of the result's organization records a verdict on it; the
  clinic, the region and the nation read it (another tenant's result is 404);
- `/api/v1/worklist/{uid}/reopen`: a radiologist reopens a study the AI closed as normal;
- `/api/v1/quality/review-sample`: the results drawn for review, per service and month;
- `/api/v1/quality/metrics` (JSON, or CSV with `?format=csv` or `Accept: text/csv`) and
  `/api/v1/quality/alerts`: cross-tenant aggregates, for the nation and, their own rows, the regions
  (`inference.quality.clinical._regional` says why not for organizations);
- `/api/v1/quality/defects`: technological monitoring's defect counts and rates per service, region, month.
"""

import csv
import datetime as dt
import io

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import OpenApiTypes, extend_schema, extend_schema_view, inline_serializer
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from inference.api.worklist import _WorklistAction
from inference.quality import clinical
from inference.quality.records import QualityAlert, Review, ReviewSample, ServiceMonthMetrics
from inference.records import Analysis
from inference.serializers import WorklistEntrySerializer
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole, require_role
from medai.accounts.principal import NOBODY
from medai.dicomweb.base import record_study_access

REVIEW_READERS = (Role.RADIOLOGIST, Role.ORG_ADMIN, Role.REGIONAL_ADMIN, Role.PLATFORM_ADMIN, Role.MINISTRY_ANALYST)
SAMPLE_READERS = (Role.RADIOLOGIST, Role.ORG_ADMIN, Role.REGIONAL_ADMIN, Role.PLATFORM_ADMIN)
AGGREGATE_READERS = (Role.PLATFORM_ADMIN, Role.MINISTRY_ANALYST, Role.REGIONAL_ADMIN)
DEFECT_READERS = (*AGGREGATE_READERS, Role.ORG_ADMIN)
MONTH = ["%Y-%m"]


# --- shapes ---------------------------------------------------------------------------------------------------


class ReviewInputSerializer(serializers.Serializer):
    true_pathology = serializers.BooleanField(help_text="The target pathology is present, by the radiologist")
    agrees = serializers.BooleanField(
        allow_null=True, default=None,
        help_text="Agrees with the AI's binary decision; left out, it follows from true_pathology",
    )
    localisation_correct = serializers.BooleanField(
        allow_null=True, default=None,
        help_text="Only for a result the AI flagged: its markings are in the right place",
    )
    significance = serializers.ChoiceField(
        choices=Review.Significance.choices, allow_null=True, default=None,
        help_text="Required for a disagreement; 'none' when agreeing (the default)",
    )
    comment = serializers.CharField(max_length=1000, allow_blank=True, default="")


class ReviewSerializer(serializers.ModelSerializer):
    analysis_id = serializers.IntegerField(read_only=True)
    study_instance_uid = serializers.CharField(source="analysis.study.study_instance_uid", read_only=True)
    service = serializers.CharField(source="service.code", read_only=True)

    class Meta:
        model = Review
        fields = ["analysis_id", "study_instance_uid", "service", "reviewer", "agrees", "true_pathology",
                  "localisation_correct", "significance", "comment", "reviewed_at"]


class ReviewSampleSerializer(serializers.ModelSerializer):
    analysis_id = serializers.IntegerField(read_only=True)
    study_instance_uid = serializers.CharField(source="analysis.study.study_instance_uid", read_only=True)
    service = serializers.CharField(source="service.code", read_only=True)
    month = serializers.DateField(format="%Y-%m", read_only=True)
    reviewed = serializers.BooleanField(read_only=True, help_text="A verdict on the result exists")

    class Meta:
        model = ReviewSample
        fields = ["analysis_id", "study_instance_uid", "service", "month", "reason", "reviewed", "drawn_at"]


class MetricsSerializer(serializers.ModelSerializer):
    service = serializers.CharField(source="service.code", read_only=True)
    region = serializers.CharField(source="region.code", read_only=True, allow_null=True,
                                   help_text="Empty: the nation")
    month = serializers.DateField(format="%Y-%m", read_only=True)

    class Meta:
        model = ServiceMonthMetrics
        fields = ["service", "region", "month", "results", "positives", "reviewed", "reviewed_positive", "auroc",
                  "auroc_ci_low", "auroc_ci_high", "sensitivity", "specificity", "ppv", "npv", "accuracy",
                  "localisation_accuracy", "positive_rate_drift", "score_drift", "score_psi", "computed_at"]


class AlertSerializer(serializers.ModelSerializer):
    service = serializers.CharField(source="service.code", read_only=True)
    region = serializers.CharField(source="region.code", read_only=True, allow_null=True,
                                   help_text="Empty: the nation")
    month = serializers.DateField(format="%Y-%m", read_only=True)

    class Meta:
        model = QualityAlert
        fields = ["id", "service", "region", "month", "kind", "message", "value", "created_at", "acknowledged_by",
                  "acknowledged_at"]


class DefectsQuerySerializer(serializers.Serializer):
    service = serializers.CharField(required=False, help_text="Code of the AI service")
    region = serializers.CharField(required=False, help_text="Code of the region")
    month_from = serializers.DateField(required=False, input_formats=MONTH, help_text="YYYY-MM; 11 months back")
    month_to = serializers.DateField(required=False, input_formats=MONTH, help_text="YYYY-MM; this month")


DefectRatesSerializer = inline_serializer("DefectRates", {"rows": inline_serializer("DefectRateRow", {
    "service": serializers.CharField(), "region": serializers.CharField(), "month": serializers.CharField(),
    "results": serializers.IntegerField(), "defective": serializers.IntegerField(),
    "critical": serializers.IntegerField(), "major": serializers.IntegerField(), "minor": serializers.IntegerField(),
    "defect_rate": serializers.FloatField(),
}, many=True)})


class CsvRenderer(BaseRenderer):
    """Flat rows as CSV the way Russian Excel opens it, as the billing registers are written: UTF-8 with a
    BOM, ";" between fields, decimal comma. An error (a dict) is one row."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        rows = data if isinstance(data, list) else [data]
        columns = list(rows[0]) if rows else list(getattr(renderer_context.get("view"), "csv_columns", []))
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([_csv_cell(row.get(column)) for column in columns] for row in rows)
        return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, float):
        return f"{value:.4f}".replace(".", ",")
    return str(value)


def _months_before(day: dt.date, count: int) -> dt.date:
    """The first day of the month `count` months before that of `day`."""
    index = day.year * 12 + day.month - 1 - count
    return dt.date(index // 12, index % 12 + 1, 1)


# --- reviews and reopening ------------------------------------------------------------------------------------


class ReviewView(APIView):
    """A radiologist's verdict on one AI result: POST records it (radiologists of the result's organization,
    once), GET reads it. Reading a verdict is reading its study: recorded in the study access log."""

    permission_classes = [HasRole(*REVIEW_READERS)]

    def analysis(self, analysis_id: int) -> Analysis:
        analysis = clinical.reviewable_analysis(principal=self.request.auth, analysis_id=analysis_id)
        if analysis is None:
            raise NotFound("Нет такого результата ИИ.")
        return analysis

    @extend_schema(responses=ReviewSerializer)
    def get(self, request, analysis_id: int) -> Response:
        analysis = self.analysis(analysis_id)
        review = clinical.reviews_visible(principal=request.auth).filter(analysis=analysis).first()
        if review is None:
            raise NotFound("Результат ещё не оценён врачом.")
        record_study_access(request=request, principal=request.auth, studies=[analysis.study], endpoint="review")
        return Response(ReviewSerializer(review).data)

    @extend_schema(request=ReviewInputSerializer, responses={201: ReviewSerializer})
    def post(self, request, analysis_id: int) -> Response:
        require_role(request.auth, Role.RADIOLOGIST)
        analysis = self.analysis(analysis_id)
        body = ReviewInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            review = clinical.review_record(analysis=analysis, principal=request.auth, **body.validated_data)
        except clinical.ReviewConflict as conflict:
            return Response({"detail": str(conflict)}, status=409)
        except DjangoValidationError as error:
            raise ApiValidationError(error.message_dict) from error
        record_study_access(request=request, principal=request.auth, studies=[analysis.study], endpoint="review")
        return Response(ReviewSerializer(review).data, status=201)


class WorklistReopenView(_WorklistAction):
    """A study the AI closed as normal goes back on the worklist; its result joins the review sample."""

    @extend_schema(request=None, responses=WorklistEntrySerializer)
    def post(self, request, study_uid: str) -> Response:
        return self.act(request, study_uid, clinical.worklist_reopen)


# --- the sample, metrics, alerts, defects ---------------------------------------------------------------------


class MonthRangeFilter(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="service__code", help_text="Code of the AI service")
    region = django_filters.CharFilter(field_name="region__code", help_text="Code of the region")
    month_from = django_filters.DateFilter(field_name="month", lookup_expr="gte", input_formats=MONTH,
                                           help_text="YYYY-MM")
    month_to = django_filters.DateFilter(field_name="month", lookup_expr="lte", input_formats=MONTH,
                                         help_text="YYYY-MM")


class ReviewSampleFilter(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="service__code", help_text="Code of the AI service")
    month = django_filters.DateFilter(input_formats=MONTH, help_text="YYYY-MM")
    reason = django_filters.ChoiceFilter(choices=ReviewSample.Reason.choices)
    reviewed = django_filters.BooleanFilter()

    class Meta:
        model = ReviewSample
        fields = []


class ReviewSampleView(generics.ListAPIView):
    """What radiologists should review: the results drawn per service and month, at the caller's scope.
    Listing a study is reading it: every row shown is recorded in the study access log."""

    serializer_class = ReviewSampleSerializer
    filterset_class = ReviewSampleFilter
    permission_classes = [HasRole(*SAMPLE_READERS)]

    def get_queryset(self):
        return clinical.review_sample_visible(principal=self.request.auth or NOBODY)

    def list(self, request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        record_study_access(request=request, principal=request.auth, studies=[row.analysis.study for row in page],
                            endpoint="review-sample")
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class MetricsFilter(MonthRangeFilter):
    class Meta:
        model = ServiceMonthMetrics
        fields = []


@extend_schema_view(get=extend_schema(responses={(200, "application/json"): MetricsSerializer(many=True),
                                                 (200, "text/csv"): OpenApiTypes.STR}))
class MetricsView(generics.ListAPIView):
    """Clinical metrics per service, region (empty: the nation) and month; `?format=csv` for a download of
    every matching row (JSON is paginated)."""

    serializer_class = MetricsSerializer
    filterset_class = MetricsFilter
    permission_classes = [HasRole(*AGGREGATE_READERS)]
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CsvRenderer]
    csv_columns = MetricsSerializer.Meta.fields

    def get_queryset(self):
        return clinical.metrics_visible(principal=self.request.auth or NOBODY)

    def list(self, request, *args, **kwargs) -> Response:
        if request.accepted_renderer.format != CsvRenderer.format:
            return super().list(request, *args, **kwargs)
        rows = self.get_serializer(self.filter_queryset(self.get_queryset()), many=True).data
        return Response(rows, headers={"Content-Disposition": 'attachment; filename="quality-metrics.csv"'})


class AlertFilter(MonthRangeFilter):
    kind = django_filters.ChoiceFilter(choices=QualityAlert.Kind.choices)
    acknowledged = django_filters.BooleanFilter(field_name="acknowledged_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = QualityAlert
        fields = []


class AlertListView(generics.ListAPIView):
    """What the operator is told (defect rates, critical streaks, drift), newest first."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    permission_classes = [HasRole(*AGGREGATE_READERS)]

    def get_queryset(self):
        return clinical.alerts_visible(principal=self.request.auth or NOBODY)


class AlertAcknowledgeView(APIView):
    permission_classes = [HasRole(Role.PLATFORM_ADMIN)]

    @extend_schema(request=None, responses=AlertSerializer)
    def post(self, request, alert_id: int) -> Response:
        alert = clinical.alerts_visible(principal=request.auth).filter(id=alert_id).first()
        if alert is None:
            raise NotFound("Нет такого оповещения.")
        return Response(AlertSerializer(clinical.alert_acknowledge(alert=alert, principal=request.auth)).data)


class DefectRatesView(APIView):
    """Results with defects found by technological monitoring, per service, region and month, at the caller's
    scope (an organization sees its own)."""

    permission_classes = [HasRole(*DEFECT_READERS)]

    @extend_schema(parameters=[DefectsQuerySerializer], responses=DefectRatesSerializer)
    def get(self, request) -> Response:
        query = DefectsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        month_to = params.get("month_to") or timezone.now().date()
        month_from = params.get("month_from") or _months_before(month_to, 11)
        rows = clinical.defect_rates(principal=request.auth, month_from=month_from, month_to=month_to,
                                     service=params.get("service"), region=params.get("region"))
        return Response({"rows": rows})
