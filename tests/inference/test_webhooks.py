"""Webhooks against a real HTTP receiver and a real Celery worker: signing, retries, once-only, isolation, API."""

import hashlib
import hmac
import json
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.urls import path
from django.utils import timezone
from rest_framework.test import APIClient

from inference.api.webhooks import WebhookEndpointView
from inference.records import AIService, Analysis, WebhookDelivery, WebhookEndpoint
from inference.webhooks import (
    deliver_webhook,
    webhook_endpoint_remove,
    webhook_endpoint_set,
    webhook_enqueue,
    webhook_signature,
)
from medai.accounts.models import Role
from medai.archive.models import Study
from medai.celery_app import app
from medai.runtime.services import free_port
from tenants.scope import dangerously_unscoped, organization_scope
from tenants.services import organization_ensure, region_ensure

# The view is mounted here until the lead wires /api/v1/webhook (tests use `pytest.mark.urls(__name__)`).
urlpatterns = [path("api/v1/webhook", WebhookEndpointView.as_view())]

SECRET = "s3cret-for-tests-0123456789abcdef"
PAYLOAD = {"analysis_id": 0, "status": "succeeded", "probability": 0.91, "заключение": "норма"}


@pytest.fixture
def worker(transactional_db, settings):
    """A real Celery worker on the test broker; small timings so retries take a moment."""
    settings.WEBHOOK_RETRY_BACKOFF_SECONDS = 0.01
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


_counter = iter(range(1, 10_000))


def make_analysis(region_code: str = "RU-MOW") -> Analysis:
    """A minimal organization, study, service and analysis, written past row-level security."""
    n = next(_counter)
    with dangerously_unscoped():
        region = region_ensure(code=region_code, name=region_code)
        oms_code = f"{sum(map(ord, region_code)) % 90 + 10}9{n:03d}"
        organization = organization_ensure(region=region, oms_code=oms_code, name=f"Clinic {n}")
        study = Study.objects.create(organization=organization, region=region, study_instance_uid=f"1.2.826.0.{n}",
                                     last_received_at=timezone.now())
        service, _ = AIService.objects.get_or_create(
            code="cxr-test", defaults={"vendor": "Test", "name": "CXR", "version": "1", "study_kind": "chest_xray",
                                       "profile": "chest_xray", "triton_model": "cxr", "modalities": ["DX"],
                                       "pathology_threshold": 0.5},
        )
        return Analysis.objects.create(organization=organization, region=region, study=study, service=service,
                                       status=Analysis.Status.SUCCEEDED)


def set_endpoint(analysis: Analysis, url: str, secret: str | None = SECRET) -> WebhookEndpoint:
    with organization_scope(organization_id=analysis.organization_id):
        return webhook_endpoint_set(organization=analysis.organization, url=url, secret=secret)


def enqueue(analysis: Analysis, event: str = "analysis.finished", payload: dict | None = None):
    with organization_scope(organization_id=analysis.organization_id):
        return webhook_enqueue(analysis=analysis, event=event,
                               payload=payload or dict(PAYLOAD, analysis_id=analysis.id))


def delivery_of(delivery_id: int) -> WebhookDelivery:
    with dangerously_unscoped():
        return WebhookDelivery.objects.get(id=delivery_id)


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def settled(delivery_id: int) -> bool:
    return delivery_of(delivery_id).status != WebhookDelivery.Status.PENDING


# --- Signing and sending -------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature(secret="k", timestamp=1_700_000_000, body=body) == expected
    assert webhook_signature(secret="k", timestamp=1_700_000_001, body=body) != expected


def test_receiver_gets_the_payload_signed_with_its_secret(worker, receiver):
    analysis = make_analysis()
    set_endpoint(analysis, receiver.url)
    delivery = enqueue(analysis)
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert wait_for(lambda: settled(delivery.id))
    delivery = delivery_of(delivery.id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.last_error == ""
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hooks/medai"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-MedAI-Event"] == "analysis.finished"
    assert headers["X-MedAI-Delivery"] == str(delivery.id)
    timestamp = int(headers["X-MedAI-Timestamp"])
    assert abs(time.time() - timestamp) < 60
    # What a receiver does: recompute over "<timestamp>." + the raw body, compare in constant time.
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-MedAI-Signature"], f"sha256={expected}")
    assert json.loads(body) == dict(PAYLOAD, analysis_id=analysis.id)
    assert body == json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    assert SECRET not in str(headers)


# --- Retries ---------------------------------------------------------------------------------------


