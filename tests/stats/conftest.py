"""Fixtures of statistics: clinics in two regions with the reference services and demo tariffs.

Imports of Django code stay inside the fixtures: pytest loads this file before Django is set up."""

import pytest

from tests.billing.conftest import storage_backend  # noqa: F401 - S3 only, as for billing


@pytest.fixture
def clinics(tenant_factory, reference_services):
    """Two clinics in Moscow and one in Saint Petersburg, all with the reference services and tariffs."""
    from billing.demo import demo_tariffs_load

    organizations = [tenant_factory(region_code=code)[0] for code in ("RU-MOW", "RU-MOW", "RU-SPE")]
    reference_services()
    demo_tariffs_load()
    return organizations
