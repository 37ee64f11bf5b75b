"""Writes to the archive: storing received instances, and completing studies.

A STOW request is one `ReceiveBatch`: each instance's object is written to storage before its index
row, all rows commit together at the end, and if anything fails before that commit the objects
written by the batch are deleted again, so the index and the store hold only what was acknowledged.
Objects orphaned by a crash between the two are removed by `storage_sweep_orphans`.
"""

import datetime as dt
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import BinaryIO

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, OuterRef, Subquery
from django.utils import timezone
from pydicom import Dataset

from medai.archive.models import Instance, Series, Study
from medai.archive.storage import ObjectStorage, StorageUnavailable, get_storage
from tenants.models import MedicalOrganization

logger = logging.getLogger(__name__)


class DuplicateConflict(Exception):
    """The SOP Instance UID is already stored with other content (STOW failure 0x0111)."""


class ConcurrentUpload(Exception):
    """Another request stored some of the same instances meanwhile; nothing of this batch was kept."""


FLUSH_EVERY = 200


@dataclass
class _Counts:
    instances: int = 0
    size_bytes: int = 0
    modalities: set[str] = field(default_factory=set)


# Instances live under this prefix; other apps keep their objects elsewhere (billing/...), out of the
# orphan sweeper's way.
INSTANCE_KEY_PREFIX = "org-"


def storage_key(*, organization_id: int, study_uid: str, series_uid: str, sop_uid: str, sha256: str) -> str:
    """Unique per write: two requests racing with the same instance never share an object, so the one
    undone can delete its own without touching the one acknowledged."""
    unique = f"{sha256[:16]}.{secrets.token_hex(4)}"
    return f"{INSTANCE_KEY_PREFIX}{organization_id}/{study_uid}/{series_uid}/{sop_uid}.{unique}.dcm"


class ReceiveBatch:
    """Store and index the instances of one STOW request, all or nothing."""

    def __init__(self, *, organization: MedicalOrganization, storage: ObjectStorage | None = None) -> None:
        self.organization = organization
        self.storage = storage or get_storage()
        self.written_keys: list[str] = []
        self._studies: dict[str, Study] = {}
        self._series: dict[str, Series] = {}
        self._study_counts: dict[int, _Counts] = defaultdict(_Counts)
        self._series_counts: dict[int, int] = defaultdict(int)
        self._pending: list[Instance] = []
        self._pending_sha256: dict[str, str] = {}

    def __enter__(self) -> "ReceiveBatch":
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._insert_pending()
                self._apply_counts()
        except BaseException as flush_error:
            self._atomic.__exit__(type(flush_error), flush_error, flush_error.__traceback__)
            self._discard_written()
            raise
        try:
            self._atomic.__exit__(exc_type, exc, tb)
        except BaseException:
            self._discard_written()
            raise
        if exc_type is not None:
            self._discard_written()
        return False

    def store(
        self, *, dataset: Dataset, fileobj: BinaryIO, size: int, sha256: str, metadata: dict
    ) -> bool:
        """Store one instance; True if new, False if the identical instance was already stored.

        Raises DuplicateConflict for the same UID with other content, StorageUnavailable if the
        object could not be written (the caller aborts the batch). Index rows are inserted in bulk
        (every FLUSH_EVERY instances and at the end): one round trip per instance is the lookup.
        """
        sop_uid = str(dataset.SOPInstanceUID)
        known = self._pending_sha256.get(sop_uid)
        if known is None:
            found = Instance.objects.filter(organization=self.organization, sop_instance_uid=sop_uid)
            known = next(iter(found.values_list("sha256", flat=True)[:1]), None)
        if known is not None:
            if known != sha256:
                raise DuplicateConflict(sop_uid)
            return False
        study = self._study_for(dataset)
        series = self._series_for(dataset, study)
        key = storage_key(
            organization_id=self.organization.id,
            study_uid=study.study_instance_uid,
            series_uid=series.series_instance_uid,
            sop_uid=sop_uid,
            sha256=sha256,
        )
        fileobj.seek(0)
        self.storage.put(key, fileobj, size)
        self.written_keys.append(key)
        self._pending.append(
            Instance(
                organization=self.organization,
                region_id=self.organization.region_id,
                study=study,
                series=series,
                sop_instance_uid=sop_uid,
                sop_class_uid=str(dataset.SOPClassUID),
                transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
                instance_number=_int_or_none(dataset.get("InstanceNumber")),
                rows=_int_or_none(dataset.get("Rows")),
                columns=_int_or_none(dataset.get("Columns")),
                number_of_frames=_int_or_none(dataset.get("NumberOfFrames")) or 1,
                size_bytes=size,
                sha256=sha256,
                storage_key=key,
                metadata=metadata,
            )
        )
        self._pending_sha256[sop_uid] = sha256
        counts = self._study_counts[study.id]
        counts.instances += 1
        counts.size_bytes += size
        if series.modality:
            counts.modalities.add(series.modality)
        self._series_counts[series.id] += 1
        if len(self._pending) >= FLUSH_EVERY:
            self._insert_pending()
        return True

    def _insert_pending(self) -> None:
        """One INSERT for the instances received since the last. A unique violation means another
        request is storing the same instances at this moment: the whole batch is undone and the sender
        told to retry, when the duplicate check will settle it."""
        if not self._pending:
            return
        try:
            Instance.objects.bulk_create(self._pending)
        except IntegrityError as exc:
            raise ConcurrentUpload() from exc
        self._pending.clear()

    def _study_for(self, dataset: Dataset) -> Study:
        uid = str(dataset.StudyInstanceUID)
        if uid not in self._studies:
            self._studies[uid], _ = Study.objects.get_or_create(
                organization=self.organization,
                study_instance_uid=uid,
                defaults={**study_attributes(dataset), "region_id": self.organization.region_id,
                          "last_received_at": timezone.now()},
            )
        return self._studies[uid]

    def _series_for(self, dataset: Dataset, study: Study) -> Series:
        uid = str(dataset.SeriesInstanceUID)
        if uid not in self._series:
            self._series[uid], _ = Series.objects.get_or_create(
                organization=self.organization,
                series_instance_uid=uid,
                defaults={
                    "study": study,
                    "region_id": self.organization.region_id,
                    "modality": str(dataset.get("Modality", "")),
                    "series_number": _int_or_none(dataset.get("SeriesNumber")),
                    "series_description": str(dataset.get("SeriesDescription", ""))[:64],
                    "body_part_examined": str(dataset.get("BodyPartExamined", ""))[:64],
                },
            )
        return self._series[uid]

    def _apply_counts(self) -> None:
        """Update the study and series counters once, at the end: row locks are held only until commit."""
        now = timezone.now()
        for series_id, added in self._series_counts.items():
            Series.objects.filter(id=series_id).update(number_of_instances=F("number_of_instances") + added)
        for study_id, counts in self._study_counts.items():
            Study.objects.filter(id=study_id).update(
                number_of_instances=F("number_of_instances") + counts.instances,
                size_bytes=F("size_bytes") + counts.size_bytes,
                last_received_at=now,
                number_of_series=Subquery(
                    Series.objects.filter(study_id=OuterRef("id")).values("study_id").annotate(n=Count("id")).values("n")
                ),
            )
            if counts.modalities:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE archive_study SET modalities = ARRAY(SELECT DISTINCT m FROM"
                        " unnest(modalities || %s::varchar[]) AS m ORDER BY m) WHERE id = %s",
                        [sorted(counts.modalities), study_id],
                    )

    def _discard_written(self) -> None:
        for key in self.written_keys:
            try:
                self.storage.delete(key)
            except StorageUnavailable:
                logger.warning("could not delete unacknowledged object %s; the orphan sweeper will", key)
        self.written_keys.clear()


