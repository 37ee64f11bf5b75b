from django.apps import AppConfig


class DicomwebConfig(AppConfig):
    name = "medai.dicomweb"
    label = "dicomweb"
    verbose_name = "DICOMweb"
