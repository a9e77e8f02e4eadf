"""Project package: settings, the Celery app, root URLs and the WSGI/ASGI entry points."""

from scheduler_project.celery import app as celery_app

__all__ = ("celery_app",)
