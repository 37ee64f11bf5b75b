"""The tables of AI analysis: the service registry, one analysis per (study, service), the worklist, webhooks.

They live here rather than in `models.py` because `inference/models/` is Triton's model repository;
`inference/models/__init__.py` imports them so that Django finds them.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from medai.archive.models import TenantOwned


class StudyKind(models.TextChoices):
    """The kinds of study the programme pays for (../shared/domain.md); billing keys tariffs on these."""

    CHEST_XRAY = "chest_xray", "Chest radiograph / fluorography"
    MAMMOGRAPHY = "mammography", "Mammography"
    CHEST_CT = "chest_ct", "Chest CT"
    HEAD_CT = "head_ct", "Head CT"


class AIService(models.Model):
    """One AI service (a vendor's model at a version) and the rules that route studies to it."""

    class Stage(models.TextChoices):
        TESTING = "testing"  # runs, results kept for monitoring, not counted on clinically
        CALIBRATION = "calibration"  # admitted on a reviewed sample; thresholds tuned on retrospective data
        CLINICAL = "clinical"  # draft reports for radiologists
        AUTONOMOUS = "autonomous"  # may close confident normals where an organization enabled it

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    code = models.SlugField(max_length=64, unique=True)
    vendor = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=32)
    description = models.TextField(blank=True)
    study_kind = models.CharField(max_length=16, choices=StudyKind.choices)
    profile = models.CharField(
        max_length=32, help_text="inference.profiles: how studies are audited, prepared and read"
    )
    triton_model = models.CharField(max_length=128)
    triton_model_version = models.CharField(max_length=16, blank=True, help_text="Empty: the version Triton serves")
    modalities = ArrayField(models.CharField(max_length=16))
    body_parts = ArrayField(models.CharField(max_length=64), default=list, blank=True, help_text="Empty: any")
    views = ArrayField(models.CharField(max_length=16), default=list, blank=True, help_text="Empty: any")
    sop_classes = ArrayField(models.CharField(max_length=64), default=list, blank=True, help_text="Empty: any image")
    audit_rules = models.JSONField(default=dict, blank=True, help_text="Profile limits, e.g. min_slices")
    outputs = models.JSONField(default=list, blank=True, help_text="What the service returns, for clinics to read")
    pathology_threshold = models.FloatField(help_text="Operating point: probability at or above is pathology")
    autonomous_threshold = models.FloatField(
        null=True, blank=True, help_text="Below it a study is normal without a radiologist (sensitivity 1.0)"
    )
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.TESTING)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=500, blank=True)
    deadline_seconds = models.PositiveIntegerField(default=900)
    shadow_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="shadows",
        help_text="A new version run in shadow beside this one: on the same live studies, its results kept, "
                  "never delivered, until it is promoted",
    )
    enabled_regions = models.ManyToManyField("tenants.Region", blank=True, related_name="+")
    enabled_organizations = models.ManyToManyField("tenants.MedicalOrganization", blank=True, related_name="+")
    autonomous_organizations = models.ManyToManyField(
        "tenants.MedicalOrganization", blank=True, related_name="+",
        help_text="Organizations that let this service close normal studies on its own",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(pathology_threshold__gte=0, pathology_threshold__lte=1), name="threshold_in_0_1"
            ),
            models.CheckConstraint(
                condition=models.Q(autonomous_threshold__isnull=True)
                | models.Q(autonomous_threshold__gte=0, autonomous_threshold__lte=models.F("pathology_threshold")),
                name="autonomous_threshold_below_pathology",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.vendor} {self.name} {self.version}"

    @property
    def profile_rules(self) -> dict:
        """The rules its profile audits and selects images by: what the registry says the service accepts
        (modalities, body parts, views; an empty list keeps the profile's default), then `audit_rules`."""
        accepted = {"modalities": self.modalities, "body_parts": self.body_parts, "views": self.views}
        return {**{key: value for key, value in accepted.items() if value}, **self.audit_rules}


