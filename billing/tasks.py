"""Celery tasks of billing. Each takes ids, is safe to re-run, and leaves the work to `billing.exports`."""

from celery import shared_task

from billing.exports import register_export_build
from medai.archive.storage import StorageUnavailable


@shared_task(name="billing.build_register_export", acks_late=True, ignore_result=True,
             autoretry_for=(StorageUnavailable,), retry_backoff=5, max_retries=10)
def build_register_export(export_id: int, organization_id: int) -> None:
    register_export_build(export_id=export_id, organization_id=organization_id)