def study_attributes(dataset: Dataset) -> dict:
    """The study-level attributes QIDO matches on, taken from the first instance received."""
    return {
        "patient_id": str(dataset.get("PatientID", ""))[:64],
        "patient_name": str(dataset.get("PatientName", ""))[:324],
        "patient_birth_date": str(dataset.get("PatientBirthDate", ""))[:8],
        "patient_sex": str(dataset.get("PatientSex", ""))[:16],
        "accession_number": str(dataset.get("AccessionNumber", ""))[:64],
        "study_id": str(dataset.get("StudyID", ""))[:16],
        "study_date": _date_or_none(dataset.get("StudyDate")),
        "study_time": str(dataset.get("StudyTime", ""))[:16],
        "study_description": str(dataset.get("StudyDescription", ""))[:64],
        "referring_physician_name": str(dataset.get("ReferringPhysicianName", ""))[:324],
    }


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date_or_none(value) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(value)[:8], "%Y%m%d").date() if value else None  # noqa: DTZ007
    except ValueError:
        return None


def study_complete(*, study: Study) -> bool:
    """Mark a receiving study complete and fire `study_completed` once, after commit. False if already complete."""
    from medai.archive.tasks import study_completed

    with transaction.atomic():
        updated = Study.objects.filter(id=study.id, status=Study.Status.RECEIVING).update(
            status=Study.Status.COMPLETE, completed_at=timezone.now()
        )
        if updated:
            transaction.on_commit(lambda: study_completed.delay(study.id, study.organization_id))
    return bool(updated)


def studies_complete_quiet(*, quiet_seconds: int) -> int:
    """Complete every study that has received nothing for `quiet_seconds`; returns how many."""
    cutoff = timezone.now() - dt.timedelta(seconds=quiet_seconds)
    quiet = Study.objects.filter(status=Study.Status.RECEIVING, last_received_at__lt=cutoff)
    quiet = quiet.only("id", "organization_id")
    return sum(study_complete(study=study) for study in list(quiet))


def storage_sweep_orphans(*, older_than: dt.timedelta, storage: ObjectStorage | None = None) -> int:
    """Delete stored instance objects that no index row names and that are older than a request could take."""
    storage = storage or get_storage()
    cutoff = timezone.now() - older_than
    removed = 0
    for stored in storage.list(prefix=INSTANCE_KEY_PREFIX):
        if stored.modified < cutoff and not Instance.objects.filter(storage_key=stored.key).exists():
            storage.delete(stored.key)
            removed += 1
    return removed
