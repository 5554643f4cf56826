"""The real-world provider catalog (Stripe, Twilio, SendGrid, Salesforce, HubSpot, Slack, GitHub, Generic
REST, Datadog, Snowflake): the production one-shot (docker-compose's ``setup``).

Idempotent: a provider whose slug exists is left alone, so a second run creates nothing.
Written through the catalog's services, audited as ``system``. ``seed_demo`` (local demo
only) writes the same catalog, then the demo's own providers and data.
"""
from django.core.management.base import BaseCommand
from django.db import transaction

from audit.services import SYSTEM
from catalog.models import IntegrationProvider
from catalog.services import provider_create
from tenants.choices import Plan

CANONICAL_STATUS_MAPPING = {
    "available": ["available", "active", "open", "in_stock"],
    "reserved": ["reserved", "pending"],
    "hold": ["hold", "on_hold", "paused"],
    "sold": ["sold", "closed", "completed"],
    "unreleased": ["unreleased", "draft"],
    "unavailable": ["unavailable", "inactive", "out_of_stock"],
    "coming_soon": ["coming_soon", "upcoming", "scheduled"],
}


def _icon(name: str) -> str:
    return f"https://cdn.simpleicons.org/{name}"


PROVIDERS = [
    {
        "slug": "stripe", "name": "Stripe", "category": "payment_gateway", "auth_type": "bearer",
        "description": "Payments, subscriptions and payouts. Authenticates with a secret key sent as a bearer token.",
        "capabilities": ["payments", "customers", "subscriptions", "refunds", "webhooks"],
        "supported_sync_directions": ["inbound", "outbound"],
        "supports_webhooks": True, "supports_polling": True, "supports_search": True,
        "searchable_entities": ["customers", "charges"], "available_entities": ["customers", "charges", "invoices"],
        "default_api_base_url": "https://api.stripe.com", "default_test_endpoint": "/v1/balance",
        "default_webhook_signature_scheme": "stripe", "icon": _icon("stripe"), "color": "#635BFF",
        "documentation_url": "https://docs.stripe.com/api",
    },
    {
        "slug": "twilio", "name": "Twilio", "category": "sms_provider", "auth_type": "basic",
        "description": "SMS and voice. Basic auth with the account SID as username and the auth token as password.",
        "capabilities": ["sms", "voice", "delivery_status"],
        "supported_sync_directions": ["outbound"], "supports_webhooks": True, "supports_polling": True,
        "available_entities": ["messages", "calls"],
        "default_api_base_url": "https://api.twilio.com", "default_test_endpoint": "/2010-04-01/Accounts.json",
        "default_webhook_signature_scheme": "hmac_sha256", "icon": _icon("twilio"), "color": "#F22F46",
        "documentation_url": "https://www.twilio.com/docs/usage/api",
    },
    {
        "slug": "sendgrid", "name": "SendGrid", "category": "email_provider", "auth_type": "bearer",
        "description": "Transactional email with delivery and engagement events.",
        "capabilities": ["email", "templates", "delivery_events"],
        "supported_sync_directions": ["outbound"], "supports_webhooks": True,
        "available_entities": ["messages", "templates"],
        "default_api_base_url": "https://api.sendgrid.com", "default_test_endpoint": "/v3/scopes",
        "icon": _icon("sendgrid"), "color": "#1A82E2",
        "documentation_url": "https://www.twilio.com/docs/sendgrid/api-reference",
    },
    {
        "slug": "salesforce", "name": "Salesforce", "category": "crm", "auth_type": "oauth2",
        "description": "CRM accounts, contacts and opportunities over the REST API, connected with OAuth 2.0.",
        "capabilities": ["contacts", "accounts", "opportunities", "search"],
        "supported_sync_directions": ["bidirectional"], "supports_polling": True, "supports_search": True,
        "supports_oauth": True, "searchable_entities": ["Account", "Contact", "Opportunity"],
        "available_entities": ["Account", "Contact", "Opportunity", "Lead"],
        "oauth_config": {
            "authorize_url": "https://login.salesforce.com/services/oauth2/authorize",
            "token_url": "https://login.salesforce.com/services/oauth2/token",
            "revoke_url": "https://login.salesforce.com/services/oauth2/revoke",
            "client_id": "demo-salesforce-client-id",
            "scopes": ["api", "refresh_token"],
            "pkce": True,
            "token_auth_method": "client_secret_post",
        },
        "default_api_base_url": "https://login.salesforce.com",
        "default_test_endpoint": "/services/oauth2/userinfo",
        "icon": _icon("salesforce"), "color": "#00A1E0",
        "documentation_url": "https://developer.salesforce.com/docs/apis",
    },
    {
        "slug": "hubspot", "name": "HubSpot", "category": "crm", "auth_type": "oauth2",
        "description": "Marketing and sales CRM: contacts, companies and deals.",
        "capabilities": ["contacts", "companies", "deals", "search"],
        "supported_sync_directions": ["bidirectional"], "supports_webhooks": True, "supports_polling": True,
        "supports_search": True, "supports_oauth": True,
        "searchable_entities": ["contacts", "companies", "deals"],
        "available_entities": ["contacts", "companies", "deals"],
        "oauth_config": {
            "authorize_url": "https://app.hubspot.com/oauth/authorize",
            "token_url": "https://api.hubapi.com/oauth/v1/token",
            "client_id": "demo-hubspot-client-id",
            "scopes": ["crm.objects.contacts.read", "crm.objects.deals.read"],
            "token_auth_method": "client_secret_post",
        },
        "default_api_base_url": "https://api.hubapi.com", "default_test_endpoint": "/crm/v3/objects/contacts?limit=1",
        "icon": _icon("hubspot"), "color": "#FF7A59", "documentation_url": "https://developers.hubspot.com/docs/api",
    },
    {
        "slug": "slack", "name": "Slack", "category": "communication", "auth_type": "oauth2",
        "description": "Post messages to channels and receive events from a Slack workspace.",
        "capabilities": ["messages", "channels", "events"],
        "supported_sync_directions": ["inbound", "outbound"], "supports_webhooks": True, "supports_oauth": True,
        "available_entities": ["channels", "messages", "users"],
        "oauth_config": {
            "authorize_url": "https://slack.com/oauth/v2/authorize",
            "token_url": "https://slack.com/api/oauth.v2.access",
            "client_id": "demo-slack-client-id",
            "scopes": ["chat:write", "channels:read"],
        },
        "default_api_base_url": "https://slack.com/api", "default_test_endpoint": "/auth.test",
        "default_webhook_signature_scheme": "slack", "icon": _icon("slack"), "color": "#4A154B",
        "documentation_url": "https://api.slack.com/web",
    },
    {
        "slug": "github", "name": "GitHub", "category": "data_source", "auth_type": "oauth2",
        "description": "Repositories, issues and pull requests, with signed webhook deliveries.",
        "capabilities": ["repositories", "issues", "pull_requests", "search"],
        "supported_sync_directions": ["inbound"], "supports_webhooks": True, "supports_polling": True,
        "supports_search": True, "supports_oauth": True,
        "searchable_entities": ["issues", "repositories"], "available_entities": ["repositories", "issues", "pulls"],
        "oauth_config": {
            "authorize_url": "https://github.com/login/oauth/authorize",
            "token_url": "https://github.com/login/oauth/access_token",
            "client_id": "demo-github-client-id",
            "scopes": ["repo", "read:org"],
        },
        "default_api_base_url": "https://api.github.com", "default_test_endpoint": "/user",
        "default_webhook_signature_scheme": "github", "icon": _icon("github"), "color": "#181717",
        "documentation_url": "https://docs.github.com/rest",
    },
    {
        "slug": "generic-rest", "name": "Generic REST", "category": "custom", "auth_type": "none",
        "description": "Any JSON REST API: choose the credential type, test endpoint and status mapping yourself.",
        "capabilities": ["connection_test", "status_polling", "webhooks"],
        "supported_sync_directions": ["inbound", "outbound", "bidirectional"],
        "supports_webhooks": True, "supports_polling": True,
        "default_api_base_url": "https://api.example.com", "default_test_endpoint": "/health",
        "default_status_endpoint": "/items", "default_status_mapping": CANONICAL_STATUS_MAPPING,
        "default_webhook_signature_scheme": "hmac_sha256", "icon": "mdi:api", "color": "#6B7280",
    },
    {
        "slug": "datadog", "name": "Datadog", "category": "data_source", "auth_type": "api_key",
        "description": "Metrics and monitors. The API key goes in the DD-API-KEY header.",
        "capabilities": ["metrics", "monitors", "events"],
        "supported_sync_directions": ["inbound", "outbound"], "supports_polling": True,
        "available_entities": ["monitors", "events"],
        "default_api_base_url": "https://api.datadoghq.com", "default_test_endpoint": "/api/v1/validate",
        "icon": _icon("datadog"), "color": "#632CA6", "documentation_url": "https://docs.datadoghq.com/api/",
    },
    {
        "slug": "snowflake", "name": "Snowflake", "category": "data_source", "auth_type": "custom",
        "description": "Query warehouse tables through the SQL API. Enterprise plan.",
        "capabilities": ["sql", "search"], "supported_sync_directions": ["inbound"],
        "supports_polling": True, "supports_search": True, "searchable_entities": ["tables"],
        "credential_fields": [
            {"name": "account", "label": "Account identifier", "secret": False, "required": True},
            {"name": "username", "label": "User", "secret": False, "required": True},
            {"name": "private_key", "label": "Private key (PEM)", "secret": True, "required": True},
        ],
        "default_api_base_url": "https://example.snowflakecomputing.com",
        "default_test_endpoint": "/api/v2/statements",
        "icon": _icon("snowflake"), "color": "#29B5E8", "documentation_url": "https://docs.snowflake.com/en/developer-guide/sql-api",
        "is_premium": True, "required_plan": Plan.ENTERPRISE,
    },
]



def providers_seed(providers: list[dict]) -> int:
    """Create the providers whose slug is not in the catalog yet (active, tenant audience unless given);
    returns how many were created."""
    existing = set(IntegrationProvider.objects.filter(slug__in=[p["slug"] for p in providers])
                   .values_list("slug", flat=True))
    created = 0
    for data in providers:
        if data["slug"] in existing:
            continue
        provider_create(actor=SYSTEM, data={"status": "active", "audience": "tenant", **data})
        created += 1
    return created


class Command(BaseCommand):
    help = "Create the real-world provider catalog (idempotent): providers that exist are left alone."

    def handle(self, *args, **options):
        with transaction.atomic():
            created = providers_seed(PROVIDERS)
        self.stdout.write(self.style.SUCCESS(
            f"Provider catalog ready ({created} new provider(s); catalog has "
            f"{IntegrationProvider.objects.count()})."))
