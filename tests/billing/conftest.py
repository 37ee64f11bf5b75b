"""Fixtures of billing: a region with its tariffs and clinics, and studies whose analyses end as a worker
would end them (through `inference.services.analysis_finish`, which bills).

Imports of Django code stay inside the fixtures and helpers: pytest loads this file before Django is
set up when it is named on the command line."""

import datetime as dt

import pytest

from tests.inference.conftest import storage_backend  # noqa: F401 - S3 only, as for AI analysis

POLICY = "7700000000000017"


def radiograph(*, policy: str | None = POLICY):
    """A small frontal chest radiograph of a named patient, with the OMS policy number if given."""
    from pydicom.dataset import Dataset

    from inference.phantoms import chest_radiograph

    dataset = chest_radiograph(size=64)[0]
    dataset.PatientName = "Иванова^Мария^Петровна"
    dataset.PatientSex = "F"
    dataset.PatientBirthDate = "19700315"
    if "OtherPatientIDsSequence" in dataset:
        del dataset.OtherPatientIDsSequence
    if policy:
        item = Dataset()
        item.PatientID = policy
        item.IssuerOfPatientID = "ENP"
        dataset.OtherPatientIDsSequence = [item]
    return dataset


def analysis_end(analysis, *, status: str = "succeeded", **result):
    """End an analysis as the pipeline does: under its row lock, through `analysis_finish` (which bills).
    `finished_at` in `result` dates the result (a result that came in yesterday)."""
    from django.db import transaction

    from inference.records import Analysis
    from inference.services import analysis_finish

    outcome = {"probability": 0.2, "pathology": False, "originals_verified": True,
               "sr_sop_instance_uid": f"2.25.{analysis.id}1", "sc_series_instance_uid": f"2.25.{analysis.id}2"}
    if status != "succeeded":
        outcome = {}
    with transaction.atomic():
        locked = Analysis.objects.select_for_update().get(id=analysis.id)
        return analysis_finish(analysis=locked, status=status, **{**outcome, **result})


@pytest.fixture
def clinic(tenant_factory, reference_services):
    """A clinic in Moscow whose region has the demo tariffs, with the reference services enabled."""
    from billing.demo import demo_tariffs_load

    organization, _ = tenant_factory(region_code="RU-MOW")
    organization.region.okato_code = "45000000000"  # Moscow's: its territorial fund is 45 in register names
    organization.region.save(update_fields=["okato_code"])
    reference_services()
    demo_tariffs_load()
    return organization


@pytest.fixture
def analysed(archived_study):
    """Store a study of `organization`, route it, and end its analysis; returns the analysis."""
    from inference.services import study_route

    def analyse(organization, dataset=None, *, status: str = "succeeded", **result):
        study = archived_study(organization, [dataset if dataset is not None else radiograph()])
        [analysis] = study_route(study_id=study.id)
        return analysis_end(analysis, status=status, **result)

    return analyse


def moscow_today() -> dt.date:
    """Services are dated in their region's time zone; the test clinics are in Moscow."""
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    return timezone.localdate(timezone=ZoneInfo("Europe/Moscow"))


def last_month_noon() -> dt.datetime:
    return dt.datetime.combine(moscow_today().replace(day=1) - dt.timedelta(days=3), dt.time(9), tzinfo=dt.UTC)
