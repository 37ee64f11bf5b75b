"""/api/v1/webhook: an organization's admin sets, reads and removes where its RIS hears about results.

The secret is shown once, in the answer that set it: a later GET gives only the URL, so a leaked
read-only view of the settings cannot forge requests.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.records import WebhookEndpoint
from inference.webhooks import validate_webhook_url, webhook_endpoint_get, webhook_endpoint_remove, webhook_endpoint_set
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole
from tenants.models import MedicalOrganization
from tenants.selectors import organizations_visible


class WebhookEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["url", "active", "created_at"]
        read_only_fields = fields


class WebhookEndpointSetSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret: shown in this answer only.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointRequestSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=500, validators=[validate_webhook_url])
    secret = serializers.CharField(
        required=False, allow_null=True, min_length=16, max_length=128, trim_whitespace=False,
        help_text="Your own signing secret (16 to 128 characters); omit it to get a random one.",
    )


ORGANIZATION_PARAMETER = OpenApiParameter(
    "organization", OpenApiTypes.INT, description="The organization (platform_admin only; org_admin: its own)"
)


class WebhookEndpointView(APIView):
    """The caller's organization's webhook endpoint. Only its org_admin manages it; the platform operator
    may act for any organization by naming it (`?organization=<id>`)."""

    permission_classes = [HasRole(Role.ORG_ADMIN, Role.PLATFORM_ADMIN)]

    @extend_schema(parameters=[ORGANIZATION_PARAMETER], responses={200: WebhookEndpointSerializer})
    def get(self, request: Request) -> Response:
        endpoint = webhook_endpoint_get(organization=self._organization(request))
        if endpoint is None:
            raise NotFound("No webhook endpoint is set.")
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        parameters=[ORGANIZATION_PARAMETER], request=WebhookEndpointRequestSerializer,
        responses={200: WebhookEndpointSetSerializer, 201: WebhookEndpointSetSerializer},
    )
    def put(self, request: Request) -> Response:
        """Set or replace the endpoint; the answer holds the secret, the only time it is shown."""
        organization = self._organization(request)
        serializer = WebhookEndpointRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = webhook_endpoint_get(organization=organization) is None
        endpoint = webhook_endpoint_set(organization=organization, **serializer.validated_data)
        return Response(WebhookEndpointSetSerializer(endpoint).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(parameters=[ORGANIZATION_PARAMETER], responses={204: None})
    def delete(self, request: Request) -> Response:
        """Stop sending (204 whether or not one was set); past deliveries stay on record."""
        webhook_endpoint_remove(organization=self._organization(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _organization(self, request: Request) -> MedicalOrganization:
        """The organization acted for: an org_admin's own, or the one a platform admin names."""
        principal = request.auth
        named = request.query_params.get("organization")
        if named is not None and not named.isdigit():
            raise ValidationError({"organization": ["An organization id is a number."]})
        if principal.organization_id is not None:
            if named is not None and int(named) != principal.organization_id:
                raise NotFound("No such organization.")
            organization_id = principal.organization_id
        elif principal.has_role(Role.PLATFORM_ADMIN):
            if named is None:
                raise ValidationError({"organization": ["Name the organization: ?organization=<id>."]})
            organization_id = int(named)
        else:
            raise PermissionDenied("Webhooks belong to an organization, and this account is not one's.")
        organization = organizations_visible(principal=principal).filter(id=organization_id).first()
        if organization is None:
            raise NotFound("No such organization.")
        return organization
