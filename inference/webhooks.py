"""Webhooks: telling an organization's RIS that something happened to one of its analyses.

An organization registers one endpoint (URL and shared secret). Each event about an analysis is one
`WebhookDelivery` row, made once per (analysis, event) and sent by the `inference.deliver_webhook`
task after the caller's transaction commits, so a receiver is never told about a result that was
rolled back.

The request is signed the way Stripe signs: HMAC-SHA256 over `"{timestamp}." + body` with the
endpoint's secret, sent as `X-MedAI-Signature: sha256=<hex>` with the timestamp in
`X-MedAI-Timestamp`. Signing the timestamp with the body lets a receiver refuse an old request
replayed by someone who captured it. The body is the payload as compact JSON with sorted keys,
exactly the bytes signed. Delivery is at least once: a worker that dies mid-POST re-runs the task,
so receivers de-duplicate on `X-MedAI-Delivery`.

Outcomes of one attempt:
- 2xx: delivered.
- 4xx other than 408, 425 and 429: failed at once. The receiver refused this very request, and the
  retry would send the same bytes; the cause (a wrong URL, a refused signature) needs a person.
- anything else (other status, 3xx as redirects are not followed, timeout, connection error):
  retried after WEBHOOK_RETRY_BACKOFF_SECONDS, doubling each time, until WEBHOOK_MAX_ATTEMPTS.

`last_error` and the logs carry the status code or the kind of network error only: never the URL
(it may hold a token), the secret, the payload or the receiver's answer (either may hold patient data).
"""

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

import urllib3
from celery import shared_task
from django.conf import settings
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.records import Analysis, WebhookDelivery, WebhookEndpoint
from tenants.models import MedicalOrganization
from tenants.scope import organization_scope

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-MedAI-Signature"
TIMESTAMP_HEADER = "X-MedAI-Timestamp"
EVENT_HEADER = "X-MedAI-Event"
DELIVERY_HEADER = "X-MedAI-Delivery"

# 4xx answers that say "not now" rather than "never": these are retried like a 5xx.
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})

validate_webhook_url = URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")


# --- Signing -------------------------------------------------------------------------------------


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 (hex) of `"{timestamp}." + body`: the timestamp is signed so a replay can be refused."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_body(payload: dict) -> bytes:
    """The one serialisation of a payload: compact and key-sorted, so the bytes signed are the bytes sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


# --- Endpoints -----------------------------------------------------------------------------------


def webhook_endpoint_get(*, organization: MedicalOrganization) -> WebhookEndpoint | None:
    """The organization's endpoint, or None when it has none or removed it (a removed one is inactive)."""
    return WebhookEndpoint.objects.filter(organization=organization, active=True).first()


@transaction.atomic
def webhook_endpoint_set(*, organization: MedicalOrganization, url: str, secret: str | None = None) -> WebhookEndpoint:
    """Create or replace the organization's endpoint; without a secret a new random one is made.

    The row is updated in place, so deliveries still being retried go to the new URL with the new
    secret. Runs in a scope that sees the organization (its request, or `organization_scope`).
    """
    validate_webhook_url(url)
    secret = secret or secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint.objects.select_for_update().filter(organization=organization).first()
    if endpoint is None:
        try:
            with transaction.atomic():
                return WebhookEndpoint.objects.create(
                    organization=organization, region_id=organization.region_id, url=url, secret=secret
                )
        except IntegrityError:  # another request created it meanwhile: replace that one
            endpoint = WebhookEndpoint.objects.select_for_update().get(organization=organization)
    if not endpoint.active:  # set again after a removal: from the caller's view a new endpoint
        endpoint.created_at = timezone.now()
    endpoint.url, endpoint.secret, endpoint.active = url, secret, True
    endpoint.save(update_fields=["url", "secret", "active", "created_at"])
    return endpoint


@transaction.atomic
def webhook_endpoint_remove(*, organization: MedicalOrganization) -> bool:
    """Stop sending to the organization; True if it had an endpoint.

    The row is deactivated and its secret erased rather than deleted, because deleting it would
    cascade to its deliveries, the record of what the RIS was told. Pending deliveries then fail.
    """
    return bool(
        WebhookEndpoint.objects.filter(organization=organization, active=True).update(active=False, secret="")
    )


# --- Deliveries ----------------------------------------------------------------------------------


