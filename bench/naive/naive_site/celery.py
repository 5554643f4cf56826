"""The Celery app, as Celery's "First steps with Django" writes it."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "naive_site.settings")

app = Celery("naive_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
