"""Regions and medical organizations: every study, result, bill and statistic belongs to one organization."""

from django.db import models


class Region(models.Model):
    """A subject of the federation, e.g. `RU-MOW` (Moscow)."""

    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)

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
    name = models.CharField(max_length=300)
    oms_code = models.CharField("OMS registry code", max_length=16, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)

    class Meta:
        ordering = ["region__code", "name"]

    def __str__(self) -> str:
        return self.name
