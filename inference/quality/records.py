"""Quality monitoring of AI services: defects found in results (technological monitoring), radiologists'
reviews of results and the sample drawn for review (clinical monitoring), and alerts to the operator.

Django finds these models through `inference/models/__init__.py`, like the rest of the app's.
"""

from django.db import models
from django.db.models import Q

from medai.archive.models import TenantOwned


class Severity(models.TextChoices):
    """Critical: a fundamental defect of ../shared/domain.md (wrong area, markings outside the organ, a
    changed original, a missing SR or SC): the result is not billed. Major: the result is usable but
    breaks a requirement (late, no draft text). Minor: a blemish."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"


class Defect(TenantOwned):
    """One requirement an AI result broke, found by the technological monitoring of that result."""

    analysis = models.ForeignKey("inference.Analysis", on_delete=models.CASCADE, related_name="defects")
    service = models.ForeignKey("inference.AIService", on_delete=models.PROTECT, related_name="+")
    requirement = models.CharField(max_length=32, help_text="Code of the check that found it, e.g. sc_missing")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    detail = models.CharField(max_length=500)
    found_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["analysis", "requirement"]
        constraints = [models.UniqueConstraint(fields=["analysis", "requirement"], name="one_defect_per_requirement")]
        indexes = [models.Index(fields=["service", "found_at"]), models.Index(fields=["region", "found_at"])]


class QualityAlert(models.Model):
    """What the operator is told: a defect rate past its threshold, a streak of critical defects that
    suspended a service, a drift. One per service, region (or the nation), month and kind."""

    class Kind(models.TextChoices):
        DEFECT_RATE = "defect_rate"
        CRITICAL_STREAK = "critical_streak"
        DRIFT = "drift"

    service = models.ForeignKey("inference.AIService", on_delete=models.PROTECT, related_name="alerts")
    region = models.ForeignKey("tenants.Region", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    month = models.DateField(help_text="First day of the month the alert is about")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.CharField(max_length=1000)
    value = models.FloatField(null=True, blank=True, help_text="The rate or statistic that raised it")
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "region", "month", "kind"], name="one_alert_per_cell",
                                    nulls_distinct=False),
        ]


class Review(TenantOwned):
    """A radiologist's verdict on one AI result: the ground truth of clinical monitoring."""

    class Significance(models.TextChoices):
        NONE = "none", "No discrepancy"
        MINOR = "minor", "Discrepancy without clinical significance"
        SIGNIFICANT = "significant", "Clinically significant discrepancy"

    analysis = models.OneToOneField("inference.Analysis", on_delete=models.PROTECT, related_name="review")
    service = models.ForeignKey("inference.AIService", on_delete=models.PROTECT, related_name="+")
    reviewer = models.CharField(max_length=150)
    agrees = models.BooleanField(help_text="The radiologist agrees with the AI's binary decision")
    true_pathology = models.BooleanField(help_text="The target pathology is present, by the radiologist")
    localisation_correct = models.BooleanField(null=True, blank=True)
    significance = models.CharField(max_length=16, choices=Significance.choices, default=Significance.NONE)
    comment = models.CharField(max_length=1000, blank=True)
    reviewed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-reviewed_at", "-id"]
        indexes = [models.Index(fields=["service", "reviewed_at"])]
        constraints = [
            models.CheckConstraint(condition=~Q(agrees=True, significance="significant"),
                                   name="review_agreement_has_no_discrepancy"),
        ]


class ReviewSample(TenantOwned):
    """The results of a service and month drawn for review: a random share, every disagreement, every
    autonomous normal a radiologist reopened."""

    class Reason(models.TextChoices):
        RANDOM = "random"
        DISAGREEMENT = "disagreement"
        REOPENED = "reopened"

    analysis = models.OneToOneField("inference.Analysis", on_delete=models.CASCADE, related_name="review_sample")
    service = models.ForeignKey("inference.AIService", on_delete=models.PROTECT, related_name="+")
    month = models.DateField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    drawn_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["month", "service", "id"]
        indexes = [models.Index(fields=["service", "month"])]


class ServiceMonthMetrics(models.Model):
    """Clinical monitoring of one service in one month, in one region or (region empty) the nation:
    recomputed from the results and their reviews (`inference.quality.clinical`), never edited."""

    service = models.ForeignKey("inference.AIService", on_delete=models.CASCADE, related_name="month_metrics")
    region = models.ForeignKey("tenants.Region", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    month = models.DateField()
    results = models.PositiveIntegerField(help_text="Succeeded results in the month")
    positives = models.PositiveIntegerField(help_text="Results the service called pathological")
    reviewed = models.PositiveIntegerField()
    reviewed_positive = models.PositiveIntegerField(help_text="Reviewed results with the pathology present")
    auroc = models.FloatField(null=True, blank=True)
    auroc_ci_low = models.FloatField(null=True, blank=True)
    auroc_ci_high = models.FloatField(null=True, blank=True)
    sensitivity = models.FloatField(null=True, blank=True)
    specificity = models.FloatField(null=True, blank=True)
    ppv = models.FloatField(null=True, blank=True)
    npv = models.FloatField(null=True, blank=True)
    accuracy = models.FloatField(null=True, blank=True)
    localisation_accuracy = models.FloatField(null=True, blank=True)
    positive_rate_drift = models.BooleanField(default=False)
    score_drift = models.BooleanField(default=False)
    score_psi = models.FloatField(null=True, blank=True)
    histogram = models.JSONField(default=dict, help_text="Scores of reviewed results by true label (ScoreHistogram)")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "month", "region"]
        constraints = [
            models.UniqueConstraint(fields=["service", "region", "month"], name="one_metrics_row_per_cell",
                                    nulls_distinct=False),
        ]


class TechnicalTest(models.Model):
    """Technical testing of a service before admission (GOST R 59921.2): a labelled reference dataset (studies
    stored by the operator in an organization of theirs, and the true label of each) run through the
    service, and the report with its metrics and ROC curve."""

    class Status(models.TextChoices):
        RUNNING = "running"
        FINISHED = "finished"

    service = models.ForeignKey("inference.AIService", on_delete=models.PROTECT, related_name="technical_tests")
    organization = models.ForeignKey("tenants.MedicalOrganization", on_delete=models.PROTECT, related_name="+",
                                     help_text="Where the dataset's studies were stored")
    name = models.CharField(max_length=200)
    labels = models.JSONField(help_text="Study Instance UID -> 1 (target pathology present) or 0")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    report = models.JSONField(default=dict, blank=True)
    roc_png = models.BinaryField(blank=True, default=b"")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