def webhook_enqueue(*, analysis: Analysis, event: str, payload: dict) -> WebhookDelivery | None:
    """Record a notification about an analysis and send it after commit; None when nobody listens.

    Once per (analysis, event): a second call returns the first delivery and sends nothing, so
    callers re-run by Celery may call it freely. Must run inside the organization's scope (a
    transaction): outside one, row-level security would hide the endpoint and nothing would be sent.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("webhook_enqueue runs inside the organization's scope (organization_scope)")
    endpoint = WebhookEndpoint.objects.filter(organization_id=analysis.organization_id, active=True).first()
    if endpoint is None:
        return None
    existing = WebhookDelivery.objects.filter(analysis=analysis, event=event).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                organization_id=analysis.organization_id, region_id=analysis.region_id, analysis=analysis,
                endpoint=endpoint, event=event, payload=payload,
            )
    except IntegrityError:  # a concurrent call made it first; that one sends
        return WebhookDelivery.objects.get(analysis=analysis, event=event)
    organization_id = analysis.organization_id
    # robust: a broker outage must not fail the caller's (already committed) work; the row stays pending.
    transaction.on_commit(lambda: deliver_webhook.delay(delivery.id, organization_id), robust=True)
    return delivery


@dataclass(frozen=True)
class _Attempt:
    status_code: int | None
    error: str  # empty when delivered

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def permanent(self) -> bool:
        code = self.status_code
        return code is not None and 400 <= code < 500 and code not in RETRYABLE_CLIENT_ERRORS


def _post(delivery: WebhookDelivery) -> _Attempt:
    """One signed POST; never raises for the receiver's faults, and never puts its answer in the error."""
    body = webhook_body(delivery.payload)
    timestamp = int(time.time())
    signature = webhook_signature(secret=delivery.endpoint.secret, timestamp=timestamp, body=body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "MedAI-Webhooks/1",
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"sha256={signature}",
    }
    seconds = settings.WEBHOOK_TIMEOUT_SECONDS
    # A pool per attempt: deliveries are rare, and the unread answer is simply closed with it.
    with urllib3.PoolManager() as http:
        try:
            response = http.request(
                "POST", delivery.endpoint.url, body=body, headers=headers, preload_content=False,
                timeout=urllib3.Timeout(connect=seconds, read=seconds), retries=False, redirect=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # before TimeoutError: urllib3 makes it a subclass
            return _Attempt(None, f"connection failed ({type(exc).__name__})")
        except urllib3.exceptions.TimeoutError:
            return _Attempt(None, f"timeout after {seconds:g} s")
        except urllib3.exceptions.HTTPError as exc:
            return _Attempt(None, f"connection failed ({type(exc).__name__})")
        status_code = response.status
        response.close()
    return _Attempt(status_code, "" if 200 <= status_code < 300 else f"HTTP {status_code}")


def _record(delivery: WebhookDelivery, attempt: _Attempt) -> float | None:
    """Store the attempt's outcome on the (locked) row; the seconds until the next try, or None when done."""
    delivery.attempts += 1
    delivery.last_status_code = attempt.status_code
    delivery.last_error = attempt.error[:500]
    retry_in = None
    if attempt.delivered:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
    elif attempt.permanent or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        delivery.status = WebhookDelivery.Status.FAILED
    else:
        retry_in = settings.WEBHOOK_RETRY_BACKOFF_SECONDS * 2 ** (delivery.attempts - 1)
    delivery.save(update_fields=["attempts", "last_status_code", "last_error", "status", "delivered_at"])
    log = logger.info if attempt.delivered else logger.warning
    log(
        "webhook delivery %s (%s) of organization %s, attempt %s/%s: %s%s",
        delivery.id, delivery.event, delivery.organization_id, delivery.attempts, settings.WEBHOOK_MAX_ATTEMPTS,
        attempt.error or "delivered", f", retry in {retry_in:g} s" if retry_in is not None else "",
    )
    return retry_in


@shared_task(name="inference.deliver_webhook", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, delivery_id: int, organization_id: int) -> None:
    """Try one delivery once; on a retryable failure schedule the next try with backoff.

    The row stays locked during the POST (bounded by WEBHOOK_TIMEOUT_SECONDS), so two runs of the same
    delivery never send at once and the second sees the first's outcome. The outcome is committed
    before `self.retry` raises, so attempts count even though the task "fails". Attempts are counted
    in the row, not by Celery (max_retries=None), so a re-queued message cannot exceed the limit.
    """
    with organization_scope(organization_id=organization_id):
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",)).select_related("endpoint")
            .filter(id=delivery_id).first()
        )
        if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
            return  # done already, or not this organization's: nothing to send
        if not delivery.endpoint.active:
            delivery.status, delivery.last_error = WebhookDelivery.Status.FAILED, "endpoint removed"
            delivery.save(update_fields=["status", "last_error"])
            return
        retry_in = _record(delivery, _post(delivery))
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