def test_retries_until_the_receiver_answers(worker, receiver):
    receiver.fail_first = 2
    analysis = make_analysis()
    set_endpoint(analysis, receiver.url)
    delivery = enqueue(analysis)
    assert wait_for(lambda: settled(delivery.id))
    delivery = delivery_of(delivery.id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert receiver.count() == 3
    ids = {r["headers"]["X-MedAI-Delivery"] for r in receiver.requests}
    assert ids == {str(delivery.id)}  # the same delivery each time, so the receiver can de-duplicate


def test_gives_up_after_the_last_attempt(worker, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    receiver.always_fail = True
    analysis = make_analysis()
    set_endpoint(analysis, receiver.url)
    delivery = enqueue(analysis)
    assert wait_for(lambda: settled(delivery.id))
    delivery = delivery_of(delivery.id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 500)
    assert delivery.last_error == "HTTP 500" and delivery.delivered_at is None
    time.sleep(0.5)
    assert receiver.count() == 3


def test_a_hanging_receiver_times_out_and_is_retried(worker, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.hang_first = 1
    analysis = make_analysis()
    set_endpoint(analysis, receiver.url)
    delivery = enqueue(analysis)
    assert wait_for(lambda: settled(delivery.id))
    delivery = delivery_of(delivery.id)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert receiver.count() == 2


def test_an_unreachable_receiver_fails_without_leaking_the_url_or_secret(worker, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    analysis = make_analysis()
    url = f"http://127.0.0.1:{free_port()}/hook?token=url-token-value"  # nothing listens there
    set_endpoint(analysis, url)
    delivery = enqueue(analysis)
    assert wait_for(lambda: settled(delivery.id))
    delivery = delivery_of(delivery.id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 2, None)
    assert delivery.last_error.startswith("connection failed")
    for secret in ("url-token-value", "127.0.0.1", SECRET, "норма"):
        assert secret not in delivery.last_error


def test_a_refusal_is_final_but_too_many_requests_is_retried(worker, receiver):
    receiver.always_fail, receiver.fail_status = True, 400
    refused = make_analysis()
    set_endpoint(refused, receiver.url)
    delivery = enqueue(refused)
    assert wait_for(lambda: settled(delivery.id))
    assert (delivery_of(delivery.id).status, delivery_of(delivery.id).attempts) == ("failed", 1)
    assert receiver.count() == 1

    receiver.always_fail, receiver.fail_status, receiver.fail_first = False, 429, 2
    receiver.requests.clear()
    throttled = make_analysis()
    set_endpoint(throttled, receiver.url)
    delivery = enqueue(throttled)
    assert wait_for(lambda: settled(delivery.id))
    assert (delivery_of(delivery.id).status, delivery_of(delivery.id).attempts) == ("delivered", 3)


# --- Once only -----------------------------------------------------------------------------------


def test_enqueue_twice_makes_one_delivery_and_one_post(worker, receiver):
    analysis = make_analysis()
    set_endpoint(analysis, receiver.url)
    first = enqueue(analysis)
    second = enqueue(analysis, payload={"something": "else"})
    assert first.id == second.id
    assert wait_for(lambda: settled(first.id))
    time.sleep(0.5)
    assert receiver.count() == 1
    with dangerously_unscoped():
        assert WebhookDelivery.objects.filter(analysis=analysis).count() == 1
    assert enqueue(analysis).id == first.id  # after delivery too
    time.sleep(0.3)
    assert receiver.count() == 1
    other_event = enqueue(analysis, event="analysis.reported")
    assert other_event.id != first.id


def test_delivered_row_is_not_sent_again_when_the_task_reruns(worker, receiver):
    analysis = make_analysis()
    set_endpoint(analysis, receiver.url)
    delivery = enqueue(analysis)
    assert wait_for(lambda: settled(delivery.id))
    deliver_webhook.apply(args=(delivery.id, analysis.organization_id))  # as a redelivered message would
    assert receiver.count() == 1


def test_no_endpoint_or_a_removed_one_sends_nothing(transactional_db, receiver):
    analysis = make_analysis()
    assert enqueue(analysis) is None
    set_endpoint(analysis, receiver.url)
    with organization_scope(organization_id=analysis.organization_id):
        assert webhook_endpoint_remove(organization=analysis.organization) is True
    assert enqueue(analysis) is None
    with pytest.raises(RuntimeError):
        webhook_enqueue(analysis=analysis, event="x", payload={})  # outside any scope


# --- Tenant isolation ----------------------------------------------------------------------------


def test_another_organization_cannot_see_or_send_a_delivery(transactional_db, receiver):
    analysis = make_analysis()
    other = make_analysis(region_code="RU-SPE")
    set_endpoint(analysis, receiver.url)
    with organization_scope(organization_id=analysis.organization_id):
        delivery = webhook_enqueue(analysis=analysis, event="analysis.finished", payload={"id": analysis.id})
        # No worker runs in this test, so the message scheduled on commit waits on the broker.
    with organization_scope(organization_id=other.organization_id):
        assert not WebhookDelivery.objects.filter(id=delivery.id).exists()
        assert not WebhookEndpoint.objects.filter(organization_id=analysis.organization_id).exists()
        assert WebhookDelivery.objects.count() == 0
    deliver_webhook.apply(args=(delivery.id, other.organization_id))  # a forged task for the wrong tenant
    assert receiver.count() == 0
    assert delivery_of(delivery.id).status == WebhookDelivery.Status.PENDING
    with organization_scope(organization_id=analysis.organization_id):
        assert WebhookDelivery.objects.filter(id=delivery.id).exists()
    deliver_webhook.apply(args=(delivery.id, analysis.organization_id))
    assert receiver.count() == 1 and delivery_of(delivery.id).status == WebhookDelivery.Status.DELIVERED


# --- API -----------------------------------------------------------------------------------------

api = pytest.mark.urls(__name__)
URL = "/api/v1/webhook"


@api
def test_org_admin_sets_reads_replaces_and_removes_the_endpoint(api_client_for):
    analysis = make_analysis()
    admin = api_client_for(Role.ORG_ADMIN, organization=analysis.organization)
    assert admin.get(URL).status_code == 404
    created = admin.put(URL, {"url": "https://ris.example.org/hooks"}, format="json")
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert len(secret) >= 40 and created.json()["url"] == "https://ris.example.org/hooks"
    shown = admin.get(URL)
    assert shown.status_code == 200
    assert set(shown.json()) == {"url", "active", "created_at"} and secret not in shown.content.decode()
    replaced = admin.put(URL, {"url": "http://10.0.0.5:8080/medai", "secret": SECRET}, format="json")
    assert replaced.status_code == 200 and replaced.json()["secret"] == SECRET
    with dangerously_unscoped():
        [endpoint] = WebhookEndpoint.objects.filter(organization=analysis.organization)
    assert (endpoint.url, endpoint.secret) == ("http://10.0.0.5:8080/medai", SECRET)
    assert admin.delete(URL).status_code == 204
    assert admin.get(URL).status_code == 404
    assert admin.put(URL, {"url": "https://ris.example.org/again"}, format="json").status_code == 201


@api
@pytest.mark.parametrize("body", [{"url": "ftp://ris.example.org/x"}, {"url": "javascript:alert(1)"},
                                  {"url": "not a url"}, {}, {"url": "https://ris.example.org", "secret": "short"}])
def test_bad_requests_are_refused(api_client_for, body):
    analysis = make_analysis()
    admin = api_client_for(Role.ORG_ADMIN, organization=analysis.organization)
    response = admin.put(URL, body, format="json")
    assert response.status_code == 400
    with dangerously_unscoped():
        assert not WebhookEndpoint.objects.exists()


@api
@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.UPLOADER, Role.FINANCE])
def test_other_roles_of_the_organization_are_refused(api_client_for, role):
    analysis = make_analysis()
    set_endpoint(analysis, "https://ris.example.org/hooks")
    client = api_client_for(role, organization=analysis.organization)
    assert client.get(URL).status_code == 403
    assert client.put(URL, {"url": "https://evil.example.org"}, format="json").status_code == 403
    assert client.delete(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401


@api
def test_admins_without_an_organization_get_a_clear_refusal(api_client_for):
    analysis = make_analysis()
    set_endpoint(analysis, "https://ris.example.org/hooks")
    regional = api_client_for(Role.REGIONAL_ADMIN, region=analysis.region)
    assert regional.get(URL).status_code == 403
    orgless = api_client_for(Role.ORG_ADMIN, region=analysis.region)
    refused = orgless.get(URL)
    assert refused.status_code == 403 and "organization" in refused.json()["detail"]
    operator = api_client_for(Role.PLATFORM_ADMIN)
    assert operator.get(URL).status_code == 400
    shown = operator.get(URL, {"organization": analysis.organization_id})
    assert shown.status_code == 200 and shown.json()["url"] == "https://ris.example.org/hooks"
    assert operator.get(URL, {"organization": 987654}).status_code == 404


@api
def test_another_organizations_admin_sees_only_its_own(api_client_for):
    mine, theirs = make_analysis(), make_analysis(region_code="RU-SPE")
    set_endpoint(mine, "https://ris.mine.example.org/hooks")
    admin = api_client_for(Role.ORG_ADMIN, organization=theirs.organization)
    response = admin.get(URL)
    assert response.status_code == 404 and "mine" not in response.content.decode()
    assert admin.get(URL, {"organization": mine.organization_id}).status_code == 404
    assert admin.delete(URL, QUERY_STRING=f"organization={mine.organization_id}").status_code == 404
    assert admin.put(URL, {"url": "https://ris.theirs.example.org/hooks"}, format="json").status_code == 201
    with dangerously_unscoped():
        endpoints = dict(WebhookEndpoint.objects.values_list("organization_id", "url"))
    assert endpoints == {mine.organization_id: "https://ris.mine.example.org/hooks",
                         theirs.organization_id: "https://ris.theirs.example.org/hooks"}