class Analysis(TenantOwned):
    """One study analysed by one service, or one study that no service matched (service empty).

    The row is the lock of exactly-once: a run claims it by bumping `attempt`, and only the run
    holding the current attempt may store a result.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"  # waiting for a share of inference capacity
        DISPATCHED = "dispatched"  # sent to a worker
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # the platform or the model failed; retried first
        NOT_ANALYSABLE = "not_analysable"  # the input audit refused the study
        NOT_ROUTED = "not_routed"  # no enabled service matches the study

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.NOT_ANALYSABLE, Status.NOT_ROUTED)
    IN_FLIGHT = (Status.DISPATCHED, Status.RUNNING)

    study = models.ForeignKey("archive.Study", on_delete=models.CASCADE, related_name="analyses")
    service = models.ForeignKey(AIService, null=True, blank=True, on_delete=models.PROTECT, related_name="analyses")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=500, blank=True, help_text="Why it failed or was refused, in Russian")
    reason_code = models.CharField(max_length=64, blank=True)
    urgent = models.BooleanField(default=False, help_text="The study's clinical priority is STAT or HIGH")
    attempt = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    probability = models.FloatField(null=True, blank=True)
    pathology = models.BooleanField(null=True, blank=True)
    ai_urgent = models.BooleanField(default=False, help_text="The model found something urgent")
    category = models.CharField(max_length=32, blank=True)
    outcome = models.JSONField(default=dict, blank=True)
    autonomous = models.BooleanField(default=False, help_text="Closed as normal by AI, without a radiologist")
    model_version = models.CharField(max_length=32, blank=True)
    sr_sop_instance_uid = models.CharField(max_length=64, blank=True)
    sc_series_instance_uid = models.CharField(max_length=64, blank=True)
    originals_verified = models.BooleanField(null=True, blank=True, help_text="Source sha256 unchanged after the run")
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    late = models.BooleanField(default=False)
    shadow = models.BooleanField(default=False, help_text="Of a service in shadow: kept, never delivered or billed")
    superseded_at = models.DateTimeField(null=True, blank=True, help_text="Withdrawn by a recall of its model version")
    superseded_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "service"], name="one_analysis_per_study_and_service"),
            models.UniqueConstraint(
                fields=["study"], condition=models.Q(service__isnull=True), name="one_not_routed_per_study"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "urgent", "created_at"]),
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["service", "-created_at"]),
            models.Index(fields=["service", "finished_at"]),  # monitoring's month scans
            models.Index(fields=["finished_at"]),  # the statistics' recount of a range of days
        ]

    def __str__(self) -> str:
        return f"analysis {self.id} ({self.status})"


class WorklistEntry(TenantOwned):
    """A study waiting for (or taken by) a radiologist; AI results decide its place in the queue."""

    class Status(models.TextChoices):
        AWAITING_AI = "awaiting_ai"
        READY = "ready"  # AI done (or failed): a radiologist should report
        CLAIMED = "claimed"
        REPORTED = "reported"
        CLOSED_BY_AI = "closed_by_ai"  # autonomous normal, off the worklist

    OPEN = (Status.AWAITING_AI, Status.READY, Status.CLAIMED)

    study = models.OneToOneField("archive.Study", on_delete=models.CASCADE, related_name="worklist_entry")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AWAITING_AI)
    urgent = models.BooleanField(default=False, help_text="Clinical priority STAT/HIGH, or AI found something urgent")
    ai_flagged = models.BooleanField(default=False, help_text="Some service found pathology")
    ai_probability = models.FloatField(null=True, blank=True, help_text="The highest probability of pathology")
    claimed_by = models.CharField(max_length=150, blank=True, help_text="Subject of the radiologist")
    claimed_at = models.DateTimeField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["organization", "status", "-urgent", "-ai_flagged", "-ai_probability", "created_at"],
                name="worklist_order",
            )
        ]

    def __str__(self) -> str:
        return f"worklist {self.study_id} ({self.status})"


class WebhookEndpoint(TenantOwned):
    """Where an organization's RIS wants to hear that a result is ready; requests are HMAC-SHA256 signed."""

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization"], name="one_webhook_per_organization")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(TenantOwned):
    """One notification about one analysis, retried with backoff until the RIS answers 2xx."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after the last retry

    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["analysis", "event"], name="one_delivery_per_event")]

    def __str__(self) -> str:
        return f"{self.event} of analysis {self.analysis_id}"
