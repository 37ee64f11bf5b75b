"""/api/v1/billing/periods and /exports: months of billing, closing them, and their registers.

Only finance closes a period (at the scope of its region or the nation) and exports registers (an
organization's finance only its own). Exports are built by a worker; the record shows its status, and
a ready one downloads as stored, byte for byte, with its SHA-256 in a header.
"""

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from billing import exports, services
from billing.models import RegisterExport
from billing.selectors import exports_visible, periods_visible
from billing.serializers import ExportRequestSerializer, PeriodSerializer, RegisterExportSerializer
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from medai.accounts.principal import NOBODY, Scope
from medai.archive.storage import get_storage
from tenants.selectors import organizations_visible

CONTENT_TYPES = {
    RegisterExport.Format.XML: "application/zip",
    RegisterExport.Format.CSV: "text/csv; charset=utf-8",
    RegisterExport.Format.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class PeriodViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PeriodSerializer
    permission_classes = [HasRole(Role.FINANCE, Role.REGIONAL_ADMIN, Role.ORG_ADMIN, Role.PLATFORM_ADMIN)]
    filterset_fields = ["status"]

    def get_queryset(self):
        return periods_visible(principal=self.request.auth or NOBODY)

    @extend_schema(request=None, responses=PeriodSerializer)
    @action(detail=True, methods=["post"], permission_classes=[HasRole(Role.FINANCE)])
    def close(self, request, pk=None) -> Response:
        if request.auth.scope is Scope.ORGANIZATION:
            raise PermissionDenied("Период региона закрывает финансовая служба региона или страны.")
        try:
            period = services.period_close(period=self.get_object(), closed_by=request.auth.subject)
        except services.BillingConflict as conflict:
            return Response({"detail": str(conflict)}, status=409)
        return Response(PeriodSerializer(period).data)

    @extend_schema(methods=["get"], request=None, responses=RegisterExportSerializer(many=True))
    @extend_schema(methods=["post"], request=ExportRequestSerializer, responses={202: RegisterExportSerializer})
    @action(detail=True, methods=["get", "post"], permission_classes=[HasRole(Role.FINANCE)])
    def exports(self, request, pk=None) -> Response:
        period = self.get_object()
        if request.method == "GET":
            listed = exports_visible(principal=request.auth).filter(period=period)
            return Response(RegisterExportSerializer(listed, many=True).data)
        body = ExportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        organization = organizations_visible(principal=request.auth).filter(
            oms_code=body.validated_data["organization"]).first()
        if organization is None:
            raise NotFound("Нет такой организации.")
        try:
            export = exports.register_export_request(period=period, organization=organization,
                                                     file_format=body.validated_data["format"],
                                                     requested_by=request.auth.subject)
        except exports.ExportRefused as refused:
            return Response({"detail": str(refused)}, status=409)
        return Response(RegisterExportSerializer(export).data, status=202)


class RegisterExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = RegisterExportSerializer
    permission_classes = [HasRole(Role.FINANCE)]
    filterset_fields = ["format", "status"]

    def get_queryset(self):
        return exports_visible(principal=self.request.auth or NOBODY)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None) -> StreamingHttpResponse:
        export = self.get_object()
        if export.status != RegisterExport.Status.READY:
            raise NotFound("Реестр ещё не готов.")
        response = StreamingHttpResponse(get_storage().iter_chunks(export.storage_key),
                                         content_type=CONTENT_TYPES[export.format])
        response["Content-Disposition"] = f'attachment; filename="{export.file_name}"'
        response["Content-Length"] = str(export.size_bytes)
        response["X-Checksum-SHA256"] = export.sha256
        return response
