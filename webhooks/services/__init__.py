"""Webhook services: endpoints and their secrets, receiving deliveries, processing events.

The only place that changes webhook state; views, admin actions and tasks call these.
"""
from .endpoints import (
    ENDPOINT_FIELDS,
    endpoint_cache_clear,
    endpoint_create,
    endpoint_delete,
    endpoint_for_path,
    endpoint_update,
    endpoints_disable_for_integration,
    signature_failure_count,
    webhook_secret_rotate,
)
from .processing import (
    PermanentEventError,
    event_process,
    event_replay,
    events_prune,
    events_sweep,
    handle_event,
    parse_body,
    retry_delay,
)
from .receiving import Receipt, event_accept, event_store, filtered_headers, rate_limit_wait, webhook_receive

__all__ = [
    "ENDPOINT_FIELDS", "PermanentEventError", "Receipt", "endpoint_cache_clear", "endpoint_create",
    "endpoint_delete", "endpoint_for_path", "endpoint_update", "endpoints_disable_for_integration", "event_accept",
    "event_store",
    "event_process", "event_replay", "events_prune", "events_sweep", "filtered_headers", "handle_event",
    "parse_body", "rate_limit_wait", "retry_delay", "signature_failure_count", "webhook_receive",
    "webhook_secret_rotate",
]
