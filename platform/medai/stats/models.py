"""The daily counts behind every statistic, at the organization level.

One row per organization x day x modality x AI service x stat, never a zero row (Zulip's `RealmCount`
in spirit). Region and national figures are SQL `GROUP BY`s over this one table, read through its
(region, day) and (day) indexes: a day of the whole nation is a few thousand small rows, so a separate
region or national table would only add a second truth to keep equal. Processing time is kept as a
histogram: stats `processing_time:00`..`processing_time:39` count results by log-spaced buckets, so
p50 and p95 add up correctly across organizations (a mean of means would not).
"""

from django.db import models

from medai.archive.models import TenantOwned


class DailyCount(TenantOwned):
    day = models.DateField(help_text="The day of the event, in the region's time zone")
    modality = models.CharField(max_length=16, blank=True, help_text="The study's first modality; empty if none")
    service = models.ForeignKey("inference.AIService", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    stat = models.CharField(max_length=32)
    value = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "day", "stat", "modality", "service"],
                                    name="one_count_per_cell", nulls_distinct=False),
        ]
        indexes = [models.Index(fields=["region", "day"]), models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.stat} = {self.value}"
