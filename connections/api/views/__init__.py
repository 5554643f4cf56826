"""Views of the connections API, one module per concept; urls.py imports them from here."""
from .integrations import IntegrationViewSet, poll_error_response, tenant_integration
from .nested import (
    ConfigVersionViewSet,
    ConnectionCheckViewSet,
    ExternalStatusViewSet,
    IntegrationChildViewSet,
    StatusChangeViewSet,
)
from .oauth import MeIntegrationViewSet, OAuthCallbackView, UserConnectionViewSet
from .providers import ProviderTestViewSet
from .search import SearchView

__all__ = [
    "ConfigVersionViewSet", "ConnectionCheckViewSet", "ExternalStatusViewSet", "IntegrationChildViewSet",
    "IntegrationViewSet", "MeIntegrationViewSet", "OAuthCallbackView", "ProviderTestViewSet", "SearchView",
    "StatusChangeViewSet", "UserConnectionViewSet", "poll_error_response", "tenant_integration",
]
