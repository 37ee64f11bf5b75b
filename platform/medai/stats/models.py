"""The daily counts behind every statistic: per organization, rolled up to region and nation.

`DailyCount` is the truth: one row per organization x day x modality x AI service x stat, never a zero
row (Zulip's `RealmCount` in spirit), written live by the events it counts. Processing time is kept as a
histogram: stats `processing_time:00`..`processing_time:39` count results by log-spaced buckets, so p50
and p95 add up correctly across organizations (a mean of means would not).

`RegionDailyCount` and `NationalDailyCount` are its sums (Zulip's `InstallationCount`), so a national
page reads thousands of rows, not millions. They hold the days up to `RollupState.rolled_up_through`,
which the nightly task moves to yesterday (UTC; over in every region, all east of UTC);
readers add the organization rows of the days after it. A write to an organization row of a rolled-up
day (a late event, a rebuild) is carried into the sums by a trigger (migration 0003), so the three
levels always agree.
"""

from django.db import models

from medai.archive.models import TenantOwned


class CountCell(models.Model):
    """The key and value of a count, whatever the level."""

    day = models.DateField(help_text="The day of the event, in the region's time zone")
    modality = models.CharField(max_length=16, blank=True, help_text="The study's first modality; empty if none")
    service = models.ForeignKey("inference.AIService", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    stat = models.CharField(max_length=32)
    value = models.BigIntegerField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.day} {self.stat} = {self.value}"


class DailyCount(TenantOwned, CountCell):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "day", "stat", "modality", "service"],
                                    name="one_count_per_cell", nulls_distinct=False),
        ]
        indexes = [models.Index(fields=["region", "day"]), models.Index(fields=["day"])]


class RegionDailyCount(CountCell):
    region = models.ForeignKey("tenants.Region", on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["region", "day", "stat", "modality", "service"],
                                    name="one_region_count_per_cell", nulls_distinct=False),
        ]
        indexes = [models.Index(fields=["day"])]


class NationalDailyCount(CountCell):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "stat", "modality", "service"],
                                    name="one_national_count_per_cell", nulls_distinct=False),
        ]


class RollupState(models.Model):
    """One row: the last day whose counts the region and national tables hold (None: no day yet)."""

    rolled_up_through = models.DateField(null=True, blank=True)
