"""Onboarding API: /api/v1/regions, /api/v1/organizations and their users. Thin: services do the work."""

from django.conf import settings
from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from medai.accounts.models import Membership, Role
from medai.accounts.permissions import require_role
from medai.accounts.principal import NOBODY
from medai.archive.selectors import studies_visible
from tenants import services
from tenants.models import MedicalOrganization, Region
from tenants.selectors import organizations_visible, regions_visible
from tenants.serializers import (
    InvitationRequestSerializer,
    MemberSerializer,
    OrganizationSerializer,
    ReasonSerializer,
    RegionSerializer,
    SenderCheckRequestSerializer,
    SenderCheckSerializer,
)

ONBOARDERS = (Role.PLATFORM_ADMIN, Role.REGIONAL_ADMIN)
USER_ADMINS = (Role.PLATFORM_ADMIN, Role.REGIONAL_ADMIN, Role.ORG_ADMIN)


class RegionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Regions; only the platform operator creates, edits, suspends and re-activates them."""

    serializer_class = RegionSerializer

    def get_queryset(self):
        return regions_visible(principal=self.request.auth or NOBODY)

    def perform_create(self, serializer) -> None:
        require_role(self.request.auth, Role.PLATFORM_ADMIN)
        data = serializer.validated_data
        serializer.instance = services.region_ensure(**data)

    def perform_update(self, serializer) -> None:
        require_role(self.request.auth, Role.PLATFORM_ADMIN)
        serializer.save()

    @extend_schema(request=ReasonSerializer, responses=RegionSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None) -> Response:
        return self._set_status(Region.Status.SUSPENDED)

    @extend_schema(request=ReasonSerializer, responses=RegionSerializer)
    @action(detail=True, methods=["post"])
    def reactivate(self, request, pk=None) -> Response:
        return self._set_status(Region.Status.ACTIVE)

    def _set_status(self, new_status: str) -> Response:
        require_role(self.request.auth, Role.PLATFORM_ADMIN)
        region = self.get_object()
        reason = _reason(self.request)
        region = services.region_set_status(region=region, status=new_status, reason=reason,
                                            by=self.request.auth.subject)
        return Response(RegionSerializer(region).data)


class OrganizationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                          mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Medical organizations. A regional admin onboards and manages its own region's only."""

    serializer_class = OrganizationSerializer

    def get_queryset(self):
        return organizations_visible(principal=self.request.auth or NOBODY)

    def get_serializer(self, *args, **kwargs):
        return super().get_serializer(*args, regions=regions_visible(principal=self.request.auth or NOBODY), **kwargs)

    @extend_schema(responses={201: OrganizationSerializer})
    def create(self, request, *args, **kwargs) -> Response:
        """Onboard: the organization (status `onboarding`), its Keycloak group and PACS client.
        The client's secret (or, embedded, the PACS API token) is in the answer once and never again."""
        require_role(request.auth, *ONBOARDERS)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        try:
            organization, credentials = services.organization_onboard(by=request.auth.subject, **fields)
        except IntegrityError as exc:
            raise ValidationError({"oms_code": ["An organization with this OMS code exists."]}) from exc
        body = OrganizationSerializer(organization).data
        body["pacs_credentials"] = {"client_id": credentials.client_id, "client_secret": credentials.client_secret,
                                    "api_token": credentials.api_token}
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer) -> None:
        require_role(self.request.auth, *USER_ADMINS)
        serializer.save()

    @extend_schema(request=ReasonSerializer, responses=OrganizationSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None) -> Response:
        """Refuse its uploads and access (403 with this reason); its data stays."""
        return self._set_status(MedicalOrganization.Status.SUSPENDED)

    @extend_schema(request=ReasonSerializer, responses=OrganizationSerializer)
    @action(detail=True, methods=["post"])
    def reactivate(self, request, pk=None) -> Response:
        return self._set_status(MedicalOrganization.Status.ACTIVE)

    @extend_schema(request=ReasonSerializer, responses=OrganizationSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None) -> Response:
        """Activate without a passed sender check: an override, recorded with its reason."""
        return self._set_status(MedicalOrganization.Status.ACTIVE)

    @extend_schema(request=SenderCheckRequestSerializer, responses=SenderCheckSerializer)
    @action(detail=True, methods=["post"], url_path="sender-check")
    def sender_check(self, request, pk=None) -> Response:
        """Report, requirement by requirement, on a test study the organization's PACS sent."""
        require_role(request.auth, *USER_ADMINS)
        organization = self.get_object()
        payload = SenderCheckRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        study = get_object_or_404(studies_visible(principal=request.auth).filter(organization=organization),
                                  study_instance_uid=payload.validated_data["study_instance_uid"])
        check = services.sender_check_run(organization=organization, study=study, by=request.auth.subject)
        return Response(SenderCheckSerializer(check).data)

    @extend_schema(request=InvitationRequestSerializer, responses={200: MemberSerializer(many=True)})
    @action(detail=True, methods=["get", "post"])
    def users(self, request, pk=None) -> Response:
        """List the organization's users, or invite one (Keycloak asks them to set a password)."""
        require_role(request.auth, *USER_ADMINS)
        organization = self.get_object()
        if request.method == "GET":
            members = Membership.objects.filter(organization=organization).select_related("user")
            return Response([{"username": m.user.get_username(), "role": m.role} for m in members])
        payload = InvitationRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        invitation = services.user_invite(organization=organization, **payload.validated_data)
        body = {"username": invitation.username, "user_id": invitation.user_id,
                "identity_provider": "keycloak" if settings.KEYCLOAK_URL else "local"}
        if invitation.api_token:
            body["api_token"] = invitation.api_token
        return Response(body, status=status.HTTP_201_CREATED)

    def _set_status(self, new_status: str) -> Response:
        require_role(self.request.auth, *ONBOARDERS)
        organization = self.get_object()
        organization = services.organization_set_status(
            organization=organization, status=new_status, reason=_reason(self.request), by=self.request.auth.subject
        )
        return Response(OrganizationSerializer(organization).data)


def _reason(request) -> str:
    payload = ReasonSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    return payload.validated_data["reason"]
