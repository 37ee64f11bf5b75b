from django.urls import path

from medai.stats import pages

urlpatterns = [
    path("", pages.dashboard_home, name="dashboard"),
    path("national", pages.national_page, name="dashboard-national"),
    path("region/<str:code>", pages.region_page, name="dashboard-region"),
    path("organization/<str:code>", pages.organization_page, name="dashboard-organization"),
]
