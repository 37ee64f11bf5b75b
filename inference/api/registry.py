"""/api/v1/ai-services: the registry of AI services. Everyone reads what is enabled at their scope;
only the platform operator registers, changes and enables services, promotes a version that ran in
shadow, and recalls a model version's results from every tenant."""

import dataclasses

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from inference.quality import versions
from inference.quality.tasks import recall
from inference.selectors import services_visible
from inference.serializers import AIServiceSerializer
from medai.accounts.models import Role
from medai.accounts.permissions import HasRole, require_role
from medai.accounts.principal import NOBODY

OPERATOR = [HasRole(Role.PLATFORM_ADMIN)]


class RecallSerializer(serializers.Serializer):
    model_version = serializers.CharField(required=False, allow_blank=True, default="",
                                          help_text="Empty: every version of the service")
    reason = serializers.CharField(max_length=400)


class PromoteSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=400, required=False, allow_blank=True, default="")


ShadowComparisonSerializer = inline_serializer("ShadowComparison", {
    field.name: serializers.FloatField(allow_null=True) for field in dataclasses.fields(versions.ShadowComparison)
})


class AIServiceViewSet(viewsets.ModelViewSet):
    serializer_class = AIServiceSerializer
    lookup_field = "code"
    http_method_names = ["get", "post", "put", "patch", "head", "options"]  # services are suspended, never deleted

    def get_queryset(self):
        return services_visible(principal=self.request.auth or NOBODY)

    def perform_create(self, serializer) -> None:
        require_role(self.request.auth, Role.PLATFORM_ADMIN)
        serializer.save()

    def perform_update(self, serializer) -> None:
        require_role(self.request.auth, Role.PLATFORM_ADMIN)
        serializer.save()

    def _conflict(self, conflict: versions.VersionConflict) -> Response:
        return Response({"detail": str(conflict)}, status=409)

    @extend_schema(responses=ShadowComparisonSerializer)
    @action(detail=True, methods=["get"], url_path="shadow-comparison", permission_classes=OPERATOR)
    def shadow_comparison(self, request, code=None) -> Response:
        """The shadow version against the current one on the same live studies."""
        try:
            comparison = versions.shadow_comparison(shadow=self.get_object())
        except versions.VersionConflict as conflict:
            return self._conflict(conflict)
        return Response(dataclasses.asdict(comparison))

    @extend_schema(request=PromoteSerializer, responses=AIServiceSerializer)
    @action(detail=True, methods=["post"], permission_classes=OPERATOR)
    def promote(self, request, code=None) -> Response:
        """The shadow version replaces the one it shadowed, wherever that was enabled."""
        body = PromoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            service = versions.service_promote(shadow=self.get_object(), reason=body.validated_data["reason"])
        except versions.VersionConflict as conflict:
            return self._conflict(conflict)
        return Response(self.get_serializer(service).data)

    @extend_schema(request=RecallSerializer, responses={202: inline_serializer("RecallAccepted", {
        "analyses": serializers.IntegerField(), "organizations": serializers.IntegerField()})})
    @action(detail=True, methods=["post"], permission_classes=OPERATOR)
    def recall(self, request, code=None) -> Response:
        """Withdraw every delivered result of a model version (or of every version) across all tenants:
        marked superseded, clinics told through their webhook, billing reversed. Runs in the background."""
        body = RecallSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        service, version = self.get_object(), body.validated_data["model_version"]
        found = versions.recalled_analyses(service=service, model_version=version)
        counts = {"analyses": found.count(), "organizations": found.values("organization_id").distinct().count()}
        reason = body.validated_data["reason"]
        transaction.on_commit(lambda: recall.delay(service.id, version, reason))
        return Response(counts, status=202)
