"""Notification services: producing notifications, endpoints and their secrets, sending deliveries.

The only place that changes notification state; producers (health, auto-disable, credentials, webhook
events), views, admin actions and tasks call these.
"""
from .delivery import deliveries_prune, deliveries_sweep, delivery_attempt, delivery_redeliver, retry_delay
from .dispatch import notify, notify_many, queue_deliveries
from .endpoints import (
    ENDPOINT_FIELDS,
    notification_endpoint_create,
    notification_endpoint_delete,
    notification_endpoint_test,
    notification_endpoint_update,
    notification_secret_rotate,
)

__all__ = [
    "ENDPOINT_FIELDS", "deliveries_prune", "deliveries_sweep", "delivery_attempt", "delivery_redeliver",
    "notification_endpoint_create", "notification_endpoint_delete", "notification_endpoint_test",
    "notification_endpoint_update", "notification_secret_rotate", "notify", "notify_many", "queue_deliveries",
    "retry_delay",
]
