from rest_framework.routers import SimpleRouter

from tenants.views import OrganizationViewSet, RegionViewSet

router = SimpleRouter(trailing_slash=False)
router.register("regions", RegionViewSet, basename="region")
router.register("organizations", OrganizationViewSet, basename="organization")
urlpatterns = router.urls
