"""Every endpoint, against every kind of outsider: another organization of the same region, an
organization of another region, and an anonymous caller. Outsiders get 401, 403 or 404, or an
empty list; never a byte of the tenant's data. A new URL must be added here, or this test fails.
"""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from billing.demo import demo_tariffs_load
from billing.exports import register_export_build, register_export_request
from billing.models import BillableService
from billing.services import period_close
from inference.quality.clinical import month_metrics_recompute, review_record, review_sample_draw
from inference.quality.records import QualityAlert, TechnicalTest
from inference.records import AIService
from inference.services import study_route
from medai.accounts.models import Role
from medai.accounts.principal import Principal
from medai.archive.models import Study
from medai.archive.services import ReceiveBatch
from medai.archive.synthetic import make_series
from tests.archive.test_receive_batch import store_all
from tests.billing.conftest import analysis_end, last_month_noon

# Open by design: no tenant data behind them.
# The maturity matrix pages (quality/) show services and national metrics only, to national and regional staff.
# The dashboards (dashboard/) are web-session pages: tests/stats/test_pages.py shows other tenants get 403/404.
# i18n/ only sets the interface language.
PUBLIC = {"healthz", "readyz", "api/schema/", "api/docs/", "", "accounts/", "oidc/", "admin/", "quality/",
          "dashboard/", "i18n/"}


def all_routes(resolver=None, prefix: str = "") -> set[str]:
    routes = set()
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            route = prefix + str(entry.pattern)
            routes |= {route} if route in PUBLIC else all_routes(entry, route)
        elif isinstance(entry, URLPattern):
            routes.add(prefix + str(entry.pattern))
    return routes


