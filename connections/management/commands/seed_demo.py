"""Demo data: a provider catalog, a demo tenant with users and an API key, and demo integrations
that talk to the demo upstream (``python manage.py run_demo_upstream``, started by scripts/run.sh).

The demo integrations, each pointing at ``DEMO_UPSTREAM_URL``:

- "Demo inventory API": an API key; polls a status list that changes every few seconds;
- "Demo payments": a bearer token; status updates arrive as signed webhook deliveries
  at its webhook endpoint (the upstream's sender posts them);
- "Demo shipping": HTTP Basic;
- "Demo CRM": the OAuth demo provider, connected by a tenant admin through
  ``POST /api/v1/integrations/{id}/connect/oauth`` and a browser.

Idempotent: rows that exist are left alone, so a second run creates nothing; a
demo integration that points somewhere else (the api.example.com placeholder of
older runs, another upstream port) is pointed at the upstream again. Everything
is written through the services, audited as ``system``. ``--catalog-only``
writes the real-world provider catalog and nothing else (the production one-shot).

Environment: ``DEMO_PASSWORD``, ``DEMO_UPSTREAM_URL`` (default
http://127.0.0.1:8001), ``DEMO_HUB_URL`` (default http://127.0.0.1:8000: the
OAuth return URL's host is allowed for the demo tenant).
"""
import os
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.services import SYSTEM
from catalog.models import IntegrationProvider
from catalog.services import provider_create, provider_update
from connections.models import Credential, Integration
from connections.services import credential_set, integration_create, integration_update
from demo import upstream as demo
from tenants.choices import Plan, Role
from tenants.models import ApiKey, Membership, Tenant
from tenants.services import api_key_create, membership_set, tenant_create, tenant_update
from webhooks.models import WebhookEndpoint
from webhooks.services import endpoint_create

DEFAULT_PASSWORD = "demo-pass-123"
DEFAULT_UPSTREAM_URL = "http://127.0.0.1:8001"
DEFAULT_HUB_URL = "http://127.0.0.1:8000"
DEMO_TENANT = {"slug": "demo", "name": "Demo Company", "plan": Plan.PRO}
DEMO_USERS = (
    ("demo-admin", Role.TENANT_ADMIN),
    ("demo-manager", Role.INTEGRATION_MANAGER),
    ("demo-member", Role.MEMBER),
)
DEMO_INTEGRATION = "Demo inventory API"
DEMO_KEY_NAME = "Demo key"
DEMO_ENDPOINT_NAME = "Demo payments events"

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


def demo_providers(upstream: str) -> list[dict]:
    """Catalog entries of the demo upstream's services (local demo only, never in --catalog-only)."""
    return [
        {
            "slug": demo.PAYMENTS_PROVIDER, "name": "Demo Payments", "category": "payment_gateway",
            "auth_type": "bearer",
            "description": "The demo upstream's payments API: a bearer token, and signed status updates "
                           "delivered as webhooks every few seconds.",
            "capabilities": ["payments", "webhooks"], "supported_sync_directions": ["inbound"],
            "supports_webhooks": True, "available_entities": ["charges"],
            "default_api_base_url": upstream, "default_test_endpoint": "/payments/ping",
            "default_status_mapping": CANONICAL_STATUS_MAPPING,
            "default_webhook_signature_scheme": "standard_webhooks", "icon": "mdi:credit-card", "color": "#059669",
        },
        {
            "slug": "demo-shipping", "name": "Demo Shipping", "category": "data_source", "auth_type": "basic",
            "description": "The demo upstream's shipments API, behind HTTP Basic.",
            "capabilities": ["shipments"], "supported_sync_directions": ["inbound"],
            "available_entities": ["shipments"],
            "default_api_base_url": upstream, "default_test_endpoint": "/shipping/ping",
            "icon": "mdi:truck", "color": "#D97706",
        },
        {
            "slug": "demo-crm", "name": "Demo CRM", "category": "crm", "auth_type": "oauth2",
            "description": "The demo upstream's CRM, connected with OAuth 2.0 (authorization code with PKCE, "
                           "rotating refresh tokens) through its own authorization server.",
            "capabilities": ["contacts"], "supported_sync_directions": ["inbound"], "supports_oauth": True,
            "available_entities": ["contacts"],
            "oauth_config": demo_oauth_config(upstream),
            "default_api_base_url": upstream, "default_test_endpoint": "/crm/me",
            "icon": "mdi:account-group", "color": "#7C3AED",
        },
    ]


