from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "medai.stats"
    label = "stats"
    verbose_name = "Statistics"

    def ready(self) -> None:
        """Connected after `inference` and `billing` (INSTALLED_APPS order), so a completed study is already
        routed and a finished analysis already has its defects when these receivers count them."""
        from billing.signals import service_billed
        from inference.signals import analysis_finished, review_recorded
        from medai.archive.signals import study_completed
        from medai.stats import receivers

        study_completed.connect(receivers.count_completed_study, dispatch_uid="stats.count_completed_study")
        analysis_finished.connect(receivers.count_finished_analysis, dispatch_uid="stats.count_finished_analysis")
        review_recorded.connect(receivers.count_review, dispatch_uid="stats.count_review")
        service_billed.connect(receivers.count_billed_service, dispatch_uid="stats.count_billed_service")
