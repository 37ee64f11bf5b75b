from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "OMS billing"

    def ready(self) -> None:
        from billing.receivers import bill_finished_analysis, reverse_recalled_analysis
        from inference.signals import analysis_finished, analysis_recalled

        analysis_finished.connect(bill_finished_analysis, dispatch_uid="billing.bill_finished_analysis")
        analysis_recalled.connect(reverse_recalled_analysis, dispatch_uid="billing.reverse_recalled_analysis")
