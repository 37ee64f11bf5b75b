"""/api/v1/billing/services and /totals: the ledger at the caller's scope.

Finance, and the admins of an organization or region, list billable services (an organization its
*needs data* list, to supply missing policy numbers); finance reverses; the ministry sees totals only,
never a patient's line. A listed service is a read of its study: recorded in the study access log.
"""

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import services
from billing.models import BillableService
from billing.selectors import TOTAL_GROUPS, service_totals, services_visible
from billing.serializers import (
    BillableServiceSerializer,
    PolicySerializer,
    ReversalSerializer,
    TotalsQuerySerializer,
)
from inference.records import StudyKind
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from medai.accounts.principal import NOBODY
from medai.dicomweb.base import record_study_access

LEDGER_READERS = (Role.FINANCE, Role.ORG_ADMIN, Role.REGIONAL_ADMIN, Role.PLATFORM_ADMIN)
POLICY_SUPPLIERS = (Role.FINANCE, Role.ORG_ADMIN, Role.UPLOADER)


class BillableServiceFilter(django_filters.FilterSet):
    organization = django_filters.CharFilter(field_name="organization__oms_code")
    region = django_filters.CharFilter(field_name="region__code")
    period = django_filters.DateFilter(field_name="period__month", input_formats=["%Y-%m"])
    study_kind = django_filters.ChoiceFilter(choices=StudyKind.choices)
    status = django_filters.ChoiceFilter(choices=BillableService.Status.choices)
    kind = django_filters.ChoiceFilter(choices=BillableService.Kind.choices)
    hold = django_filters.ChoiceFilter(choices=BillableService.Hold.choices)
    date_from = django_filters.DateFilter(field_name="service_date", lookup_expr="gte")
    date_to = django_filters.DateFilter(field_name="service_date", lookup_expr="lte")

    class Meta:
        model = BillableService
        fields = []


class BillableServiceListView(generics.ListAPIView):
    serializer_class = BillableServiceSerializer
    filterset_class = BillableServiceFilter
    permission_classes = [HasRole(*LEDGER_READERS)]

    def get_queryset(self):
        return services_visible(principal=self.request.auth or NOBODY)

    def list(self, request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        record_study_access(request=request, principal=request.auth, studies=[s.study for s in page],
                            endpoint="billing")
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class _ServiceAction(APIView):
    def service(self, service_id: int) -> BillableService:
        service = services_visible(principal=self.request.auth).filter(id=service_id).first()
        if service is None:
            raise NotFound("Нет такой услуги.")
        return service

    def conflict(self, conflict: services.BillingConflict) -> Response:
        return Response({"detail": str(conflict)}, status=409)


class SupplyPolicyView(_ServiceAction):
    """The OMS policy number of a service held for it (by the clinic, or its RIS)."""

    permission_classes = [HasRole(*POLICY_SUPPLIERS)]

    @extend_schema(request=PolicySerializer, responses=BillableServiceSerializer)
    def post(self, request, service_id: int) -> Response:
        service = self.service(service_id)
        body = PolicySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            service = services.billable_service_supply_policy(
                service=service, policy_number=body.validated_data["policy_number"]
            )
        except services.BillingConflict as conflict:
            return self.conflict(conflict)
        return Response(BillableServiceSerializer(service).data)


class ReverseServiceView(_ServiceAction):
    """A correction: the charge is reversed by a new entry in the current open period."""

    permission_classes = [HasRole(Role.FINANCE)]

    @extend_schema(request=ReversalSerializer, responses=BillableServiceSerializer)
    def post(self, request, service_id: int) -> Response:
        charge = self.service(service_id)
        body = ReversalSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            reversal = services.billable_service_reverse(charge=charge, reason=body.validated_data["reason"])
        except services.BillingConflict as conflict:
            return self.conflict(conflict)
        shown = reversal or services_visible(principal=request.auth).get(id=charge.id)
        return Response(BillableServiceSerializer(shown).data, status=201 if reversal else 200)


class TotalsView(APIView):
    """Billed amounts and counts at the caller's scope, grouped by organization, region, kind and month."""

    permission_classes = [HasRole(*LEDGER_READERS, Role.MINISTRY_ANALYST)]

    @extend_schema(parameters=[TotalsQuerySerializer], responses={200: dict})
    def get(self, request) -> Response:
        query = TotalsQuerySerializer(data={**request.query_params.dict(),
                                            "group_by": request.query_params.getlist("group_by")})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        queryset = services_visible(principal=request.auth)
        if "month_from" in params:
            queryset = queryset.filter(period__month__gte=params["month_from"])
        if "month_to" in params:
            queryset = queryset.filter(period__month__lte=params["month_to"])
        group_by = [name for name in TOTAL_GROUPS if name in params.get("group_by", set())]
        rows = service_totals(queryset=queryset, group_by=group_by)
        for row in rows:
            row["amount"] = f"{row['amount']:.2f}"  # money as a string, as in every serializer
            if row.get("month"):
                row["month"] = row["month"].strftime("%Y-%m")
        return Response({"group_by": group_by, "rows": rows})
