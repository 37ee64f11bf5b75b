"""Exports of an organization's register for a closed period: requested by finance, built by a Celery task.

A register is written to a temporary file as a stream (a million services in constant memory), the XML
package validated against our XSDs before it is offered, hashed, and kept in object storage, so every
later download is byte-identical to the first and its checksum can be shown to the fund.
"""

import hashlib
import logging
import tempfile
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Max, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import BillableService, BillingPeriod, RegisterExport
from billing.register import (
    RegisterHeader,
    register_file_names,
    write_csv,
    write_validated_xml_package,
    write_xlsx,
)
from billing.selectors import register_lines, register_services
from medai.archive.storage import get_storage
from tenants.models import MedicalOrganization
from tenants.scope import dangerously_unscoped, organization_scope

logger = logging.getLogger(__name__)

EXPORTABLE = (BillingPeriod.Status.CLOSED, BillingPeriod.Status.EXPORTED)
EXTENSIONS = {RegisterExport.Format.XML: "zip", RegisterExport.Format.CSV: "csv", RegisterExport.Format.XLSX: "xlsx"}


class ExportRefused(Exception):
    pass


@transaction.atomic
def register_export_request(*, period: BillingPeriod, organization: MedicalOrganization, file_format: str,
                            requested_by: str) -> RegisterExport:
    """Record the request and queue the build; only a closed period of the organization's region exports."""
    from billing.tasks import build_register_export

    if organization.region_id != period.region_id:
        raise ExportRefused("Организация не относится к региону периода.")
    if period.status not in EXPORTABLE:
        raise ExportRefused("Реестр выгружается только за закрытый период.")
    last = RegisterExport.objects.filter(organization=organization, period=period).aggregate(n=Max("number"))["n"]
    export = RegisterExport.objects.create(
        organization=organization, region_id=organization.region_id, period=period, format=file_format,
        number=(last or 0) + 1, requested_by=requested_by,
    )
    transaction.on_commit(lambda: build_register_export.delay(export.id, organization.id))
    return export


def _header(export: RegisterExport, services) -> RegisterHeader:
    totals = services.aggregate(count=Count("id"), total=Coalesce(Sum("amount"), Decimal("0.00")))
    organization, region = export.organization, export.period.region
    return RegisterHeader(
        organization_oms_code=organization.oms_code, organization_name=organization.name,
        tfoms_code=region.okato_code[:2] or "00", year=export.period.month.year, month=export.period.month.month,
        number=export.number, created=timezone.localdate(), count=totals["count"], total=totals["total"],
    )


def _write(export: RegisterExport, header: RegisterHeader, lines, path: str) -> str:
    """Write the file in its format; returns the name it is offered under."""
    if export.format == RegisterExport.Format.XML:
        write_validated_xml_package(path, header, lines)
        return register_file_names(header)[2]
    stem = register_file_names(header)[0].rsplit(".", 1)[0]
    if export.format == RegisterExport.Format.CSV:
        with open(path, "wb") as out:
            write_csv(out, header, lines)
    else:
        write_xlsx(path, header, lines)
    return f"{stem}.{EXTENSIONS[export.format]}"


def _sha256(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def register_export_build(*, export_id: int, organization_id: int) -> RegisterExport | None:
    """Build, validate, hash and store one requested export. A failure is recorded on the export."""
    with organization_scope(organization_id=organization_id):
        export = RegisterExport.objects.select_related("organization", "period__region").filter(id=export_id).first()
        if export is None or export.status != RegisterExport.Status.PENDING:
            return export  # a rerun of a built export, or one whose request was rolled back
        services = register_services(period=export.period, organization_id=organization_id)
        header = _header(export, services)
        with tempfile.NamedTemporaryFile(suffix=".register") as scratch:
            try:
                export.file_name = _write(export, header, register_lines(services), scratch.name)
            except ValueError as error:  # RegisterInvalid among them: never offered
                logger.exception("register export %s failed", export.id)
                export.status, export.error = RegisterExport.Status.FAILED, str(error)[:500]
            else:
                export.sha256, export.size_bytes = _sha256(scratch.name)
                export.storage_key = (f"billing/registers/{export.period.region.code}/{export.organization.oms_code}"
                                      f"/{export.period.month:%Y-%m}/{export.number}-{export.file_name}")
                with open(scratch.name, "rb") as stored:
                    get_storage().put(export.storage_key, stored, export.size_bytes)
                export.status = RegisterExport.Status.READY
                export.services_count, export.total = header.count, header.total
        export.finished_at = timezone.now()
        export.save()
    if export.status == RegisterExport.Status.READY and export.format == RegisterExport.Format.XML:
        period_mark_exported(period_id=export.period_id)
    return export


def period_mark_exported(*, period_id: int) -> bool:
    """A closed period becomes *exported* once every organization billed in it has its XML register.

    A system step: it counts across the region's organizations, which no single organization may see.
    """
    with dangerously_unscoped():
        period = BillingPeriod.objects.select_for_update().get(id=period_id)
        if period.status != BillingPeriod.Status.CLOSED:
            return False
        # order_by(): the model's ordering by id would make DISTINCT return every row.
        billed = set(BillableService.objects.filter(period=period, status=BillableService.Status.BILLABLE)
                     .order_by().values_list("organization_id", flat=True).distinct())
        exported = set(RegisterExport.objects.filter(period=period, format=RegisterExport.Format.XML,
                                                     status=RegisterExport.Status.READY)
                       .values_list("organization_id", flat=True))
        if not billed <= exported:
            return False
        period.status, period.exported_at = BillingPeriod.Status.EXPORTED, timezone.now()
        period.save(update_fields=["status", "exported_at"])
        return True
