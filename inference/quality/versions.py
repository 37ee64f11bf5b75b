"""Versions of an AI service: a new one runs in shadow on live studies, is compared with the current one
on the same studies, and is promoted; a bad model version is recalled from every tenant.

A shadow service (`AIService.shadow_of`) gets an analysis of every study its current version gets
(`inference.services.study_route`), with the spare inference capacity; its results are kept and checked,
never stored in the clinic's study, put on a worklist, sent to a RIS or billed.
"""

import logging
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone

from inference.quality import metrics
from inference.records import AIService, Analysis, WorklistEntry
from inference.services import worklist_refresh
from inference.signals import analysis_recalled
from inference.webhooks import webhook_enqueue

logger = logging.getLogger(__name__)

RECALL_EVENT = "analysis.recalled"
RECALL_BATCH = 500


class VersionConflict(Exception):
    """A promotion or recall the rules refuse."""


@dataclass(frozen=True)
class ShadowComparison:
    """The current and the shadow version on the same studies (both succeeded)."""

    studies: int
    decisions_agree: float | None  # share of studies with the same binary decision
    mean_probability_difference: float | None  # shadow minus current
    reviewed: int  # of those, with a radiologist's verdict on the current version's result
    current_auroc: float | None
    shadow_auroc: float | None
    current_sensitivity: float | None
    shadow_sensitivity: float | None
    current_specificity: float | None
    shadow_specificity: float | None


def shadow_comparison(*, shadow: AIService) -> ShadowComparison:
    """Compare a shadow version with the version it shadows. Needs the national scope."""
    if shadow.shadow_of_id is None:
        raise VersionConflict("Сервис не работает в теневом режиме.")
    pairs = list(
        Analysis.objects.filter(service=shadow, shadow=True, status=Analysis.Status.SUCCEEDED)
        .filter(study__analyses__service_id=shadow.shadow_of_id, study__analyses__status=Analysis.Status.SUCCEEDED,
                study__analyses__superseded_at__isnull=True)
        .values_list("probability", "pathology", "study__analyses__probability", "study__analyses__pathology",
                     "study__analyses__review__true_pathology")
    )
    if not pairs:
        return ShadowComparison(0, None, None, 0, *([None] * 6))
    new_p, new_d, old_p, old_d, truth = (np.array(column, dtype=object) for column in zip(*pairs, strict=True))
    reviewed = np.array([t is not None for t in truth])
    return ShadowComparison(
        studies=len(pairs), decisions_agree=float(np.mean(new_d == old_d)),
        mean_probability_difference=float(np.mean(new_p.astype(float) - old_p.astype(float))),
        reviewed=int(reviewed.sum()), **_reviewed_metrics(truth[reviewed], old_p[reviewed], old_d[reviewed],
                                                          new_p[reviewed], new_d[reviewed]),
    )


def _reviewed_metrics(truth, old_p, old_d, new_p, new_d) -> dict:
    labels = truth.astype(int)
    both_classes = len(labels) and 0 < labels.sum() < len(labels)
    result = {}
    for prefix, scores, decisions in (("current", old_p, old_d), ("shadow", new_p, new_d)):
        point = metrics.operating_point_from_decisions(labels, decisions.astype(int)) if len(labels) else None
        result[f"{prefix}_auroc"] = metrics.roc_auc(labels, scores.astype(float)) if both_classes else None
        result[f"{prefix}_sensitivity"] = point.sensitivity if point else None
        result[f"{prefix}_specificity"] = point.specificity if point else None
    return result


@transaction.atomic
def service_promote(*, shadow: AIService, reason: str) -> AIService:
    """The shadow version takes over: it is enabled where the current one was, and the current one is
    suspended with the reason. Needs the national scope."""
    shadow = AIService.objects.select_for_update().get(id=shadow.id)
    if shadow.shadow_of_id is None:
        raise VersionConflict("Сервис не работает в теневом режиме.")
    current = AIService.objects.select_for_update().get(id=shadow.shadow_of_id)
    shadow.enabled_regions.set(current.enabled_regions.all())
    shadow.enabled_organizations.set(current.enabled_organizations.all())
    shadow.autonomous_organizations.set(current.autonomous_organizations.all())
    shadow.shadow_of = None
    shadow.status, shadow.status_reason = AIService.Status.ACTIVE, ""
    shadow.save(update_fields=["shadow_of", "status", "status_reason", "updated_at"])
    current.shadows.exclude(id=shadow.id).update(shadow_of=shadow)  # other candidates now shadow the new one
    current.status = AIService.Status.SUSPENDED
    current.status_reason = f"Заменён версией {shadow.version} ({shadow.code}). {reason}".strip()[:500]
    current.save(update_fields=["status", "status_reason", "updated_at"])
    logger.info("service %s promoted over %s", shadow.code, current.code)
    return shadow


def recalled_analyses(*, service: AIService, model_version: str = ""):
    """The delivered results of a service (of one model version, or all) not yet withdrawn."""
    found = Analysis.objects.filter(service=service, shadow=False, superseded_at__isnull=True,
                                    status=Analysis.Status.SUCCEEDED)
    return found.filter(model_version=model_version) if model_version else found


def recall_organizations(*, service: AIService, model_version: str = "") -> list[int]:
    """Which organizations hold results to withdraw. Needs the national scope."""
    return sorted(set(recalled_analyses(service=service, model_version=model_version)
                      .values_list("organization_id", flat=True)))


def organization_results_withdraw(*, service: AIService, model_version: str, reason: str) -> int:
    """Withdraw one organization's results of the recalled version, inside its scope: each is marked
    superseded, its study goes back to a radiologist if AI had closed it, its clinic is told through its
    webhook, and billing reverses its charge (`analysis_recalled`). Returns how many."""
    withdrawn = 0
    while batch := list(recalled_analyses(service=service, model_version=model_version)
                        .select_for_update(of=("self",)).select_related("study").order_by("id")[:RECALL_BATCH]):
        now = timezone.now()
        for analysis in batch:
            analysis.superseded_at, analysis.superseded_reason = now, reason[:500]
            analysis.save(update_fields=["superseded_at", "superseded_reason"])
            _reopen(analysis)
            webhook_enqueue(analysis=analysis, event=RECALL_EVENT, payload=_recall_event(analysis, reason))
            analysis_recalled.send(sender=Analysis, analysis=analysis, reason=reason)
        withdrawn += len(batch)
    return withdrawn


def _reopen(analysis: Analysis) -> None:
    """A study AI closed as normal goes back on the worklist, to be read by a radiologist."""
    WorklistEntry.objects.filter(study_id=analysis.study_id, status=WorklistEntry.Status.CLOSED_BY_AI).update(
        status=WorklistEntry.Status.READY, reported_at=None)
    worklist_refresh(study_id=analysis.study_id)


def _recall_event(analysis: Analysis, reason: str) -> dict:
    study_uid = analysis.study.study_instance_uid
    return {"analysis_id": analysis.id, "study_instance_uid": study_uid, "service": analysis.service.code,
            "model_version": analysis.model_version, "status": "superseded", "reason": reason,
            "results": f"/api/v1/studies/{study_uid}/results"}
