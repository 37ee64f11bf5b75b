"""Writes to the archive: storing received instances, and completing studies.

A STOW request is one `ReceiveBatch`: each instance's object is written to storage (and synced) before
the index rows commit, all rows commit together at the end, and if anything fails before that commit
the objects written by the batch are deleted again, so the index and the store hold only what was
acknowledged. Objects orphaned by a crash between the two are removed by `storage_sweep_orphans`.
Objects are written by a few threads while the request reads on, so the store's latency (an fsync,
an S3 round trip) overlaps with parsing instead of adding to every instance.
"""

import datetime as dt
import io
import json
import logging
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
WRITE_THREADS = 4  # objects of one batch written at once: their fsyncs (or S3 PUTs) overlap
WRITE_AHEAD_BYTES = 32 * 1024**2  # bytes handed to the writers and not yet stored; the reader waits past it
WRITE_AHEAD_MAX_OBJECT = 8 * 1024**2  # larger objects are written by the request's thread, from their file


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


class _Writes:
    """A batch's objects being written in the background. The first failure is raised to the request's
    thread on its next write or at `wait()`, so the batch aborts as if the write had been its own."""

    def __init__(self, storage: ObjectStorage) -> None:
        self.storage = storage
        self._pool: ThreadPoolExecutor | None = None
        self._changed = threading.Condition()
        self._bytes = 0
        self._count = 0
        self._failure: BaseException | None = None

    def put(self, key: str, data: bytes) -> None:
        with self._changed:
            self._raise_failure()
            while self._count and self._bytes + len(data) > WRITE_AHEAD_BYTES:
                self._changed.wait()
                self._raise_failure()
            self._bytes += len(data)
            self._count += 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="archive-write")
        self._pool.submit(self._put, key, data)

    def _put(self, key: str, data: bytes) -> None:
        failure = None
        try:
            self.storage.put(key, io.BytesIO(data), len(data))
        except BaseException as exc:  # handed to the request's thread
            failure = exc
        with self._changed:
            self._bytes -= len(data)
            self._count -= 1
            if failure is not None and self._failure is None:
                self._failure = failure
            self._changed.notify_all()

    def wait(self, *, raise_failure: bool = True) -> None:
        """Until every object handed over is stored (or failed); then raise the first failure."""
        with self._changed:
            while self._count:
                self._changed.wait()
            if raise_failure:
                self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# The rows go as one JSON array of arrays: one parameter, where VALUES lists would be thousands that the
# driver splices in one by one.
_INSERT_INSTANCES = (
    "INSERT INTO archive_instance (organization_id, region_id, study_id, series_id, sop_instance_uid,"
    " sop_class_uid, transfer_syntax_uid, instance_number, rows, columns, number_of_frames, size_bytes, sha256,"
    " storage_key, metadata, received_at)"
    " SELECT (r->>0)::bigint, (r->>1)::bigint, (r->>2)::bigint, (r->>3)::bigint, r->>4, r->>5, r->>6,"
    " (r->>7)::integer, (r->>8)::integer, (r->>9)::integer, (r->>10)::integer, (r->>11)::bigint, r->>12, r->>13,"
    " r->14, now() FROM jsonb_array_elements(%s::jsonb) AS r"
)
_STORED_SHA256 = (
    "SELECT sop_instance_uid, sha256 FROM archive_instance WHERE organization_id = %s AND sop_instance_uid = ANY(%s)"
)
# Where the rows stand in _INSERT_INSTANCES' arrays.
_STUDY, _SERIES, _SOP_UID, _SIZE, _SHA256, _KEY = 2, 3, 4, 11, 12, 13


