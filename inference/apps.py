from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "AI analysis"

    def ready(self) -> None:
        from inference.receivers import route_completed_study
        from medai.archive.signals import study_completed

        study_completed.connect(route_completed_study, dispatch_uid="inference.route_completed_study")
