"""What every DICOMweb view shares: bearer authentication, no content negotiation by DRF, the audit log."""

from django.http import HttpRequest, JsonResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from medai.accounts.principal import Principal
from medai.archive.models import Study, StudyAccess


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


def record_study_access(*, request: HttpRequest, principal: Principal, studies: list[Study], endpoint: str) -> None:
    """Append who read which studies; one row per study, written before any byte is returned."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    address = forwarded.split(",")[0].strip() or request.META.get("REMOTE_ADDR") or None
    StudyAccess.objects.bulk_create(
        [
            StudyAccess(
                organization_id=study.organization_id,
                region_id=study.region_id,
                study_instance_uid=study.study_instance_uid,
                subject=principal.subject,
                role=principal.role,
                endpoint=endpoint,
                path=request.get_full_path()[:1024],
                client_address=address,
            )
            for study in studies
        ]
    )
