"""QIDO-RS (PS3.18 10.6): search for studies, series and instances, answered from the archive index.

Each search is one SELECT on the caller's scope (archive.selectors) plus one bulk INSERT into the
audit log, since the results carry patient names. No match is `200 []` rather than 204: clients
(dicomweb-client among them) read an empty array without special cases. More results than the page
holds are announced with `Warning: 299` (PS3.18 8.3.4.4), found by reading one row past the page.
"""

import json

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from rest_framework.request import Request

from medai.archive.selectors import instances_visible, series_visible, studies_visible
from medai.dicomweb.base import DicomWebView, dicomweb_error, record_study_access
from medai.dicomweb.dicomjson import MEDIA_TYPE
from medai.dicomweb.qido_query import (
    Level,
    QidoError,
    Search,
    audited_studies,
    parse_search,
    renderer,
    search_rows,
)

_ACCEPTABLE = {MEDIA_TYPE, "application/json", "application/*", "*/*"}


class _Search(DicomWebView):
    """One GET for every QIDO resource; subclasses name the level, its scoped rows and audit endpoint."""

    qido_level: Level
    qido_endpoint: str

    def get(self, request: Request, study: str | None = None, series: str | None = None) -> HttpResponse:
        refusal = _refuse_media_type(request)
        if refusal is not None:
            return refusal
        try:
            search = parse_search(
                request.query_params,
                level=self.qido_level,
                study_in_path=study is not None,
                series_in_path=series is not None,
                default_limit=settings.DICOMWEB_QIDO_DEFAULT_LIMIT,
                max_limit=settings.DICOMWEB_QIDO_MAX_LIMIT,
            )
        except QidoError as exc:
            return dicomweb_error(400, str(exc))
        rows, more = search_rows(self.visible(study, series), search)
        if rows:  # audited before any byte of patient data leaves
            record_study_access(
                request=request._request,
                principal=self.principal,
                studies=audited_studies(rows, self.qido_level),
                endpoint=self.qido_endpoint,
            )
        return _results(request, search, rows, more=more)

    def visible(self, study: str | None, series: str | None) -> QuerySet:
        """The rows this caller may search at this level, narrowed by the UIDs in the path."""
        raise NotImplementedError


class SearchStudies(_Search):
    qido_level = Level.STUDY
    qido_endpoint = "qido-studies"

    def visible(self, study: str | None, series: str | None) -> QuerySet:
        return studies_visible(principal=self.principal)


class SearchSeries(_Search):
    qido_level = Level.SERIES
    qido_endpoint = "qido-series"

    def visible(self, study: str | None, series: str | None) -> QuerySet:
        return series_visible(principal=self.principal, study_uid=study)


class SearchInstances(_Search):
    qido_level = Level.INSTANCE
    qido_endpoint = "qido-instances"

    def visible(self, study: str | None, series: str | None) -> QuerySet:
        return instances_visible(principal=self.principal, study_uid=study, series_uid=series)


def _results(request: Request, search: Search, rows: list[dict], *, more: bool) -> HttpResponse:
    studies_url = request.build_absolute_uri(reverse("dicomweb-studies"))
    render = renderer(search, studies_url)
    body = json.dumps([render(row) for row in rows], ensure_ascii=False)
    response = HttpResponse(body.encode(), content_type=MEDIA_TYPE)
    if more:
        service = studies_url.removesuffix("/studies")
        response["Warning"] = f'299 {service}: "There are additional results that can be requested"'
    return response


def _refuse_media_type(request: Request) -> HttpResponse | None:
    """QIDO answers in DICOM JSON only; a client that accepts only XML or multipart gets 406, not JSON it
    cannot read. The `accept` query parameter (PS3.18 8.3.3.1) counts like the header."""
    accepted = request.query_params.get("accept") or request.headers.get("Accept") or "*/*"
    media_types = {item.split(";")[0].strip().lower() for item in accepted.split(",")}
    if media_types & _ACCEPTABLE:
        return None
    return dicomweb_error(406, f"QIDO-RS answers in {MEDIA_TYPE} only.")
