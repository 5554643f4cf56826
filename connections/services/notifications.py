"""Telling a tenant what happened to its integrations: the one hook from connections to the notifications app.

``checks.checks_record`` (health changes, the failing streak's warning) and ``integrations.integration_disable``
(auto-disable) hand their notes here, in the transaction of the change they report: the deliveries commit or
roll back with it and are queued after commit (``notifications.services.notify_many``, a few statements
whatever the number of notes).
"""
from collections.abc import Iterable

from notifications.services import notify_many


def notify_tenants(notes: Iterable[tuple]) -> int:
    """Hand the ``(tenant_id, type, data)`` notes to the notifications app; returns the deliveries made."""
    return notify_many(notes)
