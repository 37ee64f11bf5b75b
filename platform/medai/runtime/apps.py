from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "medai.runtime"
    label = "runtime"
    verbose_name = "Embedded runtime (medai up)"
