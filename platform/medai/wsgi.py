"""WSGI entry point (gunicorn). Chunked request bodies need a server that decodes them: gunicorn does."""

import os

from django.core.wsgi import get_wsgi_application

from medai.paths import add_platform_to_path

add_platform_to_path()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medai.settings")
application = get_wsgi_application()
