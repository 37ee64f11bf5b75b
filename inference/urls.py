from django.urls import path
from rest_framework.routers import SimpleRouter

from inference.api.registry import AIServiceViewSet
from inference.api.results import StudyResultsView
from inference.api.webhooks import WebhookEndpointView
from inference.api.worklist import WorklistClaimView, WorklistCompleteView, WorklistView

router = SimpleRouter(trailing_slash=False)
router.register("ai-services", AIServiceViewSet, basename="ai-service")
urlpatterns = [
    *router.urls,
    path("studies/<str:study_uid>/results", StudyResultsView.as_view(), name="study-results"),
    path("webhook", WebhookEndpointView.as_view(), name="webhook"),
    path("worklist", WorklistView.as_view(), name="worklist"),
    path("worklist/<str:study_uid>/claim", WorklistClaimView.as_view(), name="worklist-claim"),
    path("worklist/<str:study_uid>/complete", WorklistCompleteView.as_view(), name="worklist-complete"),
]
