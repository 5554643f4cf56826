"""The connections app's models: integrations and what hangs off them (``integrations``), and the
event streams' leases and consumers (``streams``)."""
from .integrations import (
    CONFIG_FIELDS,
    ConfigVersion,
    ConnectionCheck,
    Credential,
    ExternalStatus,
    Integration,
    IntegrationQuerySet,
    OAuthState,
    StatusChange,
    UsageDaily,
)
from .streams import RECENT_EVENT_IDS, StreamConsumer, StreamLease

__all__ = [
    "CONFIG_FIELDS", "RECENT_EVENT_IDS", "ConfigVersion", "ConnectionCheck", "Credential", "ExternalStatus",
    "Integration", "IntegrationQuerySet", "OAuthState", "StatusChange", "StreamConsumer", "StreamLease", "UsageDaily",
]
