from django.apps import AppConfig


class ArchiveConfig(AppConfig):
    name = "medai.archive"
    label = "archive"
    verbose_name = "DICOM archive"
