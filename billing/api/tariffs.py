"""/api/v1/billing/tariffs: the tariffs of the territorial programmes. Everyone in billing reads their
region's; finance at region or national scope (and the platform operator) adds, changes and loads them
from CSV. A tariff is never deleted: it is ended, and a new one added."""

import csv
import io

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import parsers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.response import Response

from billing import services
from billing.models import Tariff
from billing.selectors import tariffs_visible
from billing.serializers import TariffCreateSerializer, TariffSerializer
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from medai.accounts.principal import NOBODY, Principal, Scope
from tenants.models import Region
from tenants.selectors import regions_visible

READERS = (Role.FINANCE, Role.REGIONAL_ADMIN, Role.ORG_ADMIN, Role.MINISTRY_ANALYST, Role.PLATFORM_ADMIN)
CSV_LIMIT_BYTES = 1 << 20
CSV_COLUMNS = ["region", "study_kind", "service_code", "name", "price", "valid_from", "valid_to", "diagnosis_code",
               "care_profile"]


class CsvParser(parsers.BaseParser):
    """A CSV body as text (UTF-8, with or without BOM); `;` or `,` separated, as Excel saves it."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None) -> str:
        body = stream.read(CSV_LIMIT_BYTES + 1) if stream else b""
        if len(body) > CSV_LIMIT_BYTES:
            raise ParseError("Файл тарифов больше 1 МБ.")
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ParseError("Файл тарифов должен быть в кодировке UTF-8.") from error


def _require_writer(principal: Principal) -> None:
    writer = principal.has_role(Role.PLATFORM_ADMIN) or (
        principal.has_role(Role.FINANCE) and principal.scope is not Scope.ORGANIZATION
    )
    if not writer:
        raise PermissionDenied("Тарифы меняют сотрудники финансовой службы региона или страны.")


def _region(principal: Principal, code: str) -> Region:
    region = regions_visible(principal=principal).filter(code=code).first()
    if region is None:
        raise NotFound(f"Нет такого региона: {code}.")
    return region


def _rows(text: str) -> list[dict]:
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=";,")
    except csv.Error as error:
        raise ParseError("Не удалось разобрать CSV: нужна строка заголовков.") from error
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    missing = set(CSV_COLUMNS[:6]) - set(reader.fieldnames or [])
    if missing:
        raise ParseError(f"В CSV нет столбцов: {', '.join(sorted(missing))}.")
    return [{key: (value or "").strip() for key, value in row.items() if key in CSV_COLUMNS} for row in reader]


class TariffViewSet(viewsets.ModelViewSet):
    serializer_class = TariffSerializer
    permission_classes = [HasRole(*READERS)]
    http_method_names = ["get", "post", "patch", "head", "options"]  # ended, never deleted
    filterset_fields = ["study_kind"]

    def get_queryset(self):
        queryset = tariffs_visible(principal=self.request.auth or NOBODY)
        region = self.request.query_params.get("region")
        return queryset.filter(region__code=region) if region else queryset

    def get_serializer_class(self):
        return TariffCreateSerializer if self.action == "create" else TariffSerializer

    def _save(self, write, **kwargs):
        try:
            return write(**kwargs)
        except services.BillingConflict as conflict:
            raise ApiValidationError({"detail": str(conflict)}, code="conflict") from conflict
        except DjangoValidationError as error:
            raise ApiValidationError(error.message_dict) from error

    def create(self, request, *args, **kwargs) -> Response:
        _require_writer(request.auth)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        region = _region(request.auth, fields.pop("region"))
        tariff = self._save(services.tariff_create, region=region, created_by=request.auth.subject, **fields)
        return Response(TariffSerializer(tariff).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs) -> Response:
        _require_writer(request.auth)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        tariff = self._save(services.tariff_update, tariff=serializer.instance, changed_by=request.auth.subject,
                            **serializer.validated_data)
        return Response(TariffSerializer(tariff).data)

    @extend_schema(request={"text/csv": OpenApiTypes.STR}, responses=TariffSerializer(many=True))
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[CsvParser])
    def import_csv(self, request) -> Response:
        """Load tariffs from CSV (columns: region, study_kind, service_code, name, price, valid_from, and
        optionally valid_to, diagnosis_code, care_profile). All rows or none: the first bad row is named."""
        _require_writer(request.auth)
        created = []
        try:
            with transaction.atomic():
                for number, row in enumerate(_rows(request.data), start=2):
                    created.append(self._import_row(number, row))
        except _BadRow as bad:
            return Response({"row": bad.number, "errors": bad.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response(TariffSerializer(created, many=True).data, status=status.HTTP_201_CREATED)

    def _import_row(self, number: int, row: dict) -> Tariff:
        row["price"] = row.get("price", "").replace(",", ".").replace(" ", "")
        serializer = TariffCreateSerializer(data={key: value for key, value in row.items() if value != ""})
        try:
            serializer.is_valid(raise_exception=True)
            fields = dict(serializer.validated_data)
            region = _region(self.request.auth, fields.pop("region"))
            return self._save(services.tariff_create, region=region, action="imported",
                              created_by=self.request.auth.subject, **fields)
        except (ApiValidationError, NotFound) as error:
            raise _BadRow(number, error.detail) from error


class _BadRow(Exception):
    """A CSV row refused: the whole file is rolled back and this row named."""

    def __init__(self, number: int, errors) -> None:
        super().__init__(number)
        self.number, self.errors = number, errors
