"""The naive baseline: the textbook Django + DRF + Celery project a newcomer would write.

Served beside ours by bench/api_list.py and bench/webhook_ingest.py, so that
our figures have a floor measured in the same run on the same machine.
"""
from .celery import app as celery_app

__all__ = ("celery_app",)
