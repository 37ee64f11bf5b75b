"""WADO-RS (PS3.18 10.4): retrieve studies, series, instances, metadata, frames, bulk data and renderings.

Every lookup goes through the caller's scope (archive.selectors), so another tenant's study is 404,
never 403, and every successful read is written to the study access log before a byte of it leaves.

Instances are returned exactly as stored: streamed from object storage part by part, in constant
memory, in their stored transfer syntax (see wado_accept for how Accept is read). Each object's length
is checked against the index as it streams; its sha256 is not (hashing every byte served would cost
about half of WADO's throughput): the AI runs check the sha256 of what they read. Metadata comes from
the index, never from storage. Frames, bulk data and renderings read the stored object only as far as
they need (wado_pixels).

Responses stream after the view has returned, that is after the request's transaction (and its
row-level-security scope) has ended: everything the stream needs is read before, except metadata,
which the stream reads in batches inside transactions scoped to the same caller.
"""

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from pydicom import Dataset
from rest_framework.request import Request

from medai.accounts.principal import Principal
from medai.archive.models import Instance
from medai.archive.selectors import instances_visible
from medai.archive.storage import StorageUnavailable, get_storage
from medai.dicomweb import multipart_writer, wado_pixels
from medai.dicomweb.base import DicomWebView, dicomweb_error, record_study_access
from medai.dicomweb.dicomjson import MEDIA_TYPE, absolute_bulkdata, tag_hex
from medai.dicomweb.multipart_writer import OutgoingPart
from medai.dicomweb.rendering import RenderParameterError, parse_options, render
from medai.dicomweb.wado_accept import (
    ANY_SYNTAX,
    DICOM,
    OCTET_STREAM,
    PixelOffer,
    accepts_dicom_json,
    accepts_octet_stream,
    choose_pixel_offer,
    dicom_syntaxes,
    pixel_offers,
    rendered_media_type,
    requested_ranges,
)
from tenants.scope import scope_to_principal

logger = logging.getLogger(__name__)

METADATA_BATCH = 200
# A rendering decodes one frame into memory (as float64 on the way): 32 megapixels covers the largest
# mammography detectors with room to spare and bounds a rendering's memory to a few hundred MB.
MAX_RENDER_PIXELS = 32 * 1024 * 1024


class Refusal(Exception):
    """A DICOMweb error response (status and reason) raised from anywhere inside a view."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _WadoView(DicomWebView):
    audit_endpoint = "wado"

    def handle_exception(self, exc: Exception) -> HttpResponse:
        if isinstance(exc, Refusal):
            return dicomweb_error(exc.status, str(exc))
        if isinstance(exc, StorageUnavailable):
            logger.warning("WADO-RS: object storage unavailable: %s", exc)
            return dicomweb_error(503, "Object storage is unavailable; try again.",
                                  headers={"Retry-After": str(settings.DICOMWEB_RETRY_AFTER_SECONDS)})
        return super().handle_exception(exc)

    def audit(self, instances: Iterable[Instance]) -> None:
        studies = list({instance.study_id: instance.study for instance in instances}.values())
        record_study_access(request=self.request._request, principal=self.principal, studies=studies,
                            endpoint=self.audit_endpoint)


def _visible(principal: Principal, study: str, series: str | None = None, instance: str | None = None
             ) -> list[Instance]:
    """The caller's instances under the path's UIDs (metadata left in the database), in series and
    instance order; 404 if there are none, whether they do not exist or belong to someone else."""
    found = list(
        instances_visible(principal=principal, study_uid=study, series_uid=series, sop_uid=instance)
        .defer("metadata")
        .order_by("series__series_number", "series_id", "instance_number", "id")
    )
    if not found:
        level = "instance" if instance else "series" if series else "study"
        raise Refusal(404, f"No such {level}.")
    return found


def _one(principal: Principal, study: str, series: str, instance: str) -> Instance:
    """One instance. UIDs are unique per organization only, so a regional or national caller may see
    two organizations' instances under one UID; a single-object resource cannot pick one for them."""
    found = _visible(principal, study, series, instance)
    if len(found) > 1:
        raise Refusal(409, "More than one organization in your scope holds this SOP Instance UID.")
    return found[0]


# --- Retrieve study / series / instance ----------------------------------------------------------


