"""/api/v1/ai-services: the registry of AI services. Everyone reads what is enabled at their scope;
only the platform operator registers, changes and enables services."""

from rest_framework import viewsets

from inference.selectors import services_visible
from inference.serializers import AIServiceSerializer
from medai.accounts.models import Role
from medai.accounts.permissions import require_role
from medai.accounts.principal import NOBODY


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
