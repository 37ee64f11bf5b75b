"""The index of stored DICOM objects. The objects themselves live in object storage under `storage_key`.

UIDs are unique per organization, not globally: two clinics may (wrongly, but really) reuse a UID,
and one must never see or overwrite the other's study.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class TenantOwned(models.Model):
    """Every tenant-owned row names its organization and region, so scoping needs no join."""

    organization = models.ForeignKey("tenants.MedicalOrganization", on_delete=models.PROTECT, related_name="+")
    region = models.ForeignKey("tenants.Region", on_delete=models.PROTECT, related_name="+")

    class Meta:
        abstract = True


class Study(TenantOwned):
    class Status(models.TextChoices):
        RECEIVING = "receiving"
        COMPLETE = "complete"

    study_instance_uid = models.CharField(max_length=64)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_birth_date = models.CharField(max_length=8, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    study_date = models.DateField(null=True, blank=True)
    study_time = models.CharField(max_length=16, blank=True)
    study_description = models.CharField(max_length=64, blank=True)
    referring_physician_name = models.CharField(max_length=324, blank=True)
    modalities = ArrayField(models.CharField(max_length=16), default=list, blank=True)
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVING)
    received_at = models.DateTimeField(auto_now_add=True)
    last_received_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "study_instance_uid"], name="study_uid_per_org")
        ]
        indexes = [
            models.Index(fields=["study_instance_uid"]),
            models.Index(fields=["organization", "-study_date", "-id"]),
            models.Index(fields=["region", "-study_date", "-id"]),
            models.Index(fields=["-study_date", "-id"]),
            models.Index(fields=["patient_id"]),
            models.Index(fields=["accession_number"]),
            models.Index(fields=["completed_at"]),  # the statistics' recount of a range of days
            models.Index(fields=["status", "last_received_at"]),
        ]

    def __str__(self) -> str:
        return self.study_instance_uid


class Series(TenantOwned):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=64, blank=True)
    body_part_examined = models.CharField(max_length=64, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "series_instance_uid"], name="series_uid_per_org")
        ]
        indexes = [models.Index(fields=["series_instance_uid"]), models.Index(fields=["modality"])]

    def __str__(self) -> str:
        return self.series_instance_uid


class Instance(TenantOwned):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="instances")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=512, unique=True)
    # The data set as DICOM JSON without bulk data: serves /metadata and includefield from the index.
    metadata = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "sop_instance_uid"], name="instance_uid_per_org")
        ]
        indexes = [models.Index(fields=["sop_instance_uid"]), models.Index(fields=["sop_class_uid"])]

    def __str__(self) -> str:
        return self.sop_instance_uid


class StudyAccess(TenantOwned):
    """Append-only log of every read of patient data: who read which study, through which endpoint."""

    study_instance_uid = models.CharField(max_length=64)
    subject = models.CharField(max_length=150)
    role = models.CharField(max_length=32)
    endpoint = models.CharField(max_length=64)
    path = models.CharField(max_length=1024)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-at"]), models.Index(fields=["study_instance_uid"])]
