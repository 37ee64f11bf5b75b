"""The command-line onboarding does what the API does."""

import io

import pytest
from django.core.management import CommandError, call_command

from tenants.models import MedicalOrganization, Region


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_onboard_region_then_organization_prints_credentials_once(transactional_db):
    assert "region RU-TAT" in run("onboard-region", "RU-TAT", "Республика Татарстан", "--okato", "92000000000")
    output = run("onboard-organization", "RU-TAT", "160001", "ГАУЗ РКБ", "--ogrn", "1021602830370")
    organization = MedicalOrganization.objects.get(oms_code="160001")
    assert organization.status == "onboarding" and organization.region == Region.objects.get(code="RU-TAT")
    assert "PACS API token (shown once):" in output
    with pytest.raises(CommandError, match="exists"):
        run("onboard-organization", "RU-TAT", "160001", "duplicate")
    with pytest.raises(CommandError, match="no region"):
        run("onboard-organization", "RU-XXX", "160002", "nowhere")
