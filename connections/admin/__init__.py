"""The connections admin, one module per model family; importing the package registers them all
(and gives the catalog's provider admin its live integrations: ``providers``)."""
from .checks import ConnectionCheckAdmin
from .credentials import CredentialAdmin, CredentialAdminForm
from .integrations import DeletedFilter, IntegrationAdmin, IntegrationAdminForm
from .providers import ProviderAdmin
from .statuses import ExternalStatusAdmin, StatusChangeAdmin
from .streams import IntegrationStreamAdminMixin, StreamConsumerAdmin, StreamLeaseAdmin
from .versions import ConfigVersionAdmin, ConfigVersionInline

__all__ = [
    "ConfigVersionAdmin", "ConfigVersionInline", "ConnectionCheckAdmin", "CredentialAdmin", "CredentialAdminForm",
    "DeletedFilter", "ExternalStatusAdmin", "IntegrationAdmin", "IntegrationAdminForm", "ProviderAdmin",
    "IntegrationStreamAdminMixin", "StatusChangeAdmin", "StreamConsumerAdmin", "StreamLeaseAdmin",
]
