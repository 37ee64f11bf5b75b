"""OMS billing: tariffs of the territorial programmes, the ledger of billable services, periods, exports.

The ledger is append-only (in the spirit of Zulip's `LicenseLedger`): a billed service is never edited
or deleted, a correction is a reversal entry. The one update the database allows is the release of a
service held for missing data (no OMS policy number, no tariff in force) once the data arrives; the
triggers in migration 0002 refuse everything else, and any write into a period that is no longer open.
"""

from django.db import models
from django.db.models import Q

from inference.records import StudyKind
from medai.archive.models import TenantOwned


class Tariff(models.Model):
    """The price of one AI analysis of a kind of study in a region, for a span of days (both ends included).

    Spans of one region and kind never overlap (a trigger refuses it, without btree_gist); an old tariff
    is ended, not edited, so the history of prices stays readable.
    """

    region = models.ForeignKey("tenants.Region", on_delete=models.PROTECT, related_name="tariffs")
    study_kind = models.CharField(max_length=32, choices=StudyKind.choices)
    service_code = models.CharField(max_length=20, help_text="Code of the service in the territorial programme")
    name = models.CharField(max_length=300)
    price = models.DecimalField(max_digits=10, decimal_places=2, help_text="Roubles per study")
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Last day in force; empty: until further notice")
    diagnosis_code = models.CharField(max_length=10, blank=True, help_text="DS1 of the register (ICD-10)")
    care_profile = models.CharField(max_length=3, blank=True, help_text="PROFIL of the register (V002)")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["region__code", "study_kind", "valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="tariff_price_positive"),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=models.F("valid_from")),
                name="tariff_span_ordered",
            ),
        ]
        indexes = [models.Index(fields=["region", "study_kind", "valid_from"])]

    def __str__(self) -> str:
        return f"{self.region.code} {self.study_kind} {self.price} ₽ from {self.valid_from}"


class TariffRevision(models.Model):
    """Who created or changed a tariff, and what it said afterwards."""

    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="revisions")
    action = models.CharField(max_length=16)  # created, changed, imported
    data = models.JSONField()
    changed_by = models.CharField(max_length=150)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tariff", "changed_at", "id"]


class BillingPeriod(models.Model):
    """A region's calendar month of billing. Periods only move forward: open, closed, exported."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"
        EXPORTED = "exported"

    region = models.ForeignKey("tenants.Region", on_delete=models.PROTECT, related_name="billing_periods")
    month = models.DateField(help_text="The first day of the month")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    closed_by = models.CharField(max_length=150, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    exported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["region__code", "month"]
        constraints = [
            models.UniqueConstraint(fields=["region", "month"], name="billing_period_per_region_month"),
            models.CheckConstraint(condition=Q(month__day=1), name="billing_period_first_day"),
        ]

    def __str__(self) -> str:
        return f"{self.region.code} {self.month:%Y-%m} {self.status}"


class BillableService(TenantOwned):
    """One line of the ledger: a charge for an analysed study, or the reversal of one."""

    class Kind(models.TextChoices):
        CHARGE = "charge"
        REVERSAL = "reversal"

    class Status(models.TextChoices):
        BILLABLE = "billable"
        NEEDS_DATA = "needs_data"  # held until the data arrives
        VOID = "void"  # held, and then withdrawn (its analysis recalled): never billed

    class Hold(models.TextChoices):
        NO_POLICY = "no_policy", "No OMS policy number"
        NO_TARIFF = "no_tariff", "No tariff in force on the date of service"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHARGE)
    status = models.CharField(max_length=16, choices=Status.choices)
    hold = models.CharField(max_length=16, choices=Hold.choices, blank=True)
    analysis = models.ForeignKey("inference.Analysis", on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey("archive.Study", on_delete=models.PROTECT, related_name="+")
    study_kind = models.CharField(max_length=32, choices=StudyKind.choices)
    service_date = models.DateField(help_text="The day the analysis was made, in the region's time zone")
    policy_number = models.CharField(max_length=16, blank=True)
    tariff = models.ForeignKey(Tariff, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    period = models.ForeignKey(BillingPeriod, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Whatever retries happen, a study is charged once per kind of study.
            models.UniqueConstraint(
                fields=["study", "study_kind"], condition=Q(kind="charge"), name="one_charge_per_study_kind"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["needs_data", "void"], period__isnull=True, amount__isnull=True) & ~Q(hold="")
                | Q(status="billable", hold="", period__isnull=False, amount__isnull=False, tariff__isnull=False),
                name="billable_service_complete_or_held",
            ),
            models.CheckConstraint(
                condition=Q(kind="charge", reverses__isnull=True, amount__gt=0)
                | Q(kind="charge", amount__isnull=True)
                | Q(kind="reversal", reverses__isnull=False, amount__lt=0),
                name="billable_service_sign",
            ),
        ]
        indexes = [
            models.Index(fields=["period", "organization"]),
            models.Index(fields=["organization", "status"]),
            models.Index(fields=["region", "status", "hold"]),
            models.Index(fields=["released_at"]),  # the statistics' recount of a range of days
        ]


class RegisterExport(TenantOwned):
    """One exported register of an organization for a closed period, kept so it downloads byte-identical."""

    class Format(models.TextChoices):
        XML = "xml", "FFOMS XML (zip)"
        CSV = "csv"
        XLSX = "xlsx"

    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="exports")
    format = models.CharField(max_length=8, choices=Format.choices)
    number = models.PositiveIntegerField(help_text="Sequence of this organization's exports of the period")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=500, blank=True)
    file_name = models.CharField(max_length=100, blank=True)
    storage_key = models.CharField(max_length=300, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    services_count = models.PositiveIntegerField(null=True, blank=True)
    total = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "period", "number"], name="register_export_number"),
        ]