class ReceiveBatch:
    """Store and index the instances of one STOW request, all or nothing.

    Whether an instance is stored already is looked up for many at a time: in one query per series the
    batch meets that exists already (a re-sent series is refused or skipped without writing anything),
    and for the rest in one query per flush, before its INSERT. An instance found there with other
    content (its UID in another series, or stored meanwhile by another request) is reported to
    `on_conflict(sop_instance_uid)`; without that callback DuplicateConflict is raised and the batch
    undone. One found with the same content is simply not indexed twice.
    """

    def __init__(
        self,
        *,
        organization: MedicalOrganization,
        storage: ObjectStorage | None = None,
        on_conflict: Callable[[str], None] | None = None,
    ) -> None:
        self.organization = organization
        self.storage = storage or get_storage()
        self.on_conflict = on_conflict
        self.written_keys: list[str] = []
        self._studies: dict[str, Study] = {}
        self._series: dict[str, Series] = {}
        self._created: list[Study | Series] = []
        self._study_counts: dict[int, _Counts] = defaultdict(_Counts)
        self._series_counts: dict[int, int] = defaultdict(int)
        self._modality: dict[int, str] = {}  # series id -> modality
        self._pending: list[list] = []  # index rows, in _INSERT_INSTANCES' order
        self._known_sha256: dict[str, str] = {}  # this batch's instances, and those stored in its series
        self._writes = _Writes(self.storage)

    def __enter__(self) -> "ReceiveBatch":
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._finish(exc_type, exc, tb)
        finally:
            self._writes.close()
        return False

    def _finish(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._insert_pending()
                self._delete_created_empty()
                self._apply_counts()
                self._writes.wait()  # every object stored before any row naming it commits
                self.storage.persist(self.written_keys)
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

    def store(
        self, *, dataset: Dataset, fileobj: BinaryIO, size: int, sha256: str, metadata: dict
    ) -> bool:
        """Store one instance; False if the identical instance is known to be stored already.

        Raises DuplicateConflict for a UID known with other content, StorageUnavailable if this or an
        earlier object of the batch could not be written (the caller aborts the batch; a failure found
        only at the end is raised by the exit). Index rows are inserted in bulk, every FLUSH_EVERY
        instances and at the end, after the lookup of those not known yet.
        """
        sop_uid = str(dataset.SOPInstanceUID)
        study = self._study_for(dataset)
        series = self._series_for(dataset, study)
        known = self._known_sha256.get(sop_uid)
        if known is not None:
            if known != sha256:
                raise DuplicateConflict(sop_uid)
            return False
        key = storage_key(
            organization_id=self.organization.id,
            study_uid=study.study_instance_uid,
            series_uid=series.series_instance_uid,
            sop_uid=sop_uid,
            sha256=sha256,
        )
        self.written_keys.append(key)
        fileobj.seek(0)
        if size <= WRITE_AHEAD_MAX_OBJECT:
            self._writes.put(key, fileobj.read(size))  # a BytesIO over bytes hands them over uncopied
        else:
            self.storage.put(key, fileobj, size)
        self._pending.append([
            self.organization.id,
            self.organization.region_id,
            study.id,
            series.id,
            sop_uid,
            str(dataset.SOPClassUID),
            str(dataset.file_meta.TransferSyntaxUID),
            _int_or_none(dataset.get("InstanceNumber")),
            _int_or_none(dataset.get("Rows")),
            _int_or_none(dataset.get("Columns")),
            _int_or_none(dataset.get("NumberOfFrames")) or 1,
            size,
            sha256,
            key,
            metadata,
        ])
        self._known_sha256[sop_uid] = sha256
        if len(self._pending) >= FLUSH_EVERY:
            self._insert_pending()
        return True

    def flush(self) -> None:
        """Store every object handed over so far and insert its row (not committed yet)."""
        self._insert_pending()
        self._writes.wait()

    def _insert_pending(self) -> None:
        """One lookup and one INSERT for the instances received since the last (plain SQL: the model
        layer's per-object work cost more than the statements). A unique violation means another request
        is storing the same instances at this moment: the whole batch is undone and the sender told to
        retry, when the lookup will settle it."""
        if not self._pending:
            return
        stored = self._stored_sha256([row[_SOP_UID] for row in self._pending])
        if stored:
            self._drop_stored(stored)
        if self._pending:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(_INSERT_INSTANCES, [json.dumps(self._pending)])
            except IntegrityError as exc:
                raise ConcurrentUpload() from exc
        for row in self._pending:
            counts = self._study_counts[row[_STUDY]]
            counts.instances += 1
            counts.size_bytes += row[_SIZE]
            if self._modality[row[_SERIES]]:
                counts.modalities.add(self._modality[row[_SERIES]])
            self._series_counts[row[_SERIES]] += 1
        self._pending.clear()

    def _stored_sha256(self, sop_uids: list[str]) -> dict[str, str]:
        with connection.cursor() as cursor:
            cursor.execute(_STORED_SHA256, [self.organization.id, sop_uids])
            return dict(cursor.fetchall())

    def _drop_stored(self, stored: dict[str, str]) -> None:
        """Take out of the pending rows the instances found stored already, and delete their objects."""
        dropped = [row for row in self._pending if row[_SOP_UID] in stored]
        self._pending = [row for row in self._pending if row[_SOP_UID] not in stored]
        self._writes.wait()  # an object still being written would come back after its delete
        for row in dropped:
            self.written_keys.remove(row[_KEY])
            try:
                self.storage.delete(row[_KEY])
            except StorageUnavailable:
                logger.warning("could not delete unindexed object %s; the orphan sweeper will", row[_KEY])
            self._known_sha256[row[_SOP_UID]] = stored[row[_SOP_UID]]
        for row in dropped:
            if stored[row[_SOP_UID]] != row[_SHA256]:
                if self.on_conflict is None:
                    raise DuplicateConflict(row[_SOP_UID])
                self.on_conflict(row[_SOP_UID])

    def _study_for(self, dataset: Dataset) -> Study:
        uid = str(dataset.StudyInstanceUID)
        if uid not in self._studies:
            self._studies[uid], created = Study.objects.get_or_create(
                organization=self.organization,
                study_instance_uid=uid,
                defaults={**study_attributes(dataset), "region_id": self.organization.region_id,
                          "last_received_at": timezone.now()},
            )
            if created:
                self._created.append(self._studies[uid])
        return self._studies[uid]

    def _series_for(self, dataset: Dataset, study: Study) -> Series:
        uid = str(dataset.SeriesInstanceUID)
        if uid not in self._series:
            self._series[uid], created = Series.objects.get_or_create(
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
            series = self._series[uid]
            self._modality[series.id] = series.modality
            if created:
                self._created.append(series)
            else:  # a series sent again: its instances are known without a lookup each
                stored = Instance.objects.filter(series=series).values_list("sop_instance_uid", "sha256")
                self._known_sha256.update(stored)
        return self._series[uid]

    def _delete_created_empty(self) -> None:
        """A series or study this batch created and then gave no instance (all of them stored already,
        or refused at the lookup) is not left behind, empty."""
        for created in reversed(self._created):
            counts = self._series_counts if isinstance(created, Series) else self._study_counts
            if created.id not in counts:
                type(created).objects.filter(id=created.id).delete()

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
        self._writes.wait(raise_failure=False)  # a write still under way would land after its delete
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
