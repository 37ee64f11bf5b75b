from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "medai.stats"
    label = "stats"
    verbose_name = "Statistics"

    def ready(self) -> None:
        """Connected after `inference` and `billing` (INSTALLED_APPS order), so a finished analysis already has
        its defects when these receivers count them."""
        from billing.signals import service_billed
        from inference.signals import analysis_finished, review_recorded, study_routed
        from medai.stats import receivers

        study_routed.connect(receivers.count_routed_study, dispatch_uid="stats.count_routed_study")
        analysis_finished.connect(receivers.count_finished_analysis, dispatch_uid="stats.count_finished_analysis")
        review_recorded.connect(receivers.count_review, dispatch_uid="stats.count_review")
        service_billed.connect(receivers.count_billed_service, dispatch_uid="stats.count_billed_service")
