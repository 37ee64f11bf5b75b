"""Technical testing of an AI service before admission (GOST R 59921.2): the operator stores a labelled
reference dataset's studies (STOW, in an organization of theirs), uploads the true labels as CSV, the
service analyses every study, and the report gives AUROC with its 95 % CI, the Youden threshold, the
metrics at the service's operating point, and the ROC curve as PNG.

The test's analyses are kept like a shadow version's: never delivered, put on a worklist or billed.
"""

import csv
import datetime as dt
import io

import numpy as np
from django.db import transaction
from django.utils import timezone

from inference.quality import metrics
from inference.quality.records import TechnicalTest
from inference.records import AIService, Analysis
from medai.archive.models import Study
from tenants.models import MedicalOrganization

LABEL_VALUES = {"1": 1, "0": 0, "true": 1, "false": 0, "да": 1, "нет": 0, "yes": 1, "no": 0}


class TestRefused(ValueError):
    """A dataset or labels file that cannot be tested, with the reason."""


def labels_from_csv(text: str) -> dict[str, int]:
    """`study_instance_uid` and `label` columns (1: the target pathology present, 0: absent), `;` or `,`."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines:
        raise TestRefused("Файл разметки пуст.")
    dialect = csv.Sniffer().sniff(lines[0], delimiters=";,") if ";" in lines[0] or "," in lines[0] else "excel"
    reader = csv.DictReader(io.StringIO("\n".join(lines)), dialect=dialect)
    if not {"study_instance_uid", "label"} <= set(reader.fieldnames or []):
        raise TestRefused("Нужны столбцы study_instance_uid и label.")
    labels = {}
    for number, row in enumerate(reader, start=2):
        uid, label = (row["study_instance_uid"] or "").strip(), (row["label"] or "").strip().lower()
        if not uid or label not in LABEL_VALUES:
            raise TestRefused(f"Строка {number}: нужен UID исследования и метка 1 или 0.")
        if uid in labels:
            raise TestRefused(f"Строка {number}: исследование {uid} размечено дважды.")
        labels[uid] = LABEL_VALUES[label]
    if len(set(labels.values())) < 2:
        raise TestRefused("В наборе нужны исследования и с патологией, и без неё.")
    return labels


@transaction.atomic
def technical_test_start(*, service: AIService, organization: MedicalOrganization, name: str,
                         labels: dict[str, int], created_by: str) -> TechnicalTest:
    """Queue one analysis of every labelled study by the service. Needs the national scope."""
    from inference.scheduling import analyses_dispatch

    studies = list(Study.objects.filter(organization=organization, study_instance_uid__in=labels))
    missing = sorted(set(labels) - {s.study_instance_uid for s in studies})
    if missing:
        raise TestRefused(f"Нет исследований в {organization.oms_code}: {', '.join(missing[:5])}"
                          + (f" и ещё {len(missing) - 5}" if len(missing) > 5 else "") + ".")
    incomplete = [s.study_instance_uid for s in studies if s.status != Study.Status.COMPLETE]
    if incomplete:
        raise TestRefused(f"Исследования ещё принимаются: {', '.join(incomplete[:5])}.")
    test = TechnicalTest.objects.create(service=service, organization=organization, name=name, labels=labels,
                                        created_by=created_by)
    deadline = timezone.now() + dt.timedelta(seconds=service.deadline_seconds)
    for study in studies:
        Analysis.objects.get_or_create(study=study, service=service, defaults={
            "organization_id": study.organization_id, "region_id": study.region_id, "shadow": True,
            "deadline_at": deadline})
    transaction.on_commit(analyses_dispatch)
    return test


def analyses_of_test(test: TechnicalTest):
    return Analysis.objects.filter(service=test.service, study__organization=test.organization,
                                   study__study_instance_uid__in=list(test.labels))


@transaction.atomic
def technical_test_refresh(*, test: TechnicalTest) -> TechnicalTest:
    """Write the report once every analysis of the test has ended; until then the test is running."""
    test = TechnicalTest.objects.select_for_update().get(id=test.id)
    analyses = list(analyses_of_test(test).values_list("study__study_instance_uid", "status", "probability",
                                                    "pathology", "reason_code"))
    if test.status == TechnicalTest.Status.FINISHED or any(row[1] not in Analysis.FINAL for row in analyses):
        return test
    scored = [(test.labels[uid], p, d) for uid, status, p, d, _ in analyses if status == Analysis.Status.SUCCEEDED]
    failures = [{"study_instance_uid": uid, "status": status, "reason_code": code}
                for uid, status, _, _, code in analyses if status != Analysis.Status.SUCCEEDED]
    test.report = _report(test, scored, failures)
    if test.report["auroc"] is not None:
        labels, scores, _ = (np.array(column) for column in zip(*scored, strict=True))
        test.roc_png = metrics.roc_png(labels, scores, title=f"{test.service.name} {test.service.version}: "
                                       f"{test.name}", operating_threshold=test.service.pathology_threshold)
    test.status, test.finished_at = TechnicalTest.Status.FINISHED, timezone.now()
    test.save(update_fields=["report", "roc_png", "status", "finished_at"])
    return test


def _report(test: TechnicalTest, scored: list[tuple], failures: list[dict]) -> dict:
    labels = np.array([s[0] for s in scored], dtype=int)
    scores = np.array([s[1] for s in scored], dtype=float)
    decisions = np.array([bool(s[2]) for s in scored], dtype=int)
    both = len(labels) > 0 and 0 < labels.sum() < len(labels)
    two_each = both and labels.sum() >= 2 and (len(labels) - labels.sum()) >= 2
    point = metrics.operating_point_from_decisions(labels, decisions) if len(labels) else None
    return {
        "studies": len(test.labels), "analysed": len(scored), "not_analysed": failures,
        "positives": int(labels.sum()), "negatives": int(len(labels) - labels.sum()),
        "auroc": metrics.roc_auc(labels, scores) if both else None,
        "auroc_ci95": list(metrics.auc_confidence_interval(labels, scores)) if two_each else None,
        "youden_threshold": metrics.youden_threshold(labels, scores) if both else None,
        "operating_threshold": test.service.pathology_threshold,
        **_at_operating_point(point),
    }


def _at_operating_point(point: metrics.OperatingPoint | None) -> dict:
    if point is None:
        return {}
    positives, negatives = point.tp + point.fn, point.tn + point.fp
    return {
        "tp": point.tp, "fp": point.fp, "tn": point.tn, "fn": point.fn,
        "sensitivity": point.sensitivity, "specificity": point.specificity, "ppv": point.ppv, "npv": point.npv,
        "accuracy": point.accuracy,
        "sensitivity_ci95": list(metrics.wilson_interval(point.tp, positives)) if positives else None,
        "specificity_ci95": list(metrics.wilson_interval(point.tn, negatives)) if negatives else None,
    }
