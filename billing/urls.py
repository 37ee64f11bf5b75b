from django.urls import path
from rest_framework.routers import SimpleRouter

from billing.api.ledger import BillableServiceListView, ReverseServiceView, SupplyPolicyView, TotalsView
from billing.api.periods import PeriodViewSet, RegisterExportViewSet
from billing.api.tariffs import TariffViewSet

router = SimpleRouter(trailing_slash=False)
router.register("billing/tariffs", TariffViewSet, basename="tariff")
router.register("billing/periods", PeriodViewSet, basename="billing-period")
router.register("billing/exports", RegisterExportViewSet, basename="register-export")
urlpatterns = [
    *router.urls,
    path("billing/services", BillableServiceListView.as_view(), name="billable-services"),
    path("billing/services/<int:service_id>/policy", SupplyPolicyView.as_view(), name="billable-service-policy"),
    path("billing/services/<int:service_id>/reverse", ReverseServiceView.as_view(), name="billable-service-reverse"),
    path("billing/totals", TotalsView.as_view(), name="billing-totals"),
]
