"""MedAI Platform: the core Django project (settings, URLs, Celery) and its shared apps."""

from medai.celery_app import app as celery_app

__all__ = ("celery_app",)
