"""ASGI entry point, for servers that prefer it; the platform runs under gunicorn (WSGI) by default."""

import os

from django.core.asgi import get_asgi_application

from medai.paths import add_platform_to_path

add_platform_to_path()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medai.settings")
application = get_asgi_application()
