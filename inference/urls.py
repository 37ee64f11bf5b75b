from django.urls import path
from rest_framework.routers import SimpleRouter

from inference.api.registry import AIServiceViewSet
from inference.api.results import StudyResultsView
from inference.api.technical_tests import TechnicalTestViewSet
from inference.api.webhooks import WebhookEndpointView
from inference.api.worklist import WorklistClaimView, WorklistCompleteView, WorklistView
from inference.quality.api import (
    AlertAcknowledgeView,
    AlertListView,
    DefectRatesView,
    MetricsView,
    ReviewSampleView,
    ReviewView,
    WorklistReopenView,
)

router = SimpleRouter(trailing_slash=False)
router.register("ai-services", AIServiceViewSet, basename="ai-service")
router.register("technical-tests", TechnicalTestViewSet, basename="technical-test")
urlpatterns = [
    *router.urls,
    path("studies/<str:study_uid>/results", StudyResultsView.as_view(), name="study-results"),
    path("webhook", WebhookEndpointView.as_view(), name="webhook"),
    path("worklist", WorklistView.as_view(), name="worklist"),
    path("worklist/<str:study_uid>/claim", WorklistClaimView.as_view(), name="worklist-claim"),
    path("worklist/<str:study_uid>/complete", WorklistCompleteView.as_view(), name="worklist-complete"),
    path("worklist/<str:study_uid>/reopen", WorklistReopenView.as_view(), name="worklist-reopen"),
    path("results/<int:analysis_id>/review", ReviewView.as_view(), name="result-review"),
    path("quality/review-sample", ReviewSampleView.as_view(), name="quality-review-sample"),
    path("quality/metrics", MetricsView.as_view(), name="quality-metrics"),
    path("quality/alerts", AlertListView.as_view(), name="quality-alerts"),
    path("quality/alerts/<int:alert_id>/acknowledge", AlertAcknowledgeView.as_view(), name="quality-alert-acknowledge"),
    path("quality/defects", DefectRatesView.as_view(), name="quality-defects"),
]