def demo_oauth_config(upstream: str) -> dict:
    return {
        "authorize_url": f"{upstream}/oauth/authorize",
        "token_url": f"{upstream}/oauth/token",
        "revoke_url": f"{upstream}/oauth/revoke",
        "client_id": demo.CLIENT_ID,
        "client_secret": demo.CLIENT_SECRET,  # write-only: stored encrypted, apart from the config
        "scopes": list(demo.SCOPES),
        "pkce": True,
        "token_auth_method": demo.TOKEN_AUTH_METHOD,
    }


def demo_integrations(upstream: str) -> list[dict]:
    """The demo tenant's integrations: provider, config and the credential the upstream accepts."""
    return [
        {
            "provider": "generic-rest", "credential": ("api_key", {"api_key": demo.INVENTORY_API_KEY,
                                                                   "header_name": demo.INVENTORY_KEY_HEADER}),
            "data": {"name": DEMO_INTEGRATION, "description": "Stock levels from the demo upstream, polled.",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/inventory/ping",
                     "status_endpoint": "/inventory/items", "update_method": "polling",
                     "polling_interval_seconds": 10, "status_mapping": CANONICAL_STATUS_MAPPING},
        },
        {
            "provider": demo.PAYMENTS_PROVIDER, "credential": ("bearer", {"token": demo.PAYMENTS_TOKEN}),
            "data": {"name": "Demo payments", "description": "Payment statuses, delivered by signed webhooks.",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/payments/ping",
                     "update_method": "webhook", "status_mapping": CANONICAL_STATUS_MAPPING},
        },
        {
            "provider": "demo-shipping", "credential": ("basic", {"username": demo.SHIPPING_USERNAME,
                                                                 "password": demo.SHIPPING_PASSWORD}),
            "data": {"name": "Demo shipping", "description": "Shipments from the demo upstream (HTTP Basic).",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/shipping/ping"},
        },
        {
            "provider": "demo-crm", "credential": None,
            "data": {"name": "Demo CRM", "description": "Connect it with OAuth: POST …/connect/oauth, then a browser.",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/crm/me"},
        },
    ]


def _base_url(name: str, default: str) -> str:
    url = (os.environ.get(name) or default).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"{name} must be an http(s) URL, not {url!r}.")
    return url


def return_hosts(hub_url: str) -> list[str]:
    """What the demo tenant's allowed_return_hosts needs for return URLs on the hub (loopback both ways)."""
    parts = urlsplit(hub_url)
    port = f":{parts.port}" if parts.port else ""
    hosts = [f"{parts.hostname}{port}"]
    if parts.hostname in ("127.0.0.1", "localhost"):
        hosts = [f"127.0.0.1{port}", f"localhost{port}"]
    return hosts


class Command(BaseCommand):
    help = ("Create demo data (idempotent): a provider catalog, a demo tenant with users and an API key, "
            "and demo integrations that talk to the demo upstream.")

    def add_arguments(self, parser):
        parser.add_argument("--catalog-only", action="store_true",
                            help="Create the real-world provider catalog only: no demo providers, tenant, users, "
                                 "keys or integrations (for a production one-shot).")

    def handle(self, *args, **options):
        if options["catalog_only"]:
            with transaction.atomic():
                created = self._providers(PROVIDERS)
            self.stdout.write(self.style.SUCCESS(
                f"Provider catalog ready ({created} new provider(s); catalog has "
                f"{IntegrationProvider.objects.count()})."))
            return
        password = os.environ.get("DEMO_PASSWORD") or DEFAULT_PASSWORD
        upstream = _base_url("DEMO_UPSTREAM_URL", DEFAULT_UPSTREAM_URL)
        hub = _base_url("DEMO_HUB_URL", DEFAULT_HUB_URL)
        with transaction.atomic():
            created = self._providers(PROVIDERS) + self._providers(demo_providers(upstream))
            self._repoint_providers(upstream)
            tenant = self._tenant(hub)
            self._users(tenant, password)
            integrations = [self._integration(tenant, spec, upstream) for spec in demo_integrations(upstream)]
            endpoint = self._webhook_endpoint(tenant, integrations[1])
            raw_key = self._api_key(tenant)
        self._report(created, tenant, password, raw_key)
        self._report_demo(upstream, hub, integrations, endpoint)

    # --- catalog ----------------------------------------------------------------------------------------

    def _providers(self, providers: list[dict]) -> int:
        existing = set(IntegrationProvider.objects.filter(slug__in=[p["slug"] for p in providers])
                       .values_list("slug", flat=True))
        created = 0
        for data in providers:
            if data["slug"] in existing:
                continue
            provider_create(actor=SYSTEM, data={"status": "active", "audience": "tenant", **data})
            created += 1
        return created

    def _repoint_providers(self, upstream: str) -> None:
        """Demo providers seeded for another upstream address (or client secret) follow the current one."""
        for data in demo_providers(upstream):
            provider = IntegrationProvider.objects.get(slug=data["slug"])
            changes = {}
            if provider.default_api_base_url != upstream:
                changes["default_api_base_url"] = upstream
            wanted = data.get("oauth_config")
            if wanted and (provider.oauth_config != {k: v for k, v in wanted.items() if k != "client_secret"}
                           or provider.oauth_client_secret != wanted["client_secret"]):
                changes["oauth_config"] = wanted
            if changes:
                provider_update(actor=SYSTEM, provider=provider, data=changes)

    # --- tenant, users, key --------------------------------------------------------------------------------

    def _tenant(self, hub: str) -> Tenant:
        tenant = Tenant.objects.filter(slug=DEMO_TENANT["slug"]).first()
        if tenant is None:
            return tenant_create(actor=SYSTEM, data={**DEMO_TENANT, "allowed_return_hosts": return_hosts(hub)})
        hosts = list(tenant.allowed_return_hosts or [])
        missing = [h for h in return_hosts(hub) if h not in hosts]
        if missing:
            tenant = tenant_update(actor=SYSTEM, tenant=tenant, data={"allowed_return_hosts": hosts + missing})
        return tenant

    def _users(self, tenant: Tenant, password: str) -> None:
        User = get_user_model()
        for username, role in DEMO_USERS:
            user = self._user(User, username, password)
            if not Membership.objects.filter(user=user, tenant=tenant).exists():
                membership_set(actor=SYSTEM, tenant=tenant, user=user, role=role)
        admin = self._user(User, "admin", password)
        if not (admin.is_staff and admin.is_superuser):
            admin.is_staff = admin.is_superuser = True
            admin.save(update_fields=["is_staff", "is_superuser"])

    @staticmethod
    def _user(User, username: str, password: str):
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        # Keep the printed password true even when DEMO_PASSWORD changed since the last run.
        if created or not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def _api_key(self, tenant: Tenant) -> str | None:
        usable = [k for k in ApiKey.objects.for_tenant(tenant).filter(name=DEMO_KEY_NAME) if k.is_usable]
        if usable:
            return None
        _, raw = api_key_create(actor=SYSTEM, tenant=tenant, name=DEMO_KEY_NAME, role=Role.TENANT_ADMIN)
        return raw

    # --- integrations --------------------------------------------------------------------------------------------

    def _integration(self, tenant: Tenant, spec: dict, upstream: str) -> Integration:
        """Create the integration, or point an existing one at the upstream; then its credential."""
        data = spec["data"]
        integration = Integration.objects.for_tenant(tenant).live().filter(name=data["name"]).first()
        if integration is None:
            provider = IntegrationProvider.objects.get(slug=spec["provider"])
            integration = integration_create(actor=SYSTEM, tenant=tenant, provider=provider, data=data)
        elif integration.api_base_url.rstrip("/") != upstream:
            integration = integration_update(actor=SYSTEM, integration=integration, data=data)
        if spec["credential"] is not None:
            credential = Credential.objects.filter(integration=integration, user__isnull=True).first()
            if credential is None or not credential.is_set:
                kind, fields = spec["credential"]
                credential_set(actor=SYSTEM, integration=integration, credential_type=kind, data=dict(fields))
        return integration

    def _webhook_endpoint(self, tenant: Tenant, integration: Integration) -> WebhookEndpoint:
        endpoint = (WebhookEndpoint.objects.for_tenant(tenant).live()
                    .filter(integration=integration, name=DEMO_ENDPOINT_NAME).first())
        if endpoint is None:
            endpoint, _ = endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration, data={
                "name": DEMO_ENDPOINT_NAME, "signature_scheme": "standard_webhooks",
                "description": "Status updates signed and sent by the demo upstream's sender.",
            })
        return endpoint

    # --- output ---------------------------------------------------------------------------------------------------

    def _report(self, created: int, tenant: Tenant, password: str, raw_key: str | None) -> None:
        out, style = self.stdout, self.style
        out.write(style.SUCCESS(f"Demo data ready ({created} new provider(s); catalog has "
                                f"{IntegrationProvider.objects.count()})."))
        out.write("")
        out.write(style.MIGRATE_HEADING("Logins"))
        out.write("  Admin site:  /admin/     user: admin (staff superuser)")
        out.write("  API docs:    /api/docs/  token: POST /api/v1/auth/token/ "
                  f'{{"username", "password", "tenant": "{tenant.slug}"}}')
        out.write(f"  Tenant slug: {tenant.slug}")
        for username, role in DEMO_USERS:
            out.write(f"  {username:<14} role {role}")
        out.write(f"  Password for all of them: {password}")
        out.write("")
        if raw_key:
            out.write(style.MIGRATE_HEADING("API key (tenant_admin) - shown once, copy it now"))
            out.write(f"  {raw_key}")
            out.write("  Use it as 'Authorization: Api-Key <key>' or 'X-API-Key: <key>'.")
        else:
            out.write(f"A demo API key already exists for tenant '{tenant.slug}'; its full value is only shown "
                      "when it is created.")
            out.write("  New key: POST /api/v1/api-keys/ as demo-admin, or Admin > API keys > Add.")

    def _report_demo(self, upstream: str, hub: str, integrations: list, endpoint: WebhookEndpoint) -> None:
        out, style = self.stdout, self.style
        inventory, payments, shipping, crm = integrations
        out.write("")
        out.write(style.MIGRATE_HEADING(f"Demo upstream: {upstream}/  (python manage.py run_demo_upstream)"))
        out.write(f"  {inventory.name:<20} api_key, statuses polled every {inventory.polling_interval_seconds}s"
                  f"  {inventory.pk}")
        out.write(f"  {payments.name:<20} bearer, webhooks at {endpoint.url_path}  {payments.pk}")
        out.write(f"  {shipping.name:<20} basic  {shipping.pk}")
        out.write(f"  {crm.name:<20} oauth2, connect it:  {crm.pk}")
        out.write(f"    POST {hub}/api/v1/integrations/{crm.pk}/connect/oauth "
                  f'{{"return_url": "{hub}/"}}  (as demo-admin)')
        out.write("    then open the answer's authorization_url in a browser and press Allow.")
