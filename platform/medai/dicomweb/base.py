"""What every DICOMweb view shares: bearer authentication, no content negotiation by DRF, the audit log."""

import ipaddress
from collections.abc import Iterable
from typing import Protocol

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from medai.accounts.principal import Principal


class StudyRef(Protocol):
    """What the audit log needs of a study: a Study, or any row that carries these three."""

    organization_id: int
    region_id: int
    study_instance_uid: str


class FirstRendererNegotiation(BaseContentNegotiation):
    """DICOMweb views negotiate media types themselves (multipart/related, dicom+json, images);
    DRF's negotiation would answer 406 to `Accept: multipart/related` before authentication runs."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DicomWebView(APIView):
    # DICOMweb is specified by PS3.18, not by our OpenAPI document.
    schema = None
    content_negotiation_class = FirstRendererNegotiation
    renderer_classes = [JSONRenderer]
    parser_classes: list = []  # bodies are read as streams by the views that take one (STOW)

    @property
    def principal(self) -> Principal:
        return self.request.auth


def dicomweb_error(status: int, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    """A DICOMweb error outside STOW's Store Instances Response: the status and a readable reason."""
    response = JsonResponse({"detail": message}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


_INSERT_ACCESS = (
    "INSERT INTO archive_studyaccess (organization_id, region_id, study_instance_uid, subject, role, endpoint,"
    " path, client_address, at) SELECT o, r, u, %s, %s, %s, %s, %s::inet, now()"
    " FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[]) AS t(o, r, u)"
)


def client_address(request: HttpRequest) -> str | None:
    """The caller's IP address for the audit log. X-Forwarded-For is believed only when the request
    comes from a trusted proxy (TRUSTED_PROXY_NETWORKS), and then only its nearest untrusted hop: a
    client cannot write someone else's address into the log, nor break the read with a bad header."""
    trusted = [ipaddress.ip_network(n, strict=False) for n in settings.TRUSTED_PROXY_NETWORKS]

    def parse(value: str):
        try:
            return ipaddress.ip_address(value.strip())
        except ValueError:
            return None

    address = parse(request.META.get("REMOTE_ADDR", ""))
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in map(parse, reversed(forwarded)):  # nearest hop first
        if address is None or hop is None or not any(address in network for network in trusted):
            break
        address = hop
    return str(address) if address is not None else None


def record_study_access(
    *, request: HttpRequest, principal: Principal, studies: Iterable[StudyRef], endpoint: str
) -> None:
    """Append who read which studies; one row per study, written before any byte is returned.

    One INSERT ... SELECT FROM unnest, with no model instance per row: a QIDO page is up to a
    thousand studies, and bulk_create's per-object work cost more than the search itself.
    """
    refs = [(study.organization_id, study.region_id, study.study_instance_uid) for study in studies]
    if not refs:
        return
    address = client_address(request)
    organizations, regions, uids = (list(column) for column in zip(*refs, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_ACCESS,
            [principal.subject, principal.role, endpoint, request.get_full_path()[:1024], address,
             organizations, regions, uids],
        )
