"""STOW-RS (PS3.18 10.5): store instances sent as `multipart/related; type="application/dicom"`.

The body is streamed part by part (multipart_reader); each part is vetted (dicomfile), then stored
and indexed through one archive ReceiveBatch, so the request is all-or-nothing towards storage:
a storage outage answers 503 and leaves nothing indexed. Per-instance failures are reported in the
Store Instances Response with the PS3.18 failure reasons; re-sending an instance is idempotent.

A server out of resources (a full disk or quota, a file size limit, no file descriptors) is no outage:
the instances it could not keep fail with 0xA700 and the response says when to retry. A part whose
temporary file ran out fails alone; object storage running out undoes the batch, as any storage failure
does, so every instance of the request fails with 0xA700 and nothing of it is left half-stored.
"""

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from minio.error import S3Error
from python_multipart.multipart import parse_options_header

from medai.accounts.models import Role
from medai.archive.dicomfile import UnreadableDicom, lacks_preamble, read_received, read_stored, with_preamble
from medai.archive.services import ConcurrentUpload, DuplicateConflict, ReceiveBatch
from medai.archive.sop_classes import STORAGE_SOP_CLASSES
from medai.archive.storage import StorageUnavailable
from medai.dicomweb.base import DicomWebView, dicomweb_error
from medai.dicomweb.dicomjson import MEDIA_TYPE
from medai.dicomweb.multipart_reader import BodyTooLarge, MultipartError, Part, iter_parts
from tenants.models import MedicalOrganization

# PS3.18 Table I.2-1 / PS3.4 Annex GG failure reasons.
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
STUDY_UID_MISMATCH = 0xA900
DUPLICATE_DIFFERENT_CONTENT = 0x0111
OUT_OF_RESOURCES = 0xA700

# What a server that ran out of room says (disk, quota, file size limit, descriptors, memory): a retry
# later may well succeed.
_OUT_OF_RESOURCES_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.ENOMEM}
)

# MinIO's answers when its drives or the bucket's quota are full (HTTP 507 Insufficient Storage, or 400).
_S3_OUT_OF_RESOURCES = frozenset({"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded"})

UPLOAD_ROLES = {Role.UPLOADER, Role.ORG_ADMIN}

_stow_slots: threading.BoundedSemaphore | None = None
_stow_slots_lock = threading.Lock()


def _slots() -> threading.BoundedSemaphore:
    """Per-process limit on concurrent STOW requests; past it callers are told to retry, not left to time out."""
    global _stow_slots
    with _stow_slots_lock:
        if _stow_slots is None:
            _stow_slots = threading.BoundedSemaphore(settings.DICOMWEB_MAX_CONCURRENT_STOW)
        return _stow_slots


@dataclass
class StoreOutcome:
    referenced: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    conflicts: set[str] = field(default_factory=set)  # referenced at first, found stored with other content later
    json_cache: dict = field(default_factory=dict)  # DICOM JSON of elements seen in this request's parts
    storage_full: StorageUnavailable | None = None  # the batch is to be undone: storage ran out of resources

    def undo_referenced(self) -> None:
        """The batch was undone: nothing referenced so far was stored."""
        self.failed += [_failed_item(item["00081150"]["Value"][0], item["00081155"]["Value"][0], OUT_OF_RESOURCES)
                        for item in self.referenced]
        self.referenced.clear()


