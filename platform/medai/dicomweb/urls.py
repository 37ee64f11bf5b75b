"""DICOMweb resources (PS3.18 10.4-10.6). GET and POST on the same resource share one view class."""

from django.urls import path, register_converter

from medai.dicomweb import qido, stow, wado


class UidConverter:
    regex = r"[0-9]+(?:\.[0-9]+)*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UidConverter, "uid")


class StudiesView(qido.SearchStudies, stow.Store):
    """GET searches studies (QIDO-RS); POST stores instances (STOW-RS)."""


class StudyView(wado.RetrieveStudy, stow.Store):
    """GET retrieves the study (WADO-RS); POST stores instances that must belong to it (STOW-RS)."""


I = "studies/<uid:study>/series/<uid:series>/instances/<uid:instance>"  # noqa: E741

urlpatterns = [
    path("studies", StudiesView.as_view(), name="dicomweb-studies"),
    path("studies/<uid:study>", StudyView.as_view(), name="dicomweb-study"),
    path("studies/<uid:study>/metadata", wado.Metadata.as_view()),
    path("studies/<uid:study>/series", qido.SearchSeries.as_view()),
    path("studies/<uid:study>/instances", qido.SearchInstances.as_view()),
    path("studies/<uid:study>/series/<uid:series>", wado.RetrieveSeries.as_view()),
    path("studies/<uid:study>/series/<uid:series>/metadata", wado.Metadata.as_view()),
    path("studies/<uid:study>/series/<uid:series>/instances", qido.SearchInstances.as_view()),
    path(I, wado.RetrieveInstance.as_view(), name="dicomweb-instance"),
    path(f"{I}/metadata", wado.Metadata.as_view()),
    path(f"{I}/rendered", wado.Rendered.as_view()),
    path(f"{I}/frames/<str:frames>", wado.Frames.as_view()),
    path(f"{I}/frames/<str:frames>/rendered", wado.Rendered.as_view()),
    path(f"{I}/bulkdata/<str:tag>", wado.Bulkdata.as_view()),
    path("series", qido.SearchSeries.as_view()),
    path("instances", qido.SearchInstances.as_view()),
]
