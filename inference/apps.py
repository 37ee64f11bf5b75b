from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "AI analysis"

    def ready(self) -> None:
        from inference.receivers import check_finished_analysis, route_completed_study
        from inference.signals import analysis_finished
        from medai.archive.signals import study_completed

        study_completed.connect(route_completed_study, dispatch_uid="inference.route_completed_study")
        analysis_finished.connect(check_finished_analysis, dispatch_uid="inference.check_finished_analysis")
