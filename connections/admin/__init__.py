"""The connections admin, one module per model family; importing the package registers them all."""
from .checks import ConnectionCheckAdmin
from .credentials import CredentialAdmin, CredentialAdminForm
from .integrations import DeletedFilter, IntegrationAdmin, IntegrationAdminForm
from .statuses import ExternalStatusAdmin, StatusChangeAdmin
from .versions import ConfigVersionAdmin, ConfigVersionInline

__all__ = [
    "ConfigVersionAdmin", "ConfigVersionInline", "ConnectionCheckAdmin", "CredentialAdmin", "CredentialAdminForm",
    "DeletedFilter", "ExternalStatusAdmin", "IntegrationAdmin", "IntegrationAdminForm", "StatusChangeAdmin",
]
