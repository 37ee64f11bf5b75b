"""URL map: the REST API under /api/v1/, DICOMweb under /dicomweb/, OpenAPI under /api/schema/, the
dashboards under /dashboard/."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from medai import health
from medai.accounts.views import home
from medai.archive.views import StudyAccessListView, StudyCompleteView

api_v1 = [
    path("studies/<str:study_uid>/complete", StudyCompleteView.as_view(), name="study-complete"),
    path("audit/study-access", StudyAccessListView.as_view(), name="study-access"),
    path("", include("tenants.urls")),
    path("", include("inference.urls")),
    path("", include("billing.urls")),
    path("", include("medai.stats.urls")),
]

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("dicomweb/", include("medai.dicomweb.urls")),
    path("quality/", include("inference.quality.urls")),
    path("dashboard/", include("medai.stats.page_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