class _Retrieve(_WadoView):
    def retrieve(self, request: Request, **uids: str) -> HttpResponse:
        instances = _visible(self.principal, **uids)
        _check_dicom_accept(request, instances)
        self.audit(instances)
        storage = get_storage()
        parts = [
            OutgoingPart(f"{DICOM}; transfer-syntax={i.transfer_syntax_uid}", i.size_bytes,
                         _exact_chunks(storage.iter_chunks(i.storage_key), i.size_bytes, i.storage_key))
            for i in instances
        ]
        parts[0] = replace(parts[0], chunks=_primed(parts[0].chunks))  # an unreachable store is a 503
        boundary = multipart_writer.new_boundary()
        response = StreamingHttpResponse(multipart_writer.stream(boundary, parts),
                                         content_type=multipart_writer.content_type(DICOM, boundary))
        response["Content-Length"] = str(multipart_writer.body_length(boundary, parts))
        return response


class RetrieveStudy(_Retrieve):
    audit_endpoint = "wado-study"

    def get(self, request: Request, study: str) -> HttpResponse:
        return self.retrieve(request, study=study)


class RetrieveSeries(_Retrieve):
    audit_endpoint = "wado-series"

    def get(self, request: Request, study: str, series: str) -> HttpResponse:
        return self.retrieve(request, study=study, series=series)


class RetrieveInstance(_Retrieve):
    audit_endpoint = "wado-instance"

    def get(self, request: Request, study: str, series: str, instance: str) -> HttpResponse:
        return self.retrieve(request, study=study, series=series, instance=instance)


def _check_dicom_accept(request: Request, instances: list[Instance]) -> None:
    """406 unless the caller accepts application/dicom parts in every stored transfer syntax.

    Acceptable: no Accept, `*/*`, or `multipart/related; type="application/dicom"` with
    `transfer-syntax` absent, `*`, or the stored UID. PS3.18 reads an absent transfer-syntax as
    Explicit VR Little Endian; we never transcode and return the instance as stored (a part's
    Content-Type names its transfer syntax), because that is what dicomweb-client's retrieve_study
    and retrieve_series send by default (retrieve_instance sends `transfer-syntax=*`)."""
    accepted = dicom_syntaxes(requested_ranges(request))
    if ANY_SYNTAX in accepted:
        return
    stored = {instance.transfer_syntax_uid for instance in instances}
    if not accepted:
        raise Refusal(406, 'Instances are sent as multipart/related; type="application/dicom".')
    if not stored <= accepted:
        raise Refusal(406, "Instances are sent in their stored transfer syntax, not transcoded: "
                           f"{', '.join(sorted(stored - accepted))}. Ask with transfer-syntax=*.")


