"""Serializers of the connections API, one module per concept; the views and urls import them from here."""
from .activity import (
    ACTIVITY_STATUSES,
    ACTIVITY_TYPES,
    ActivityItemSerializer,
    ActivityQuerySerializer,
    ActivitySerializer,
    WidgetStatusSerializer,
)
from .checks import CheckErrorSerializer, ConnectionCheckSerializer, HealthSerializer, QueuedCheckSerializer
from .credentials import (
    CREDENTIAL_SERIALIZERS,
    ApiKeyCredentialSerializer,
    BasicCredentialSerializer,
    BearerCredentialSerializer,
    ConnectionSerializer,
    CredentialInSerializer,
    CredentialOutSerializer,
    CredentialPatchResultSerializer,
    CredentialPatchSerializer,
    CustomCredentialSerializer,
    OAuth2CredentialSerializer,
    connection_data,
    credential_out,
    validate_credential_input,
)
from .integrations import (
    ConfigVersionSerializer,
    CredentialSummarySerializer,
    IntegrationSerializer,
    integration_rows_representation,
)
from .oauth import (
    AuthorizationSerializer,
    ConnectOAuthSerializer,
    DisconnectSerializer,
    MeConnectionSerializer,
    UserConnectionSerializer,
    me_connection_data,
)
from .search import (
    GlobalSearchAnswerSerializer,
    GlobalSearchSerializer,
    SearchAnswerSerializer,
    SearchQuerySerializer,
    WidgetDataQuerySerializer,
    WidgetDataSerializer,
)
from .statuses import ExternalStatusSerializer, PollResultSerializer, QueuedPollSerializer, StatusChangeSerializer
from .streams import StreamStateSerializer
from .usage import LimitsSerializer, UsageDaySerializer, UsageQuerySerializer, UsageSerializer, UsedLimitSerializer

__all__ = [
    "ACTIVITY_STATUSES", "ACTIVITY_TYPES", "CREDENTIAL_SERIALIZERS", "ActivityItemSerializer",
    "ActivityQuerySerializer", "ActivitySerializer", "ApiKeyCredentialSerializer", "AuthorizationSerializer",
    "BasicCredentialSerializer", "BearerCredentialSerializer", "CheckErrorSerializer", "ConfigVersionSerializer",
    "ConnectOAuthSerializer", "ConnectionCheckSerializer", "ConnectionSerializer", "CredentialInSerializer",
    "CredentialOutSerializer", "CredentialPatchResultSerializer", "CredentialPatchSerializer",
    "CredentialSummarySerializer", "CustomCredentialSerializer", "DisconnectSerializer", "ExternalStatusSerializer",
    "GlobalSearchAnswerSerializer", "GlobalSearchSerializer", "SearchAnswerSerializer", "SearchQuerySerializer",
    "WidgetDataQuerySerializer", "WidgetDataSerializer",
    "HealthSerializer", "IntegrationSerializer", "LimitsSerializer", "MeConnectionSerializer",
    "OAuth2CredentialSerializer", "PollResultSerializer", "QueuedCheckSerializer", "QueuedPollSerializer",
    "StatusChangeSerializer", "StreamStateSerializer",
    "UsageDaySerializer", "UsageQuerySerializer", "UsageSerializer", "UsedLimitSerializer",
    "UserConnectionSerializer", "WidgetStatusSerializer", "connection_data", "credential_out",
    "integration_rows_representation", "me_connection_data",
    "validate_credential_input",
]
