"""The Celery application. Workers start it with `medai worker` or `celery -A medai worker`."""

import os

from celery import Celery

from medai.paths import add_platform_to_path

add_platform_to_path()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medai.settings")

app = Celery("medai")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
