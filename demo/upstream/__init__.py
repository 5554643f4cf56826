"""The demo upstream: stand-in external systems for the seeded demo integrations (local run only).

``python manage.py run_demo_upstream`` serves, on one loopback port:

- ``server``: the HTTP server and its route table (the place to add a route);
- ``api``: the REST services the demo integrations call (health, a status
  list that changes every few seconds, endpoints behind an API key, a bearer
  token, HTTP Basic and OAuth access tokens);
- ``streams``: the demo shipping's delivery slots as an event stream
  (``/shipping/stream``, server-sent events with ids, ``retry`` and pings,
  resumed from ``Last-Event-ID``), read by ``manage.py run_streams``;
- ``oauth``: the demo CRM's OAuth 2.0 authorization server (consent page,
  code + PKCE, refresh rotation, revocation);
- ``sender``: a thread posting signed status updates to the hub's webhook
  receiver;
- ``notifications``: the demo tenant's notification receiver
  (``POST /notifications`` verifies the hub's Standard Webhooks signature,
  ``GET /notifications`` lists the last 100 received).

``seed_demo`` writes the same credentials, client id and secret into the demo
integrations and providers, and points them at ``DEMO_UPSTREAM_URL``.
"""
from .api import (
    INVENTORY_API_KEY,
    INVENTORY_KEY_HEADER,
    PAYMENTS_TOKEN,
    SHIPPING_PASSWORD,
    SHIPPING_USERNAME,
    UNKNOWN_STATUS,
    StatusFeed,
)
from .notifications import RECEIVER_PATH, NotificationReceiver
from .oauth import CLIENT_ID, CLIENT_SECRET, SCOPES, TOKEN_AUTH_METHOD, AuthorizationServer
from .routing import Request, Response, Route, html_response, json_response, redirect
from .sender import PAYMENTS_PROVIDER, WebhookSender, sign
from .server import DemoUpstream
from .streams import EventStream

__all__ = [
    "CLIENT_ID", "CLIENT_SECRET", "INVENTORY_API_KEY", "INVENTORY_KEY_HEADER", "PAYMENTS_PROVIDER",
    "PAYMENTS_TOKEN", "RECEIVER_PATH", "SCOPES", "SHIPPING_PASSWORD", "SHIPPING_USERNAME", "TOKEN_AUTH_METHOD",
    "UNKNOWN_STATUS", "AuthorizationServer", "DemoUpstream", "EventStream", "NotificationReceiver", "Request",
    "Response", "Route", "StatusFeed", "WebhookSender", "html_response", "json_response", "redirect", "sign",
]
