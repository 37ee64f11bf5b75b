from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "OMS billing"

    def ready(self) -> None:
        from billing.receivers import bill_finished_analysis
        from inference.signals import analysis_finished

        analysis_finished.connect(bill_finished_analysis, dispatch_uid="billing.bill_finished_analysis")