class Store(DicomWebView):
    def post(self, request, study: str | None = None) -> HttpResponse:
        organization, refusal = self._organization_for_upload()
        if refusal is not None:
            return refusal
        boundary, refusal = _boundary_of(request.META.get("CONTENT_TYPE", ""))
        if refusal is not None:
            return refusal
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.DICOMWEB_MAX_STOW_BYTES:
            return _too_large()
        slots = _slots()
        if not slots.acquire(blocking=False):
            return _retry_later("Too many uploads in progress.", status=503)
        try:
            return self._store_body(request._request, organization, boundary, study)
        finally:
            slots.release()

    def _organization_for_upload(self) -> tuple[MedicalOrganization | None, HttpResponse | None]:
        principal = self.principal
        if principal.organization_id is None or not principal.has_role(*UPLOAD_ROLES):
            return None, dicomweb_error(403, "Only an organization's uploader or admin may store studies.")
        # Suspended organizations are refused at authentication already.
        return MedicalOrganization.objects.get(id=principal.organization_id), None

    def _store_body(
        self, request: HttpRequest, organization: MedicalOrganization, boundary: str, study: str | None
    ) -> HttpResponse:
        outcome = StoreOutcome()
        try:
            with ReceiveBatch(organization=organization, on_conflict=outcome.conflicts.add) as batch:
                parts = iter_parts(
                    _body_reader(request),
                    boundary,
                    max_bytes=settings.DICOMWEB_MAX_STOW_BYTES,
                    spool_bytes=settings.DICOMWEB_SPOOL_MEMORY_BYTES,
                )
                for part in parts:
                    try:
                        self._store_part(request, batch, part, study, outcome)
                    finally:
                        part.close()
                if outcome.storage_full is not None:
                    raise outcome.storage_full  # undo the batch: a write that failed alone would not
        except MultipartError as exc:
            return dicomweb_error(400, f"Malformed multipart/related body: {exc}")
        except BodyTooLarge:
            return _too_large()
        except StorageUnavailable as exc:
            if not _out_of_resources(exc):
                return _retry_later("Object storage is unavailable; nothing from this request was stored.",
                                    status=503)
            outcome.undo_referenced()
        except ConcurrentUpload:
            return _retry_later("The same instances are being stored by another request; nothing from this one"
                                " was stored. Send it again.", status=503)
        return _store_response(request, outcome, study)

    def _store_part(
        self, request: HttpRequest, batch: ReceiveBatch, part: Part, study: str | None, outcome: StoreOutcome
    ) -> None:
        def fail(reason: int, sop_class: str = "", sop_instance: str = "") -> None:
            outcome.failed.append(_failed_item(sop_class, sop_instance, reason))

        if part.failure is not None:  # read past: only its first bytes were kept
            _raise_unless_out_of_resources(part.failure)
            return fail(OUT_OF_RESOURCES, *_uids_in(part.file))
        media_type, _ = parse_options_header(part.content_type or "application/dicom")
        if media_type.decode().lower() != "application/dicom" or not part.complete:
            return fail(CANNOT_UNDERSTAND)
        if lacks_preamble(part.file):
            received_as = part.file
            try:
                part.file, part.size, part.sha256 = with_preamble(
                    received_as, spool_bytes=settings.DICOMWEB_SPOOL_MEMORY_BYTES)
            except OSError as exc:
                _raise_unless_out_of_resources(exc)
                return fail(OUT_OF_RESOURCES, *_uids_in(received_as))
            received_as.close()
        try:
            received = read_received(part.file, part.size, json_cache=outcome.json_cache)
        except UnreadableDicom:
            return fail(CANNOT_UNDERSTAND)
        dataset = received.dataset
        sop_class, sop_instance = str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)
        if sop_class not in STORAGE_SOP_CLASSES:
            return fail(SOP_CLASS_NOT_SUPPORTED, sop_class, sop_instance)
        if study is not None and str(dataset.StudyInstanceUID) != study:
            return fail(STUDY_UID_MISMATCH, sop_class, sop_instance)
        if outcome.storage_full is not None:  # the batch will be undone; the rest of the body is only read
            return fail(OUT_OF_RESOURCES, sop_class, sop_instance)
        try:
            batch.store(
                dataset=dataset, fileobj=part.file, size=part.size, sha256=part.sha256, metadata=received.metadata
            )
        except DuplicateConflict:
            return fail(DUPLICATE_DIFFERENT_CONTENT, sop_class, sop_instance)
        except StorageUnavailable as exc:
            if not _out_of_resources(exc):
                raise
            outcome.storage_full = exc
            return fail(OUT_OF_RESOURCES, sop_class, sop_instance)
        outcome.referenced.append(
            {
                "00081150": {"vr": "UI", "Value": [sop_class]},
                "00081155": {"vr": "UI", "Value": [sop_instance]},
                "00081190": {"vr": "UR", "Value": [_instance_url(request, dataset)]},
            }
        )
        return None


def _body_reader(request: HttpRequest) -> Callable[[int], bytes]:
    """Read the body as a stream. Without Content-Length (chunked), read the server's decoded input
    directly: Django's own stream would read nothing."""
    if request.META.get("CONTENT_LENGTH"):
        return request.read
    return request.META["wsgi.input"].read