def _exact_chunks(chunks: Iterator[bytes], size: int, key: str) -> Iterator[bytes]:
    """The object's chunks, failing the response (rather than sending a wrong part) if the stored
    object's length differs from the index: the part's Content-Length was promised from it."""
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            break
        yield chunk
    if sent != size:
        logger.error("WADO-RS: stored object %s has %s bytes, the index says %s", key, sent, size)
        raise StorageUnavailable(f"stored object {key} does not have its indexed length")


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Read the first chunk now, inside the view, so a store that is down answers 503, not a cut body."""
    first = next(chunks, b"")

    def resumed() -> Iterator[bytes]:
        yield first
        yield from chunks

    return resumed()


# --- Metadata -----------------------------------------------------------------------------------


class Metadata(_WadoView):
    audit_endpoint = "wado-metadata"

    def get(self, request: Request, study: str, series: str | None = None, instance: str | None = None
            ) -> HttpResponse:
        if not accepts_dicom_json(requested_ranges(request)):
            raise Refusal(406, f"Metadata is sent as {MEDIA_TYPE}.")
        instances = _visible(self.principal, study, series, instance)
        self.audit(instances)
        studies_url = request.build_absolute_uri(reverse("dicomweb-studies"))
        rows = [
            (i.id, f"{studies_url}/{i.study.study_instance_uid}/series/{i.series.series_instance_uid}"
                   f"/instances/{i.sop_instance_uid}")
            for i in instances
        ]
        return StreamingHttpResponse(_metadata_chunks(self.principal, rows), content_type=MEDIA_TYPE)


def _metadata_chunks(principal: Principal, rows: list[tuple[int, str]]) -> Iterator[bytes]:
    """A JSON array of the instances' stored metadata with absolute BulkDataURIs, read in batches so a
    study of thousands of instances is never in memory at once. Each batch is its own transaction
    under the caller's scope: the request's own has ended by the time the response streams."""
    separator = b"["
    for start in range(0, len(rows), METADATA_BATCH):
        batch = rows[start : start + METADATA_BATCH]
        with transaction.atomic():
            scope_to_principal(principal)
            stored = dict(
                instances_visible(principal=principal).filter(id__in=[id_ for id_, _ in batch])
                .values_list("id", "metadata")
            )
        for id_, instance_url in batch:
            if id_ in stored:  # deleted since the view ran: left out
                document = absolute_bulkdata(stored[id_], instance_url)
                yield separator + json.dumps(document, ensure_ascii=False).encode()
                separator = b","
    yield b"[]" if separator == b"[" else b"]"


# --- Frames and bulk data -----------------------------------------------------------------------


class Frames(_WadoView):
    audit_endpoint = "wado-frames"

    def get(self, request: Request, study: str, series: str, instance: str, frames: str) -> HttpResponse:
        numbers = _frame_numbers(frames)
        stored = _one(self.principal, study, series, instance)
        _check_frames_exist(stored, numbers)
        offer = _pixel_offer(request, stored)
        self.audit([stored])
        return _pixel_response(stored, offer, lambda file, element: _frame_parts(file, element, offer, numbers))


class Bulkdata(_WadoView):
    """A top-level element's value. Pixel Data is sent as negotiated for frames: native pixel data as
    one part holding every frame (the value as stored), compressed pixel data as one part per frame
    with the frame's bitstream (PS3.18 8.7.3), since the encapsulated value with its item framing is
    of no use to a client. Other bulk data is application/octet-stream in the stored byte order."""

    audit_endpoint = "wado-bulkdata"

    def get(self, request: Request, study: str, series: str, instance: str, tag: str) -> HttpResponse:
        try:
            tag_value = int(tag_hex(tag), 16)
        except (KeyError, ValueError):
            raise Refusal(404, "No such bulk data: the path names an attribute by its tag.") from None
        stored = _one(self.principal, study, series, instance)
        if tag_value == wado_pixels.PIXEL_DATA:
            return self._pixel_data(request, stored)
        return self._element(request, stored, tag_value)

    def _pixel_data(self, request: Request, stored: Instance) -> HttpResponse:
        if not stored.rows:
            raise Refusal(404, "The instance has no pixel data.")
        offer = _pixel_offer(request, stored)
        self.audit([stored])
        return _pixel_response(stored, offer, lambda file, element: _whole_pixel_data_parts(file, element, offer))

    def _element(self, request: Request, stored: Instance, tag: int) -> HttpResponse:
        if not accepts_octet_stream(requested_ranges(request)):
            raise Refusal(406, f'Bulk data is sent as multipart/related; type="{OCTET_STREAM}".')
        with wado_pixels.open_stored(get_storage(), key=stored.storage_key, size=stored.size_bytes) as file:
            try:
                value = wado_pixels.bulk_value(wado_pixels.read_header(file), tag)
            except wado_pixels.AmbiguousBulkData:
                raise Refusal(404, "That tag occurs more than once inside sequences.") from None
        if value is None:
            raise Refusal(404, "The instance has no bulk data under that tag.")
        self.audit([stored])
        return _multipart_response([OutgoingPart(OCTET_STREAM, len(value), [value])], OCTET_STREAM)


def _frame_numbers(frames: str) -> list[int]:
    """PS3.18 10.4.1.1.4: a comma-separated list of frame numbers counted from 1."""
    fields = frames.split(",")
    if not all(field.strip().isdigit() for field in fields) or any(int(field) < 1 for field in fields):
        raise Refusal(400, "Frames are listed as comma-separated numbers counted from 1.")
    return [int(field) for field in fields]


def _check_frames_exist(stored: Instance, numbers: list[int]) -> None:
    if not stored.rows:
        raise Refusal(404, "The instance has no pixel data, hence no frames.")
    missing = [n for n in numbers if n > stored.number_of_frames]
    if missing:
        raise Refusal(404, f"The instance has {stored.number_of_frames} frame(s); there is no frame {missing[0]}.")


def _pixel_offer(request: Request, stored: Instance) -> PixelOffer:
    offers = pixel_offers(stored.transfer_syntax_uid)
    offer = choose_pixel_offer(requested_ranges(request), offers)
    if offer is None:
        available = ", ".join(f'type="{o.media_type}"; transfer-syntax={o.transfer_syntax}' for o in offers)
        raise Refusal(406, f"The pixel data can be sent as multipart/related; {available or 'nothing (video)'}.")
    return offer


PartsFor = Callable[[BinaryIO, wado_pixels.PixelDataElement], Iterator[OutgoingPart]]


def _pixel_response(stored: Instance, offer: PixelOffer, parts_for: PartsFor) -> HttpResponse:
    """Open the stored object and find its pixel data now (a store outage is a 503, not a cut body),
    then stream the parts, each read only when the response reaches it. The object is closed with
    the response."""
    file = wado_pixels.open_stored(get_storage(), key=stored.storage_key, size=stored.size_bytes)
    try:
        element = wado_pixels.locate_pixel_data(file)
    except BaseException:
        file.close()
        raise
    if element is None:
        file.close()
        raise Refusal(404, "The instance has no pixel data.")
    return _multipart_response(parts_for(file, element), offer.media_type, on_close=file.close)


def _frame_parts(file: BinaryIO, element: wado_pixels.PixelDataElement, offer: PixelOffer, numbers: list[int]
                 ) -> Iterator[OutgoingPart]:
    for number in numbers:
        data = _read_frame(file, element, offer, number - 1)
        yield OutgoingPart(offer.part_content_type, len(data), [data])


def _whole_pixel_data_parts(file: BinaryIO, element: wado_pixels.PixelDataElement, offer: PixelOffer
                            ) -> Iterator[OutgoingPart]:
    if offer.decode or element.transfer_syntax.is_encapsulated or element.length is None:
        yield from _frame_parts(file, element, offer, list(range(1, element.number_of_frames + 1)))
    else:
        yield OutgoingPart(offer.part_content_type, element.length, wado_pixels.iter_value(file, element))


def _read_frame(file: BinaryIO, element: wado_pixels.PixelDataElement, offer: PixelOffer, index: int) -> bytes:
    if offer.decode:
        return wado_pixels.decoded_frame(file, element, index)
    if element.transfer_syntax.is_encapsulated:
        return wado_pixels.bitstream_frame(file, element, index)
    return wado_pixels.native_frame(file, element, index)


class _ClosingStream:
    """A response body that closes what it reads from when Django closes the response, even if the
    client went away before the first byte."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        close_chunks = getattr(self._chunks, "close", None)
        if close_chunks is not None:
            close_chunks()
        self._on_close()


