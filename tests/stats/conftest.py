"""Fixtures of statistics: clinics in two regions with the reference services and demo tariffs.

Imports of Django code stay inside the fixtures: pytest loads this file before Django is set up."""

import datetime as dt
import random

import pytest

from tests.billing.conftest import storage_backend  # noqa: F401 - S3 only, as for billing

WINDOW = "date_from=2026-03-01&date_to=2026-03-31"


@pytest.fixture
def clinics(tenant_factory, reference_services):
    """Two clinics in Moscow and one in Saint Petersburg, all with the reference services and tariffs."""
    from billing.demo import demo_tariffs_load

    organizations = [tenant_factory(region_code=code)[0] for code in ("RU-MOW", "RU-MOW", "RU-SPE")]
    reference_services()
    demo_tariffs_load()
    return organizations


@pytest.fixture
def nation(tenant_factory, reference_services):
    """Three Moscow clinics, one in Saint Petersburg, one in Kazan; a month of random daily counts over
    every modality and service (Kazan: two studies), rolled up to the 20th, so pages read sums and
    organization rows alike."""
    from inference.records import AIService
    from medai.stats.models import DailyCount
    from medai.stats.rollups import rollups_advance

    reference_services()
    services = {modality: service for service in AIService.objects.all() for modality in service.modalities}
    organizations = [tenant_factory(region_code=code)[0] for code in ("RU-MOW", "RU-MOW", "RU-MOW", "RU-SPE",
                                                                      "RU-TA")]
    rng = random.Random(7)
    rows = []
    for organization, size in zip(organizations, (40, 25, 9, 30), strict=False):
        for day in range(1, 32):
            for modality in ("DX", "CT", "MG"):
                service = services.get(modality)
                received = rng.randint(0, size)
                analysed = rng.randint(0, received)
                values = {"studies_received": received, "analysed": analysed, "flagged": rng.randint(0, analysed),
                          "autonomous": rng.randint(0, analysed // 2), "defects": rng.randint(0, 1),
                          "reviews": rng.randint(0, 2), "disagreements": rng.randint(0, 1),
                          "billed_kopecks": analysed * 15000, f"processing_time:{rng.randint(4, 12):02d}": analysed}
                rows += [DailyCount(organization=organization, region_id=organization.region_id,
                                    day=dt.date(2026, 3, day), modality=modality,
                                    service=None if stat == "studies_received" else service, stat=stat, value=value)
                         for stat, value in values.items() if value]
    kazan = organizations[-1]  # two chest radiographs in the month: a small cell above the organization
    rows += [DailyCount(organization=kazan, region_id=kazan.region_id, day=dt.date(2026, 3, 5), modality="DX",
                        service=service, stat=stat, value=2)
             for stat, service in (("studies_received", None), ("analysed", services["DX"]))]
    DailyCount.objects.bulk_create(rows)
    rollups_advance(through=dt.date(2026, 3, 20))
    return organizations