@pytest.fixture
def tenant(tenant_factory, use_storage):
    """Organization A with a study, and the paths that reach its data."""
    organization, _ = tenant_factory(region_code="RU-MOW")
    series = make_series(count=2)
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, series)
    ds = series[0]
    study, series_uid, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    service = AIService.objects.create(
        code=f"only-{organization.oms_code}", vendor="V", name="N", version="1", study_kind="chest_ct",
        profile="chest_ct", triton_model="ct_lung_lesions", modalities=["CT"], pathology_threshold=0.5,
    )
    service.enabled_organizations.add(organization)
    demo_tariffs_load()
    # A worklist entry, an analysis, and a charge in last month's period, closed and exported.
    [analysis] = study_route(study_id=Study.objects.get(organization=organization).id)
    analysis_end(analysis, finished_at=last_month_noon())
    # A radiologist's verdict on that result, its month's review sample and metrics, and an alert on them.
    radiologist = Principal(subject="radiologist", roles=frozenset({Role.RADIOLOGIST}),
                            region_id=organization.region_id, organization_id=organization.id)
    review_record(analysis=analysis, principal=radiologist, true_pathology=False)
    review_sample_draw(service=service, month=last_month_noon().date(), share=1.0)
    month_metrics_recompute(month=last_month_noon().date())
    alert = QualityAlert.objects.create(service=service, region=organization.region, month=last_month_noon().date(),
                                        kind=QualityAlert.Kind.DRIFT, message=f"Дрейф сервиса {service.code}")
    # The operator's technical test on the tenant's study (operator only: every tenant role is refused).
    test = TechnicalTest.objects.create(service=service, organization=organization, name="t", labels={study: 0},
                                        created_by="operator")
    charge = BillableService.objects.get(organization=organization)
    period = period_close(period=charge.period, closed_by="finance")
    export = register_export_request(period=period, organization=organization, file_format="csv",
                                     requested_by="f")
    register_export_build(export_id=export.id, organization_id=organization.id)
    instance = f"dicomweb/studies/{study}/series/{series_uid}/instances/{sop}"
    org = organization.id
    region = organization.region_id
    paths = {
        "dicomweb/studies": ("get", "dicomweb/studies"),
        "dicomweb/studies/<uid:study>": ("get", f"dicomweb/studies/{study}"),
        "dicomweb/studies/<uid:study>/metadata": ("get", f"dicomweb/studies/{study}/metadata"),
        "dicomweb/studies/<uid:study>/series": ("get", f"dicomweb/studies/{study}/series"),
        "dicomweb/studies/<uid:study>/instances": ("get", f"dicomweb/studies/{study}/instances"),
        "dicomweb/studies/<uid:study>/series/<uid:series>": ("get", f"dicomweb/studies/{study}/series/{series_uid}"),
        "dicomweb/studies/<uid:study>/series/<uid:series>/metadata":
            ("get", f"dicomweb/studies/{study}/series/{series_uid}/metadata"),
        "dicomweb/studies/<uid:study>/series/<uid:series>/instances":
            ("get", f"dicomweb/studies/{study}/series/{series_uid}/instances"),
        "dicomweb/studies/<uid:study>/series/<uid:series>/instances/<uid:instance>": ("get", instance),
        "dicomweb/studies/<uid:study>/series/<uid:series>/instances/<uid:instance>/metadata":
            ("get", f"{instance}/metadata"),
        "dicomweb/studies/<uid:study>/series/<uid:series>/instances/<uid:instance>/rendered":
            ("get", f"{instance}/rendered"),
        "dicomweb/studies/<uid:study>/series/<uid:series>/instances/<uid:instance>/frames/<str:frames>":
            ("get", f"{instance}/frames/1"),
        "dicomweb/studies/<uid:study>/series/<uid:series>/instances/<uid:instance>/frames/<str:frames>/rendered":
            ("get", f"{instance}/frames/1/rendered"),
        "dicomweb/studies/<uid:study>/series/<uid:series>/instances/<uid:instance>/bulkdata/<str:tag>":
            ("get", f"{instance}/bulkdata/7FE00010"),
        "dicomweb/series": ("get", "dicomweb/series"),
        "dicomweb/instances": ("get", "dicomweb/instances"),
        "api/v1/studies/<str:study_uid>/complete": ("post", f"api/v1/studies/{study}/complete"),
        "api/v1/audit/study-access": ("get", "api/v1/audit/study-access"),
        "api/v1/regions": ("get", "api/v1/regions"),
        "api/v1/regions/<pk>": ("get", f"api/v1/regions/{region}"),
        "api/v1/regions/<pk>/suspend": ("post", f"api/v1/regions/{region}/suspend"),
        "api/v1/regions/<pk>/reactivate": ("post", f"api/v1/regions/{region}/reactivate"),
        "api/v1/organizations": ("get", "api/v1/organizations"),
        "api/v1/organizations/<pk>": ("get", f"api/v1/organizations/{org}"),
        "api/v1/organizations/<pk>/suspend": ("post", f"api/v1/organizations/{org}/suspend"),
        "api/v1/organizations/<pk>/reactivate": ("post", f"api/v1/organizations/{org}/reactivate"),
        "api/v1/organizations/<pk>/activate": ("post", f"api/v1/organizations/{org}/activate"),
        "api/v1/organizations/<pk>/sender-check": ("post", f"api/v1/organizations/{org}/sender-check"),
        "api/v1/organizations/<pk>/users": ("get", f"api/v1/organizations/{org}/users"),
        "api/v1/ai-services": ("get", "api/v1/ai-services"),
        "api/v1/ai-services/<code>": ("get", f"api/v1/ai-services/{service.code}"),
        "api/v1/studies/<str:study_uid>/results": ("get", f"api/v1/studies/{study}/results"),
        "api/v1/worklist": ("get", "api/v1/worklist"),
        "api/v1/worklist/<str:study_uid>/claim": ("post", f"api/v1/worklist/{study}/claim"),
        "api/v1/worklist/<str:study_uid>/complete": ("post", f"api/v1/worklist/{study}/complete"),
        "api/v1/worklist/<str:study_uid>/reopen": ("post", f"api/v1/worklist/{study}/reopen"),
        "api/v1/results/<int:analysis_id>/review": ("get", f"api/v1/results/{analysis.id}/review"),
        "api/v1/quality/review-sample": ("get", "api/v1/quality/review-sample"),
        "api/v1/quality/metrics": ("get", "api/v1/quality/metrics"),
        "api/v1/quality/alerts": ("get", "api/v1/quality/alerts"),
        "api/v1/quality/alerts/<int:alert_id>/acknowledge": ("post", f"api/v1/quality/alerts/{alert.id}/acknowledge"),
        "api/v1/quality/defects": ("get", "api/v1/quality/defects"),
        "api/v1/ai-services/<code>/promote": ("post", f"api/v1/ai-services/{service.code}/promote"),
        "api/v1/ai-services/<code>/recall": ("post", f"api/v1/ai-services/{service.code}/recall"),
        "api/v1/ai-services/<code>/shadow-comparison": ("get", f"api/v1/ai-services/{service.code}/shadow-comparison"),
        "api/v1/technical-tests": ("get", "api/v1/technical-tests"),
        "api/v1/technical-tests/<pk>": ("get", f"api/v1/technical-tests/{test.id}"),
        "api/v1/technical-tests/<pk>/roc.png": ("get", f"api/v1/technical-tests/{test.id}/roc.png"),
        "api/v1/webhook": ("get", "api/v1/webhook"),
        "api/v1/billing/tariffs": ("get", "api/v1/billing/tariffs"),
        "api/v1/billing/tariffs/<pk>": ("get", f"api/v1/billing/tariffs/{charge.tariff_id}"),
        "api/v1/billing/tariffs/import": ("post", "api/v1/billing/tariffs/import"),
        "api/v1/billing/periods": ("get", "api/v1/billing/periods"),
        "api/v1/billing/periods/<pk>": ("get", f"api/v1/billing/periods/{period.id}"),
        "api/v1/billing/periods/<pk>/close": ("post", f"api/v1/billing/periods/{period.id}/close"),
        "api/v1/billing/periods/<pk>/exports": ("get", f"api/v1/billing/periods/{period.id}/exports"),
        "api/v1/billing/exports": ("get", "api/v1/billing/exports"),
        "api/v1/billing/exports/<pk>": ("get", f"api/v1/billing/exports/{export.id}"),
        "api/v1/billing/exports/<pk>/download": ("get", f"api/v1/billing/exports/{export.id}/download"),
        "api/v1/billing/services": ("get", "api/v1/billing/services"),
        "api/v1/billing/services/<int:service_id>/policy":
            ("post", f"api/v1/billing/services/{charge.id}/policy"),
        "api/v1/billing/services/<int:service_id>/reverse":
            ("post", f"api/v1/billing/services/{charge.id}/reverse"),
        "api/v1/billing/totals": ("get", "api/v1/billing/totals?group_by=organization"),
        "api/v1/stats": ("get", f"api/v1/stats?level=organization&organization={organization.oms_code}"),
    }
    return organization, study, paths


