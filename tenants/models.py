"""Regions and medical organizations: every study, result, bill and statistic belongs to one organization."""

from django.core.validators import RegexValidator
from django.db import models


class Region(models.Model):
    """A subject of the federation, e.g. `RU-MOW` (Moscow)."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    code = models.CharField(max_length=16, unique=True, help_text="ISO 3166-2, e.g. RU-MOW")
    okato_code = models.CharField("OKATO code", max_length=11, blank=True)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="Europe/Moscow")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class MedicalOrganization(models.Model):
    class Status(models.TextChoices):
        ONBOARDING = "onboarding"
        ACTIVE = "active"
        SUSPENDED = "suspended"

    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="organizations")
    name = models.CharField("full name", max_length=300)
    short_name = models.CharField(max_length=120, blank=True)
    oms_code = models.CharField(
        "OMS registry code", max_length=16, unique=True,
        validators=[RegexValidator(r"^\d{6}$", "Код МО в реестре ОМС — 6 цифр.")],
        help_text="The six-digit code of the organization in the OMS registry (CODE_MO of the registers)",
    )
    ogrn = models.CharField("OGRN", max_length=15, blank=True)
    address = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ONBOARDING)
    status_reason = models.CharField(max_length=500, blank=True, help_text="Why it was suspended or activated by hand")
    pacs_client_id = models.CharField(max_length=100, blank=True, help_text="Keycloak client of its PACS uploads")
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["region__code", "name"]

    def __str__(self) -> str:
        return self.name


class SenderCheck(models.Model):
    """The report on an onboarding organization's test study: what its PACS sends right, and what not."""

    organization = models.ForeignKey(MedicalOrganization, on_delete=models.CASCADE, related_name="sender_checks")
    study_instance_uid = models.CharField(max_length=64)
    passed = models.BooleanField()
    report = models.JSONField(help_text="One entry per requirement: requirement, passed, detail")
    checked_by = models.CharField(max_length=150)
    checked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-checked_at"]


class StatusChange(models.Model):
    """Append-only history of onboarding, activation (checked or overridden), suspension and re-activation."""

    organization = models.ForeignKey(MedicalOrganization, null=True, on_delete=models.CASCADE, related_name="+")
    region = models.ForeignKey(Region, null=True, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.CharField(max_length=150)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at"]