def _multipart_response(parts: Iterable[OutgoingPart], part_type: str,
                        on_close: Callable[[], None] | None = None) -> StreamingHttpResponse:
    boundary = multipart_writer.new_boundary()
    chunks = multipart_writer.stream(boundary, parts)
    body = _ClosingStream(chunks, on_close) if on_close is not None else chunks
    return StreamingHttpResponse(body, content_type=multipart_writer.content_type(part_type, boundary))


# --- Rendered -----------------------------------------------------------------------------------


class Rendered(_WadoView):
    """One frame (the first of a multi-frame instance, unless /frames/{n}/rendered names another) as
    image/jpeg, or image/png when the caller prefers it. See rendering for the pipeline."""

    audit_endpoint = "wado-rendered"

    def get(self, request: Request, study: str, series: str, instance: str, frames: str | None = None
            ) -> HttpResponse:
        media_type = rendered_media_type(requested_ranges(request))
        if media_type is None:
            raise Refusal(406, "Renderings are sent as image/jpeg or image/png.")
        try:
            options = parse_options(request.query_params, media_type=media_type)
        except RenderParameterError as exc:
            raise Refusal(400, str(exc)) from None
        number = _single_frame(frames)
        stored = _one(self.principal, study, series, instance)
        self._check_renderable(stored, number)
        self.audit([stored])
        with wado_pixels.open_stored(get_storage(), key=stored.storage_key, size=stored.size_bytes) as file:
            element = wado_pixels.locate_pixel_data(file)
            if element is None:
                raise Refusal(404, "The instance has no pixel data.")
            header = Dataset()
            try:
                pixels = wado_pixels.decode_frame(file, element, number - 1, ds_out=header)
            except NotImplementedError:
                raise Refusal(406, f"Pixel data in {element.transfer_syntax.name} cannot be rendered.") from None
        return HttpResponse(render(pixels, header, frame_index=number - 1, options=options), content_type=media_type)

    @staticmethod
    def _check_renderable(stored: Instance, number: int) -> None:
        if not stored.rows or not stored.columns:
            raise Refusal(406, "Only images are rendered; this instance has no pixel data.")
        _check_frames_exist(stored, [number])
        if stored.rows * stored.columns > MAX_RENDER_PIXELS:
            raise Refusal(400, f"Images over {MAX_RENDER_PIXELS} pixels are not rendered; retrieve the frames.")
        if not pixel_offers(stored.transfer_syntax_uid):
            raise Refusal(406, "Video and unknown transfer syntaxes are not rendered.")


def _single_frame(frames: str | None) -> int:
    if frames is None:
        return 1
    numbers = _frame_numbers(frames)
    if len(numbers) != 1:
        raise Refusal(400, "A rendering is of one frame.")
    return numbers[0]