def test_every_route_is_covered(tenant):
    _, _, paths = tenant
    routes = {re.sub(r"\(\?P<(\w+)>\[\^/\.\]\+\)", r"<\1>", r).replace("^", "").replace("$", "") for r in all_routes()}
    uncovered = sorted(r for r in routes if r not in paths and r not in PUBLIC and not r.startswith("admin/"))
    assert uncovered == []


def leaked(response, organization, study_uid: str) -> bool:
    if response.status_code in (401, 403, 404):
        return False
    body = response.content.decode(errors="replace")
    return study_uid in body or organization.oms_code in body or organization.name in body


@pytest.mark.parametrize("who", ["same-region", "other-region", "anonymous"])
def test_outsiders_get_nothing(tenant, tenant_factory, api_client_for, who):
    organization, study_uid, paths = tenant
    if who == "anonymous":
        clients = [APIClient()]
    else:
        other, _ = tenant_factory(region_code="RU-MOW" if who == "same-region" else "RU-SPE")
        roles = (Role.ORG_ADMIN, Role.RADIOLOGIST, Role.UPLOADER, Role.FINANCE)
        clients = [api_client_for(role, organization=other) for role in roles]
        if who == "other-region":
            clients += [api_client_for(role, region=other.region) for role in (Role.FINANCE, Role.REGIONAL_ADMIN)]
    for client in clients:
        for route, (method, path) in paths.items():
            response = getattr(client, method)(f"/{path}", {"reason": "x", "study_instance_uid": study_uid},
                                               format="json") if method == "post" else client.get(f"/{path}")
            if who == "anonymous":
                assert response.status_code == 401, route
            assert not leaked(response, organization, study_uid), (route, response.status_code)
    assert Study.objects.get(organization=organization).status == Study.Status.RECEIVING
    assert BillableService.objects.filter(organization=organization).count() == 1  # nothing reversed