def _boundary_of(content_type: str) -> tuple[str, HttpResponse | None]:
    media_type, params = parse_options_header(content_type)
    part_type = params.get(b"type", b"application/dicom").decode("latin-1").lower()
    if media_type.decode("latin-1").lower() != "multipart/related" or part_type != "application/dicom":
        return "", dicomweb_error(
            415, 'STOW-RS accepts multipart/related; type="application/dicom" only.'
        )
    boundary = params.get(b"boundary", b"").decode("latin-1")
    if not boundary:
        return "", dicomweb_error(400, "Content-Type has no boundary parameter.")
    return boundary, None


def _too_large() -> HttpResponse:
    limit = settings.DICOMWEB_MAX_STOW_BYTES
    return dicomweb_error(413, f"The request body exceeds the limit of {limit} bytes; send the study in parts.")


def _retry_later(message: str, *, status: int) -> HttpResponse:
    return dicomweb_error(status, message, headers={"Retry-After": str(settings.DICOMWEB_RETRY_AFTER_SECONDS)})


def _out_of_resources(exc: BaseException | None) -> bool:
    """Whether an error, or one it was raised from (storage wraps the OSError or the S3 error), says the
    server ran out of room rather than that something is broken."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES_ERRNOS:
            return True
        if isinstance(exc, S3Error) and (exc.code in _S3_OUT_OF_RESOURCES or exc.response.status == 507):
            return True
        exc = exc.__cause__
    return False


def _raise_unless_out_of_resources(exc: OSError) -> None:
    """Other OSErrors (a failing disk, a permission) are errors of the server, answered as before."""
    if not _out_of_resources(exc):
        raise exc


def _uids_in(fileobj: BinaryIO) -> tuple[str, str]:
    """The SOP Class and Instance UIDs of a part that could not be kept, read from its first bytes if they
    hold the header; empty when they do not."""
    try:
        dataset = read_stored(fileobj, stop_before_pixels=True)
        return str(dataset.get("SOPClassUID", "")), str(dataset.get("SOPInstanceUID", ""))
    except Exception:  # anything unparsable names no instance
        return "", ""


def _failed_item(sop_class: str, sop_instance: str, reason: int) -> dict:
    item = {"00081197": {"vr": "US", "Value": [reason]}}
    if sop_class:
        item["00081150"] = {"vr": "UI", "Value": [sop_class]}
    if sop_instance:
        item["00081155"] = {"vr": "UI", "Value": [sop_instance]}
    return item


def _instance_url(request: HttpRequest, dataset) -> str:
    return request.build_absolute_uri(
        f"/dicomweb/studies/{dataset.StudyInstanceUID}/series/{dataset.SeriesInstanceUID}"
        f"/instances/{dataset.SOPInstanceUID}"
    )


def _store_response(request: HttpRequest, outcome: StoreOutcome, study: str | None) -> HttpResponse:
    """The Store Instances Response (PS3.18 10.5.3): 200 all stored, 202 some failed, 409 none stored."""
    for item in [item for item in outcome.referenced if item["00081155"]["Value"][0] in outcome.conflicts]:
        outcome.referenced.remove(item)
        outcome.failed.append(
            _failed_item(item["00081150"]["Value"][0], item["00081155"]["Value"][0], DUPLICATE_DIFFERENT_CONTENT))
    body: dict = {}
    if study is not None:
        body["00081190"] = {"vr": "UR", "Value": [request.build_absolute_uri(f"/dicomweb/studies/{study}")]}
    if outcome.referenced:
        body["00081199"] = {"vr": "SQ", "Value": outcome.referenced}
    if outcome.failed:
        body["00081198"] = {"vr": "SQ", "Value": outcome.failed}
    if outcome.failed and not outcome.referenced:
        status = 409
    elif outcome.failed:
        status = 202
    else:
        status = 200
    response = JsonResponse(body, status=status, content_type=MEDIA_TYPE)
    if any(item["00081197"]["Value"][0] == OUT_OF_RESOURCES for item in outcome.failed):
        response["Retry-After"] = str(settings.DICOMWEB_RETRY_AFTER_SECONDS)  # the room may be there by then
    return response
